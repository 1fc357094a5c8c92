"""A card's size-against-size comparisons: neurons and loss over seeds and examples, from the store."""

import math

import numpy as np
import pytest

from tests.micro_family import write_manifest

HELDOUT = "builtin:pydoc?min_chars=80&max_chars=199"
CARD = f"""---
evaluate: [neurons, loss]
heldout: "{HELDOUT}"
measures:
  - {{name: entropy, label: "token entropy", column: neurons.token_entropy, at: last,
     sizes: [gelu, solu]}}
comparisons:
  - {{name: mono, label: "token entropy of top activations", a: gelu, b: solu,
     metric: neurons.token_entropy, alternative: less,
     hypothesis: "SoLU neurons fire on fewer distinct tokens"}}
  - {{name: cost, label: "held-out loss", a: gelu, b: solu, metric: loss, paired: true,
     alternative: greater, hypothesis: "SoLU costs loss"}}
  - {{name: wide, label: "held-out loss", a: gelu, b: wide, metric: loss,
     hypothesis: "a size this store never trained"}}
  - {{name: attn_neurons, label: "token entropy", a: gelu, b: attn, metric: neurons.token_entropy,
     hypothesis: "an attention-only size has no neurons to compare"}}
---
# cmicro

Sizes side by side.
"""
SIZES = [
    {"name": "gelu", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "gelu"},
    {"name": "solu", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "solu"},
    {"name": "attn", "layers": 1, "width": 32, "heads": 2, "attn_only": True},
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from training.sweep import train_family
    from zoo.eval.family_cards import measure_card
    from zoo.store.store import Store

    folder = tmp_path_factory.mktemp("cmicro")
    card = folder / "cmicro.card.md"
    card.write_text(CARD)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        manifest = write_manifest(folder, "cmicro.yaml", family="cmicro", architecture="toy",
                                  sizes=SIZES, steps=12,
                                  checkpoints={"log_spaced_until": 2, "every": 6, "keyframe_every": 6})
        train_family(manifest, store=store, threads=2, progress=False)
        record = measure_card("cmicro", store=store, card=card, progress=False)
        yield store, card, record


def test_neurons_are_measured_where_there_are_neurons(measured):
    import zoo

    store, _, _ = measured
    table = zoo.metrics("cmicro", store=store)
    rows = [r for r in table.to_pylist() if r["step"] in (0, 1, 2, 6, 12)]  # the stored steps
    for size in ("gelu", "solu"):
        assert all(r["neurons.token_entropy"] is not None for r in rows if r["size"] == size)
    assert all(r.get("neurons.token_entropy") is None for r in rows if r["size"] == "attn")
    assert all(r["loss"] is not None for r in rows)  # loss everywhere, on the card's held-out set


def test_comparisons_resample_seeds_and_examples_and_agree_with_the_table(measured):
    import zoo

    store, _, record = measured
    mono, cost = record["comparisons"][:2]
    assert mono["examples"] == "64 neurons per seed" and cost["examples"].endswith("held-out examples")
    assert mono["at_step"] == cost["at_step"] == 12
    rows = [r for r in zoo.metrics("cmicro", store=store).to_pylist() if r["step"] == 12]
    table_mean = np.mean([r["neurons.token_entropy"] for r in rows if r["size"] == "gelu"])
    assert float(mono["a_cell"].split()[0]) == pytest.approx(table_mean, rel=2e-3)  # same neurons
    for row in (mono, cost):
        assert 0 < row["p_value"] <= 1 and isinstance(row["supported"], bool)
        assert ("excludes 0" in row["test"]) == row["supported"]
        assert not math.isnan(float(row["difference_cell"].split()[0]))


def test_the_card_shows_the_hypotheses_and_their_tests(measured):
    from zoo.store.cards import render_card

    store, card, _ = measured
    text = render_card("cmicro", store=store, card=card)
    assert "Size against size (hypotheses stated before measuring)" in text
    assert "SoLU neurons fire on fewer distinct tokens" in text and "one-sided" in text


def test_a_comparison_with_a_size_not_trained_here_says_so_and_how(measured):
    from zoo.store.cards import render_card

    store, card, record = measured
    wide = record["comparisons"][2]
    assert wide["p_value"] is None and wide["b_cell"] == "-"
    assert "no finished run of cmicro-wide" in wide["test"] and "--only wide" in wide["test"]
    assert "no finished run of cmicro-wide" in render_card("cmicro", store=store, card=card)


def test_a_comparison_that_cannot_be_made_says_why_and_the_card_still_renders(measured):
    _, _, record = measured
    attn = record["comparisons"][3]
    assert attn["p_value"] is None and attn["test"].startswith("not measured: ")
    assert "neurons.token_entropy" in attn["test"]


@pytest.mark.parametrize("change, field", [
    ({"alternative": "smaller"}, "alternative"),
    ({"hypothesis": None}, "hypothesis"),
    ({"paired": "yes"}, "paired"),
    ({"colour": 1}, "colour"),
])
def test_a_bad_comparison_names_its_key(tmp_path, change, field):
    import yaml

    from zoo.store.cards import read_card
    from zoo_common.errors import ZooError

    comparison = {"name": "x", "label": "x", "a": "gelu", "b": "solu", "metric": "loss",
                  "hypothesis": "h", **change}
    comparison = {k: v for k, v in comparison.items() if v is not None}
    meta = {"evaluate": ["loss"], "measures": [{"name": "l", "label": "l", "column": "loss", "at": "last"}],
            "comparisons": [comparison]}
    path = tmp_path / "bad.card.md"
    path.write_text(f"---\n{yaml.safe_dump(meta)}---\n# bad\n")
    with pytest.raises(ZooError, match=rf"comparisons\[0\].*{field}"):
        read_card(path)
