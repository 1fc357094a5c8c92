"""Our own model types, beside the stock transformers ones: the toy transformer ("zoo-toy") and the
superposition model ("zoo-superposition"). Each is registered with transformers' Auto classes by
the calls that open one, and each snapshot carries its modeling code (`auto_map`), so a process
without zoo opens it with `trust_remote_code=True`."""
from __future__ import annotations

from zoo.models import superposition, toy

OWN_MODEL_TYPES = (toy.TOY_MODEL_TYPE, superposition.SUPERPOSITION_MODEL_TYPE)


def register_own_models() -> None:
    """Make AutoConfig and the Auto model classes know our model types; safe to call repeatedly."""
    toy.register_toy_model()
    superposition.register_superposition_model()


def write_own_remote_code(folder, config) -> None:
    """Put the modeling code of `config`'s model type into `folder` (nothing for a stock type).
    Call before `config.save_pretrained(folder)`."""
    if config.model_type == toy.TOY_MODEL_TYPE:
        toy.write_remote_code(folder, config)
    elif config.model_type == superposition.SUPERPOSITION_MODEL_TYPE:
        superposition.write_remote_code(folder, config)


def takes_tokens(model_type: str) -> bool:
    """Whether the model reads token ids (a causal LM with a tokenizer) or feature vectors."""
    return model_type != superposition.SUPERPOSITION_MODEL_TYPE
