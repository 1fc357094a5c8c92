"""What an attribution is about: a target loss on fixed token sequences.

    heldout             the family's held-out text (zoo.eval.heldout; `heldout=SOURCE` to choose)
    samples:ID,ID,...   training samples of the corpus, by id
    repetition          the induction probe: loss on the second copy of [r, r] (r: 16 sequences of
                        random tokens the corpus contains, as the `repetition` metric draws them)

A Target holds the tokens and a mask of the positions whose next-token loss counts, so its loss
is one number that a gradient can be taken of, at any step's weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo_common.errors import ArgumentError

TARGET_KINDS = ("heldout", "samples:ID,ID,...", "repetition")
PROBE_SEQUENCES = 16
PROBE_MAX_LEN = 64  # as the repetition metric: r of up to 64 tokens, as the context allows


@dataclass(frozen=True, eq=False)
class Target:
    """tokens [N, T]; mask [N, T] bool, True at token k when its prediction from k-1 counts."""

    spec: str
    tokens: torch.Tensor
    mask: torch.Tensor
    words: str

    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        """Mean next-token loss over the masked positions (differentiable)."""
        logits = model(input_ids=self.tokens).logits[:, :-1].float()
        losses = F.cross_entropy(logits.flatten(0, 1), self.tokens[:, 1:].flatten(), reduction="none")
        weights = self.mask[:, 1:].flatten().float()
        return (losses * weights).sum() / weights.sum()


def run_target(spec: str, record: dict, corpus, heldout: str | None = None) -> Target:
    """The Target `spec` names for a run (its run.json `record`, its corpus): the model's context
    bounds the probe, and a task's held-out pairs are those its data seed did not train on."""
    context = int(record["hf_config"].get("max_position_embeddings", corpus.seq_len))
    return build_target(spec, corpus=corpus, context=context, heldout=heldout,
                        data_seed=int(record["config"]["seed"]["data_seed"]))


def build_target(spec: str, *, corpus, context: int, heldout: str | None = None,
                 data_seed: int = 0) -> Target:
    """The Target `spec` names, on the run's corpus; one clear error for anything else.

    On a task corpus (grokking's modular arithmetic: train and test pairs, the loss on the answer
    only), `heldout` is the test pairs of the run's split and every target's mask is the task's
    loss mask, so the target loss is the one the task is scored by."""
    if not isinstance(spec, str) or not spec.strip():
        raise ArgumentError(f"an attribution needs a target: one of {', '.join(TARGET_KINDS)}; "
                            f"got {spec!r}")
    if getattr(corpus, "drawn", False):
        raise ArgumentError("this run trains on drawn feature vectors (superposition): attribution "
                            "scores token samples; it is for the language-model families")
    if getattr(corpus, "train_fraction", None) is not None:
        return _task_target(spec, corpus, data_seed)
    if spec == "heldout":
        from zoo.eval.heldout import build_heldout

        held = build_heldout(corpus, heldout=heldout)
        tokens = torch.from_numpy(held.tokens)
        return Target(spec, tokens, torch.ones_like(tokens, dtype=torch.bool),
                      f"held-out loss ({held.rule}, {tokens.shape[0]} samples)")
    if spec == "repetition":
        from zoo.eval.metrics import repeated_random_tokens

        pool = corpus.seen_tokens()
        length = max(1, min(PROBE_MAX_LEN, context // 2, len(pool)))
        tokens = repeated_random_tokens(vocab_size=corpus.vocab_size, seq_len=length,
                                        n_sequences=PROBE_SEQUENCES, seed=0, token_pool=pool)
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        mask[:, length + 1:] = True  # the second copy, each token seen once before
        return Target(spec, tokens, mask, f"loss on the second copy of {PROBE_SEQUENCES} "
                                          f"[r, r], r of {length} random corpus tokens")
    if spec.startswith("samples:"):
        ids = _sample_ids(spec, corpus)
        tokens = torch.from_numpy(corpus.samples(ids)).long()
        return Target(spec, tokens, torch.ones_like(tokens, dtype=torch.bool),
                      f"loss on training sample(s) {_listed(ids)}")
    raise ArgumentError(f"unknown target {spec!r}; valid: {', '.join(TARGET_KINDS)}")


def _task_target(spec: str, corpus, data_seed: int) -> Target:
    """heldout: the test pairs of the run's split; samples:ID,...: those pairs; the answer mask."""
    import numpy as np

    if spec == "heldout":
        train = set(corpus.train_ids(data_seed).tolist())
        ids = [i for i in range(corpus.n_samples) if i not in train]
        if not ids:
            raise ArgumentError("this task trains on every pair (train_fraction 1): it has no "
                                "held-out pairs; use samples:ID,...")
        words = f"loss on the answers of the {len(ids)} test pairs (data seed {data_seed})"
    elif spec.startswith("samples:"):
        ids = _sample_ids(spec, corpus)
        words = f"loss on the answers of pair(s) {_listed(ids)}"
    else:
        raise ArgumentError(f"target {spec!r} is not one for a task run (train and test pairs); "
                            f"valid: heldout (its test pairs), samples:ID,ID,...")
    tokens = torch.from_numpy(corpus.samples(ids)).long()
    mask = corpus.loss_mask(ids)
    mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else torch.from_numpy(
        np.asarray(mask, dtype=bool))
    return Target(spec, tokens, mask, words)


def _listed(ids: list[int]) -> str:
    return f"{', '.join(map(str, ids[:8]))}{'...' if len(ids) > 8 else ''}"


def _sample_ids(spec: str, corpus) -> list[int]:
    try:
        ids = [int(part) for part in spec.removeprefix("samples:").split(",") if part.strip()]
    except ValueError:
        raise ArgumentError(f"samples:ID,ID,... takes sample ids (whole numbers), got {spec!r}") from None
    if not ids:
        raise ArgumentError("samples: names no sample; give ids, e.g. samples:12,40")
    bad = [i for i in ids if not 0 <= i < corpus.n_samples]
    if bad:
        raise ArgumentError(f"sample id(s) {bad[:5]} are outside the corpus (0..{corpus.n_samples - 1})")
    return ids
