"""Evaluation metrics on a stock transformers causal LM: loss, in-context learning, induction.

Each function takes the model and tokens (no store, no tokenizer), so it works on anything whose
forward returns .logits (and .attentions with output_attentions=True): our checkpoints, Pythia,
a TransformerLens export. The model is put in eval mode for the call and given back as it was.

Token-index convention: in a sequence of length T, "the loss at token k" (1 <= k < T) is the
loss of predicting token k from tokens 0..k-1, i.e. cross-entropy of logits[:, k-1] vs tokens[:, k].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from zoo.eval.evaluating import evaluating
from zoo.eval.neuron_metrics import neuron_measures
from zoo.eval.superposition_metrics import superposition_measures
from zoo.eval.task_metrics import fourier_key_share, task_accuracy
from zoo_common.errors import ZooError


def _check_tokens(tokens) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 2:
        raise ZooError(
            f"tokens must be a [batch, seq_len] integer tensor with seq_len >= 2, got "
            f"shape {tuple(tokens.shape)}"
        )
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ZooError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    return tokens.long()


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ZooError(f"batch_size must be a positive integer, got {batch_size!r}")


def _token_losses(model, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[B, T-1] float32 losses on CPU: column k-1 is the loss at token k."""
    _check_batch_size(batch_size)
    losses = []
    with evaluating(model) as device:
        for chunk in tokens.split(batch_size):
            chunk = chunk.to(device)
            logits = model(input_ids=chunk).logits[:, :-1].float()
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="none"
            )
            losses.append(loss.view(chunk.shape[0], -1).cpu())
    return torch.cat(losses)


def heldout_loss(model, tokens, *, batch_size: int = 32) -> float:
    """Mean next-token loss over every predicted token of every sequence (the labels-loss)."""
    losses = _token_losses(model, _check_tokens(tokens), batch_size)
    return float(losses.double().mean())


def per_example_loss(model, tokens, *, batch_size: int = 32) -> torch.Tensor:
    """[B] mean next-token loss of each sequence: the per-example scores for multi_bootstrap."""
    return _token_losses(model, _check_tokens(tokens), batch_size).mean(dim=1)


def default_icl_windows(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Early and late token windows [start, stop) scaled from Olsson et al. (500th vs 50th of 512).

    Width w = max(1, seq_len // 50) tokens; early starts at round(seq_len * 50/512) (>= 1), late at
    round(seq_len * 500/512), pulled in so it ends inside the context. For seq_len=512 this is
    (50, 60) and (500, 510); averaging a few tokens makes the score less noisy on small eval sets.
    """
    width = max(1, seq_len // 50)
    early_start = max(1, round(seq_len * 50 / 512))
    late_start = min(round(seq_len * 500 / 512), seq_len - width)
    if early_start + width > late_start:
        raise ZooError(
            f"a context of {seq_len} tokens is too short for an ICL score: the early "
            "and late windows would overlap; use sequences of at least 8 tokens"
        )
    return (early_start, early_start + width), (late_start, late_start + width)


def _window(spec, seq_len: int, name: str) -> tuple[int, int]:
    start, stop = (spec, spec + 1) if isinstance(spec, int) else tuple(spec)
    if not 1 <= start < stop <= seq_len:
        raise ZooError(
            f"{name} window {spec!r} must be a token index or [start, stop) with "
            f"1 <= start < stop <= {seq_len} (token 0 has no prediction)"
        )
    return start, stop


def icl_score(
    model,
    tokens,
    *,
    early: int | tuple[int, int] | None = None,
    late: int | tuple[int, int] | None = None,
    batch_size: int = 32,
) -> float:
    """In-context learning score (Olsson et al. 2022): mean loss late in the context minus early.

    Negative means later tokens are predicted better thanks to the context: the signature of
    in-context learning, which drops sharply at the induction bump. early / late: a token index
    or a [start, stop) window of token indices; defaults from default_icl_windows(seq_len).
    """
    tokens = _check_tokens(tokens)
    seq_len = tokens.shape[1]
    if early is None or late is None:
        default_early, default_late = default_icl_windows(seq_len)
        early = default_early if early is None else early
        late = default_late if late is None else late
    early, late = _window(early, seq_len, "early"), _window(late, seq_len, "late")
    if early[0] >= late[0]:
        raise ZooError(f"the early window {early} must start before the late window {late}")
    losses = _token_losses(model, tokens, batch_size).double()
    by_token = torch.cat(
        [torch.full((losses.shape[0], 1), float("nan"), dtype=losses.dtype), losses], dim=1
    )  # column k = loss at token k
    return float(by_token[:, late[0] : late[1]].mean() - by_token[:, early[0] : early[1]].mean())


def repeated_random_tokens(
    *, vocab_size: int, seq_len: int, n_sequences: int, seed: int, bos_token_id: int | None = None,
    token_pool=None,
) -> torch.Tensor:
    """[n_sequences, prefix + 2*seq_len] sequences [bos?, r, r], r random and deterministic in seed.

    r is drawn WITHOUT replacement from the vocabulary (minus BOS), or from `token_pool` (token
    ids, e.g. the tokens a corpus contains) when given, so each token of the second half has
    exactly one previous occurrence and "the token after it" is unambiguous.
    """
    if seq_len < 1 or n_sequences < 1:
        raise ZooError(f"seq_len and n_sequences must be >= 1, got {seq_len} and {n_sequences}")
    pool = (torch.arange(vocab_size) if token_pool is None
            else torch.as_tensor(token_pool, dtype=torch.long).reshape(-1))
    if bos_token_id is not None:
        pool = pool[pool != bos_token_id]
    if len(pool) < seq_len:
        raise ZooError(
            f"an induction test needs seq_len ({seq_len}) distinct tokens, but the "
            f"vocabulary offers {len(pool)}; use seq_len <= {len(pool)}"
        )
    generator = torch.Generator().manual_seed(seed)
    halves = torch.stack(
        [pool[torch.randperm(len(pool), generator=generator)[:seq_len]] for _ in range(n_sequences)]
    )
    sequences = torch.cat([halves, halves], dim=1)
    if bos_token_id is not None:
        sequences = torch.cat([torch.full((n_sequences, 1), bos_token_id), sequences], dim=1)
    return sequences


def induction_score_from_attentions(
    attentions, *, seq_len: int, prefix_len: int = 0
) -> torch.Tensor:
    """[layers, heads] mean attention from each second-half token to the token after its
    previous occurrence, on [prefix, r, r] inputs (the TransformerLens induction stripe, counting
    only destinations that have a previous occurrence).

    attentions: per layer [batch, heads, T, T] (a tuple, as transformers returns them, or a
    stacked [layers, batch, heads, T, T] tensor) with T = prefix_len + 2 * seq_len.
    """
    stacked = torch.stack(tuple(attentions)) if not torch.is_tensor(attentions) else attentions
    total = prefix_len + 2 * seq_len
    if stacked.ndim != 5 or stacked.shape[-1] != total or stacked.shape[-2] != total:
        raise ZooError(
            f"expected attentions [layers, batch, heads, {total}, {total}] for "
            f"prefix {prefix_len} + 2 x {seq_len} tokens, got {tuple(stacked.shape)}"
        )
    offsets = torch.arange(seq_len)
    destinations = prefix_len + seq_len + offsets
    sources = prefix_len + offsets + 1
    stripe = stacked[..., destinations, sources]  # [layers, batch, heads, seq_len]
    return stripe.float().mean(dim=(1, 3))


def repetition_loss(model, *, vocab_size: int, seq_len: int, n_sequences: int = 16, seed: int = 0,
                    batch_size: int = 16, token_pool=None) -> dict[str, float]:
    """Loss on the first and the second copy of repeated random tokens [r, r], and the drop.

    first: mean loss at tokens 1..L-1 (r has no pattern to learn); second: at tokens L+1..2L-1
    (each has appeared once, L tokens back). A model with induction heads predicts the second copy
    by looking back: the drop (first - second) is in nats, ~0 without them."""
    tokens = repeated_random_tokens(vocab_size=vocab_size, seq_len=seq_len, n_sequences=n_sequences,
                                    seed=seed, token_pool=token_pool)
    losses = _token_losses(model, tokens, batch_size)  # column k-1: the loss at token k
    first = float(losses[:, : seq_len - 1].double().mean())
    second = float(losses[:, seq_len:].double().mean())
    return {"first": first, "second": second, "drop": first - second}


@contextmanager
def _eager_attention(model) -> Iterator[None]:
    """Attention weights exist only in eager attention (SDPA/flash never form them)."""
    original = getattr(model.config, "_attn_implementation", None)
    switch = original is not None and original != "eager"
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(original)


def induction_score(
    model,
    *,
    vocab_size: int,
    seq_len: int,
    n_sequences: int = 16,
    seed: int = 0,
    bos_token_id: int | None = None,
    batch_size: int = 16,
    token_pool=None,
) -> torch.Tensor:
    """[layers, heads] induction score on repeated random tokens; deterministic in seed.

    Feeds [bos?, r, r] (see repeated_random_tokens) and averages, per head, the attention from
    each second-half token to the token right after its previous occurrence. ~1 for an induction
    head, ~1/position for diffuse attention. The attention implementation is switched to eager
    for the call if needed, then restored.
    """
    _check_batch_size(batch_size)
    tokens = repeated_random_tokens(
        vocab_size=vocab_size,
        seq_len=seq_len,
        n_sequences=n_sequences,
        seed=seed,
        bos_token_id=bos_token_id,
        token_pool=token_pool,
    )
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    if limit is not None and tokens.shape[1] > limit:
        raise ZooError(
            f"induction test sequences have {tokens.shape[1]} tokens but the model "
            f"takes at most {limit}; use seq_len <= {(limit - (bos_token_id is not None)) // 2}"
        )
    prefix = int(bos_token_id is not None)
    sums = None
    with _eager_attention(model), evaluating(model) as device:
        for chunk in tokens.split(batch_size):
            attentions = model(input_ids=chunk.to(device), output_attentions=True).attentions
            if not attentions or any(a is None for a in attentions):
                raise ZooError(
                    f"{type(model).__name__} returned no attention weights; load it "
                    "with attn_implementation='eager'"
                )
            part = induction_score_from_attentions(
                [a.cpu() for a in attentions], seq_len=seq_len, prefix_len=prefix
            )
            sums = part * len(chunk) if sums is None else sums + part * len(chunk)
    return sums / n_sequences


METRICS: dict[str, Callable] = {
    "loss": heldout_loss,  # f(model, tokens) -> float
    "icl": icl_score,  # f(model, tokens) -> float
    "induction": induction_score,  # f(model, *, vocab_size, seq_len) -> Tensor [layers, heads]
    "repetition": repetition_loss,  # f(model, *, vocab_size, seq_len) -> first/second/drop (nats)
    "accuracy": task_accuracy,  # f(model, corpus, *, data_seed) -> train/test acc and loss (tasks)
    "fourier": fourier_key_share,  # f(model, p) -> key-frequency share of the embedding (modular)
    "superposition": superposition_measures,  # f(model, corpus) -> the superposition model's W
    "neurons": neuron_measures,  # f(model, tokens) -> how readable the MLP neurons are
}
TOKEN_METRICS = ("loss", "icl", "induction", "repetition", "accuracy", "fourier", "neurons")


def metric_fits(name: str, hf_config: dict) -> bool:
    """Whether built-in metric `name` measures something on this model: an attention-only model
    has no MLP neurons to read."""
    return not (name == "neurons" and hf_config.get("attn_only"))


def metric_function(name: str) -> Callable:
    """The built-in metric called name; unknown names get an error listing the choices."""
    if name not in METRICS:
        raise ZooError(
            f"unknown metric {name!r}; built-in metrics: {', '.join(METRICS)} (or pass "
            "your own function f(model, tokenizer) -> float | dict)"
        )
    return METRICS[name]
