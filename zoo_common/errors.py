"""The error types users see, one family under ZooError.

Every layer raises a ZooError for bad input or bad stored data; its message says what was wrong
and what would be right. The CLI prints it as one line and exits 2, so a researcher never gets a
raw traceback for a mistake of theirs or a damaged file. A program tells the kinds apart by type,
as huggingface_hub's errors allow, never by parsing the message:

    ZooError
    ├── NotFoundError (a LookupError)   the store, a model, seed, step or branch is not there
    │   ├── StoreNotFoundError
    │   ├── ModelNotFoundError
    │   ├── SeedNotFoundError
    │   ├── StepNotFoundError           not stored, and not reachable by replay either
    │   └── BranchNotFoundError
    ├── IntegrityError                  stored bytes do not match their recorded hash or size
    └── InvalidInputError (a ValueError)
        ├── ManifestError               a family manifest: unknown key, wrong type, bad YAML
        └── ArgumentError               an argument of a public function or command
"""


class ZooError(Exception):
    """A problem the user can act on; the message is complete on its own."""


class NotFoundError(ZooError, LookupError):
    """What was asked for is not in the store; the message lists what is."""


class StoreNotFoundError(NotFoundError):
    """No store at the folder or URL: nothing was ever trained there."""


class ModelNotFoundError(NotFoundError):
    """No model (family-size) of that name in the store."""


class SeedNotFoundError(NotFoundError):
    """The model exists, but not with that seed."""


class StepNotFoundError(NotFoundError):
    """The run has no such step: not stored, and outside what replay can reach."""


class BranchNotFoundError(NotFoundError):
    """The run has no branch of that label."""


class IntegrityError(ZooError):
    """Stored bytes do not match their recorded hash or size: never returned as data."""


class InvalidInputError(ZooError, ValueError):
    """The caller's input is malformed or out of range; the message says what would be right."""


class ManifestError(InvalidInputError):
    """A family manifest is invalid; the message names the file and the field."""


class ArgumentError(InvalidInputError):
    """An argument of a public function or command is invalid; the message names it."""
