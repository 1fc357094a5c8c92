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


def build_target(spec: str, *, corpus, context: int, heldout: str | None = None) -> Target:
    """The Target `spec` names, on the run's corpus; one clear error for anything else."""
    if not isinstance(spec, str) or not spec.strip():
        raise ArgumentError(f"an attribution needs a target: one of {', '.join(TARGET_KINDS)}; "
                            f"got {spec!r}")
    if getattr(corpus, "drawn", False):
        raise ArgumentError("this run trains on drawn feature vectors (superposition): attribution "
                            "scores token samples; it is for the language-model families")
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
        try:
            ids = [int(part) for part in spec.removeprefix("samples:").split(",") if part.strip()]
        except ValueError:
            raise ArgumentError(f"samples:ID,ID,... takes sample ids (whole numbers), got {spec!r}") from None
        if not ids:
            raise ArgumentError("samples: names no sample; give ids, e.g. samples:12,40")
        bad = [i for i in ids if not 0 <= i < corpus.n_samples]
        if bad:
            raise ArgumentError(f"sample id(s) {bad[:5]} are outside the corpus (0..{corpus.n_samples - 1})")
        tokens = torch.from_numpy(corpus.samples(ids)).long()
        return Target(spec, tokens, torch.ones_like(tokens, dtype=torch.bool),
                      f"loss on training sample(s) {', '.join(map(str, ids[:8]))}"
                      f"{'...' if len(ids) > 8 else ''}")
    raise ArgumentError(f"unknown target {spec!r}; valid: {', '.join(TARGET_KINDS)}")
