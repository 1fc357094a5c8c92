"""zoo.eval_metrics on real transformers models (random GPT-NeoX, and a hand-wired GPT-2)."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

from zoo_common.errors import ZooError
from zoo.eval.metrics import (
    METRICS,
    default_icl_windows,
    heldout_loss,
    icl_score,
    induction_score,
    induction_score_from_attentions,
    metric_function,
    per_example_loss,
    repeated_random_tokens,
)

VOCAB, BOS, HALF = 24, 23, 8  # hand-built model: 23 content tokens + BOS, r of 8 tokens


def random_neox(seed: int = 0, init_range: float = 0.02) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=80,
        initializer_range=init_range,
    )
    return GPTNeoXForCausalLM(config)  # default attention: sdpa (the metric must cope)


def hand_built_induction_gpt2() -> GPT2LMHeadModel:
    """A 2-layer GPT-2 whose weights are set by hand so layer 1's head is an induction head.

    Residual stream = one-hot blocks, each written as +e_i - e_i' so every vector has mean 0 and
    LayerNorm only rescales by a constant: T (current token), P (position), R (previous token,
    written by layer 0), N (predicted next token, written by layer 1). MLPs are zero.
    Layer 0 (previous-token head): query at position p matches key p-1 via positional
    embeddings; it copies that key's token into R. Layer 1 (induction head, K-composition):
    query token t matches keys whose R is t, i.e. the position right after a previous
    occurrence of t; it copies that position's token into N, which the untied lm_head reads out.
    """
    n_pos = 2 * HALF + 1
    t_, p_, r_, n_ = 0, 2 * VOCAB, 2 * VOCAB + 2 * n_pos, 4 * VOCAB + 2 * n_pos
    dim = 6 * VOCAB + 2 * n_pos
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=n_pos,
        n_embd=dim,
        n_layer=2,
        n_head=1,
        scale_attn_weights=False,
        tie_word_embeddings=False,
        bos_token_id=BOS,
        eos_token_id=BOS,
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for block in model.transformer.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        model.transformer.ln_f.weight.fill_(1.0)
        tokens, positions = torch.arange(VOCAB), torch.arange(n_pos)
        emb, pos = model.transformer.wte.weight, model.transformer.wpe.weight
        emb[tokens, t_ + tokens], emb[tokens, t_ + VOCAB + tokens] = 1.0, -1.0
        pos[positions, p_ + positions], pos[positions, p_ + n_pos + positions] = 1.0, -1.0
        # After LayerNorm a residual with k blocks is scaled by sqrt(dim / (2k)).
        scale0, scale1 = math.sqrt(dim / 4), math.sqrt(dim / 6)
        sharp = math.sqrt(20.0)  # attention logit 20 on the intended key, 0 elsewhere

        qkv, out = (
            model.transformer.h[0].attn.c_attn.weight,
            model.transformer.h[0].attn.c_proj.weight,
        )
        qkv[p_ + positions, positions] = sharp / scale0  # query: my position
        qkv[p_ + positions[:-1], dim + positions[:-1] + 1] = sharp / scale0  # key: position + 1
        qkv[t_ + tokens, 2 * dim + tokens] = 1.0  # value: key's token
        qkv[t_ + VOCAB + tokens, 2 * dim + VOCAB + tokens] = 1.0
        out[tokens, r_ + tokens] = 1 / scale0  # write it into R
        out[VOCAB + tokens, r_ + VOCAB + tokens] = 1 / scale0

        qkv, out = (
            model.transformer.h[1].attn.c_attn.weight,
            model.transformer.h[1].attn.c_proj.weight,
        )
        qkv[t_ + tokens, tokens] = sharp / scale1  # query: my token
        qkv[r_ + tokens, dim + tokens] = sharp / scale1  # key: its previous token
        qkv[t_ + tokens, 2 * dim + tokens] = 1.0  # value: key's token
        qkv[t_ + VOCAB + tokens, 2 * dim + VOCAB + tokens] = 1.0
        out[tokens, n_ + tokens] = 1 / scale1  # write it into N
        out[VOCAB + tokens, n_ + VOCAB + tokens] = 1 / scale1
        readout = 10.0 / (2 * math.sqrt(dim / 8))  # logit ~10 for N's token
        model.lm_head.weight[tokens, n_ + tokens] = readout
        model.lm_head.weight[tokens, n_ + VOCAB + tokens] = -readout
    return model.eval()


# ---------------------------------------------------------------- induction


def test_induction_score_is_high_for_the_hand_built_induction_head():
    """Real model level: a GPT-2 wired by hand (no synthetic attention tensors)."""
    scores = induction_score(
        hand_built_induction_gpt2(),
        vocab_size=VOCAB,
        seq_len=HALF,
        n_sequences=8,
        seed=0,
        bos_token_id=BOS,
    )
    assert scores.shape == (2, 1)
    assert scores[1, 0] > 0.95  # the induction head
    assert scores[0, 0] < 0.05  # the previous-token head looks elsewhere


def test_hand_built_model_learns_in_context():
    model = hand_built_induction_gpt2()
    tokens = repeated_random_tokens(
        vocab_size=VOCAB, seq_len=HALF, n_sequences=8, seed=1, bos_token_id=BOS
    )
    assert icl_score(model, tokens) < -2.0  # second half predicted, first half guessed


def test_induction_score_is_low_on_random_weights_and_restores_attention():
    # init_range 0.5: attention is visibly non-uniform (at 0.02 every head is ~uniform)
    model = random_neox(init_range=0.5)
    scores = induction_score(model, vocab_size=64, seq_len=32, n_sequences=8, seed=0)
    assert scores.shape == (2, 4)
    assert scores.max() < 0.1 and scores.std() > 0.001
    assert model.config._attn_implementation == "sdpa" and model.training


def test_induction_score_is_deterministic_in_seed():
    model = random_neox()
    first = induction_score(model, vocab_size=64, seq_len=16, n_sequences=4, seed=3)
    assert torch.equal(
        first, induction_score(model, vocab_size=64, seq_len=16, n_sequences=4, seed=3)
    )
    assert not torch.equal(
        first, induction_score(model, vocab_size=64, seq_len=16, n_sequences=4, seed=4)
    )


def test_stripe_of_known_attention_patterns():
    """Score-function level: patterns built by hand, one ideal and one off-by-one."""
    half, total = 5, 11  # BOS + 2 x 5
    ideal = torch.zeros(1, 1, 1, total, total)
    previous = torch.zeros(1, 1, 1, total, total)
    for dest in range(total):
        previous[0, 0, 0, dest, max(dest - 1, 0)] = 1.0
        if dest >= 1 + half:
            ideal[0, 0, 0, dest, dest - half + 1] = 1.0
    assert induction_score_from_attentions(ideal, seq_len=half, prefix_len=1).item() == 1.0
    assert induction_score_from_attentions(previous, seq_len=half, prefix_len=1).item() == 0.0
    with pytest.raises(ZooError, match=r"expected attentions \[layers, batch, heads, 10, 10\]"):
        induction_score_from_attentions(ideal, seq_len=half)


def test_repeated_random_tokens_shape_and_bad_input():
    tokens = repeated_random_tokens(vocab_size=10, seq_len=9, n_sequences=3, seed=0, bos_token_id=4)
    assert tokens.shape == (3, 19) and (tokens[:, 0] == 4).all()
    assert torch.equal(tokens[:, 1:10], tokens[:, 10:])
    assert all(len(set(row[1:10].tolist())) == 9 and 4 not in row[1:].tolist() for row in tokens)
    with pytest.raises(ZooError, match=r"vocabulary offers 9; use seq_len <= 9"):
        repeated_random_tokens(vocab_size=10, seq_len=10, n_sequences=1, seed=0, bos_token_id=0)
    with pytest.raises(ZooError, match=r"at most 80; use seq_len <= 40"):
        induction_score(random_neox(), vocab_size=64, seq_len=41)


def test_repeated_random_tokens_draw_from_a_token_pool_when_given():
    pool = [3, 5, 8, 13, 21, 34]
    tokens = repeated_random_tokens(vocab_size=64, seq_len=6, n_sequences=4, seed=1, token_pool=pool)
    assert all(sorted(row[:6].tolist()) == pool for row in tokens)
    # without a pool the draws are the whole vocabulary's, exactly as before pools existed
    plain = repeated_random_tokens(vocab_size=64, seq_len=6, n_sequences=4, seed=1)
    assert torch.equal(plain, repeated_random_tokens(vocab_size=64, seq_len=6, n_sequences=4, seed=1,
                                                     token_pool=range(64)))
    with pytest.raises(ZooError, match=r"vocabulary offers 6; use seq_len <= 6"):
        repeated_random_tokens(vocab_size=64, seq_len=7, n_sequences=1, seed=0, token_pool=pool)


# ---------------------------------------------------------------- losses


def test_heldout_loss_equals_the_models_own_labels_loss():
    model = random_neox()
    tokens = torch.randint(0, 64, (5, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=tokens, labels=tokens).loss.item()
    assert heldout_loss(model, tokens, batch_size=2) == pytest.approx(expected, abs=1e-5)
    per_example = per_example_loss(model, tokens, batch_size=3)
    assert per_example.shape == (5,)
    assert per_example.mean().item() == pytest.approx(expected, abs=1e-5)
    assert model.training  # mode given back


def test_icl_score_is_late_minus_early_token_loss():
    model = random_neox()
    tokens = torch.randint(0, 64, (4, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(input_ids=tokens).logits
    loss_at = [None] + [
        torch.nn.functional.cross_entropy(logits[:, k - 1], tokens[:, k]).item()
        for k in range(1, 20)
    ]
    assert icl_score(model, tokens, early=3, late=17) == pytest.approx(
        loss_at[17] - loss_at[3], abs=1e-5
    )
    both = icl_score(model, tokens, early=(2, 4), late=(18, 20))
    assert both == pytest.approx(
        (loss_at[18] + loss_at[19] - loss_at[2] - loss_at[3]) / 2, abs=1e-5
    )


def test_default_icl_windows_scale_with_context():
    assert default_icl_windows(512) == ((50, 60), (500, 510))
    assert default_icl_windows(2048) == ((200, 240), (2000, 2040))
    with pytest.raises(ZooError, match=r"too short"):
        default_icl_windows(2)


def test_metric_bad_input():
    model = random_neox()
    with pytest.raises(ZooError, match=r"\[batch, seq_len\]"):
        heldout_loss(model, torch.zeros(7, dtype=torch.long))
    with pytest.raises(ZooError, match=r"late window 40 must be"):
        icl_score(model, torch.zeros(2, 20, dtype=torch.long), late=40)
    with pytest.raises(
        ZooError,
        match=r"unknown metric 'perplexity'; built-in metrics: loss, "
        r"icl, induction",
    ):
        metric_function("perplexity")
    assert set(METRICS) == {"loss", "icl", "induction", "repetition", "accuracy", "fourier",
                            "superposition", "neurons"}
