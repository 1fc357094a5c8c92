"""The `neurons` metric on a real GPT-NeoX with planted neurons whose answers are known."""

import numpy as np
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from zoo_common.errors import ZooError
from zoo.eval.neuron_metrics import neuron_measures, neuron_table

TOKEN = 5  # the planted neuron fires on this token and no other


def planted_neox() -> GPTNeoXForCausalLM:
    """Layer 0 (parallel residual, rotary: its MLP reads LayerNorm(embedding), a function of the
    token alone): neuron 0 is dead, neuron 1 fires on TOKEN only."""
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=80)
    model = GPTNeoXForCausalLM(config).eval()
    layer = model.gpt_neox.layers[0]
    with torch.no_grad():
        inputs = layer.post_attention_layernorm(model.gpt_neox.embed_in.weight)  # [vocab, d]
        w = inputs[TOKEN] / inputs[TOKEN].norm()
        scores = inputs @ w
        others = torch.cat([scores[:TOKEN], scores[TOKEN + 1:]]).max()
        up = layer.mlp.dense_h_to_4h
        up.weight[0] = 0.0
        up.bias[0] = -10.0
        up.weight[1] = 10 * w
        up.bias[1] = -10 * (scores[TOKEN] + others) / 2
    return model


def corpus(rows: int = 6, length: int = 40) -> torch.Tensor:
    tokens = torch.randint(0, 64, (rows, length), generator=torch.Generator().manual_seed(1))
    tokens[:, ::4] = TOKEN  # a quarter of positions (and more by chance) are TOKEN
    return tokens


def test_planted_neurons_are_measured_as_built():
    tokens = corpus()
    table = neuron_table(planted_neox(), tokens, top_k=10)
    assert len(table["layer"]) == 2 * 64 and set(table["layer"].tolist()) == {0, 1}
    share = float((tokens == TOKEN).float().mean())
    assert table["firing"][0] == 0.0  # dead
    assert table["firing"][1] == pytest.approx(share)  # fires exactly on TOKEN
    assert table["token_entropy"][1] == 0.0  # its top 10 are all one token
    assert table["kurtosis"][1] < 0  # two-valued (on/off at a quarter): light-tailed
    assert np.all((table["firing"] >= 0) & (table["firing"] <= 1))
    assert np.all((table["token_entropy"] >= 0) & (table["token_entropy"] <= np.log2(10) + 1e-9))


def test_measures_are_means_of_the_table_and_count_the_dead():
    model, tokens = planted_neox(), corpus()
    table = neuron_table(model, tokens)
    fields = neuron_measures(model, tokens)
    assert fields["firing"] == pytest.approx(table["firing"].mean())
    assert fields["L0.token_entropy"] == pytest.approx(table["token_entropy"][:64].mean())
    assert fields["L1.kurtosis"] == pytest.approx(table["kurtosis"][64:].mean())
    assert fields["dead"] == pytest.approx((table["firing"] == 0).mean()) and fields["dead"] >= 1 / 128
    assert fields == neuron_measures(model, tokens)  # deterministic


def test_a_model_without_neurons_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=16, n_embd=8, n_layer=1, n_head=1, n_positions=8))
    with pytest.raises(ZooError, match="no MLP neurons"):
        neuron_table(model, torch.zeros(1, 4, dtype=torch.long))  # gpt2: no site layout known
