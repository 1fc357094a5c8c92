"""The corpus tokenizer: a byte-level BPE trained deterministically, or an existing tokenizer.

Training uses `tokenizers`' BpeTrainer with the full 256-symbol byte alphabet, one special token
`<|endoftext|>` (id 0, the EOS placed after every document), no minimum frequency and no alphabet
limit. Ties between equally frequent merges are broken by the pair itself inside `tokenizers`, so the
same texts give a byte-identical tokenizer.json on every run, in any process, whatever
PYTHONHASHSEED or TOKENIZERS_PARALLELISM (checked by a test training twice).

The folder holds tokenizer.json + tokenizer_config.json + special_tokens_map.json, which is what
`transformers.AutoTokenizer.from_pretrained(folder)` needs (no transformers import here).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from zoo_common.errors import ZooError

EOS_TOKEN = "<|endoftext|>"
BYTE_ALPHABET = 256


def min_vocab_size() -> int:
    return BYTE_ALPHABET + 1  # every byte + the EOS token


def train_bpe(texts: Iterable[str], *, vocab_size: int, length: int | None = None, progress: bool = False) -> Tokenizer:
    """Train a byte-level BPE on `texts` (an iterable, consumed once)."""
    check_vocab_size(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    return tokenizer


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size < min_vocab_size():
        raise ZooError(
            f"vocab_size {vocab_size} is too small for a byte-level BPE: it needs at least "
            f"{min_vocab_size()} (256 bytes + {EOS_TOKEN}); try 2048"
        )


def load_existing(path: str | Path) -> tuple[Tokenizer, bytes, str]:
    """An existing tokenizer folder or tokenizer.json -> (tokenizer, its exact bytes, its EOS token)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ZooError(f"no tokenizer at {path}: give a folder holding tokenizer.json, or the tokenizer.json file")
    raw = file.read_bytes()
    try:
        tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise ZooError(f"cannot load tokenizer {file}: {exc}") from None
    eos = _declared_eos(file.parent) or EOS_TOKEN
    if tokenizer.token_to_id(eos) is None:
        raise ZooError(f"tokenizer {file} has no EOS token {eos!r} to put between documents; "
                       f"declare eos_token in tokenizer_config.json next to it")
    return tokenizer, raw, eos


def _declared_eos(folder: Path) -> str | None:
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        eos = json.loads(config.read_text()).get("eos_token")
    except ValueError:
        return None
    if isinstance(eos, dict):
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None


def save_folder(folder: Path, *, tokenizer_json: bytes, eos_token: str, model_max_length: int) -> None:
    """Write the folder AutoTokenizer loads: the exact tokenizer.json bytes plus a small config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_bytes(tokenizer_json)
    special = {"eos_token": eos_token, "bos_token": eos_token, "unk_token": eos_token}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
              "clean_up_tokenization_spaces": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n")
