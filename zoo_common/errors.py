"""The one error type users see.

Every layer raises ZooError for bad input or bad stored data; its message says what was wrong and
what would be right. The CLI prints it as one line and exits non-zero, so a researcher never gets
a raw traceback for a mistake of theirs or a damaged file.
"""


class ZooError(Exception):
    """A problem the user can act on; the message is complete on its own."""


class IntegrityError(ZooError):
    """Stored bytes do not match their recorded hash or size: never returned as data."""
