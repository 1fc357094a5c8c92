"""Task corpora (builtin:modular): symbolic vocabulary, loss mask, a split by data seed, the
full-batch index, and training / replay / evaluation on them (issue 19, part 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from micro_family import write_grokking_manifest

from data_index import Corpus, StepIndex, StepIndexWriter, prepare_corpus
from data_index.splits import held_out_split, train_split
from zoo_common.errors import IntegrityError, ZooError
from zoo_common.location import open_location
from zoo.config.names import RunId


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return prepare_corpus("builtin:modular?p=11&train_fraction=0.5", tmp_path_factory.mktemp("task") / "c",
                          seq_len=4, progress=False)


def test_modular_is_symbolic_with_the_loss_on_the_answer(task):
    assert task.vocab_size == 13 and task.n_samples == 121  # 0..10, "=", EOS
    tokens, mask = task.samples(np.arange(121)), task.loss_mask(np.arange(121))
    a, b = np.divmod(np.arange(121), 11)
    assert (tokens[:, 0] == a).all() and (tokens[:, 1] == b).all() and (tokens[:, 2] == 11).all()
    assert (tokens[:, 3] == (a + b) % 11).all()
    assert mask.tolist() == [[False, False, False, True]] * 121
    assert task.decode(tokens[25]) == "2 3 = 5" and task.documents_of(25) == ["modular:p11:add:2,3"]
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(task.tokenizer_dir))("2 3 =").input_ids == [2, 3, 11]


def test_seen_tokens_are_the_ids_the_samples_hold_without_eos(task):
    seen = task.seen_tokens()
    held = set(np.unique(task.samples(np.arange(task.n_samples))).tolist()) - {task.eos_id}
    assert seen.tolist() == sorted(held) and task.eos_id not in seen


def test_operations_and_fingerprint_cover_the_mask(tmp_path, task):
    sub = prepare_corpus("builtin:modular?p=11&op=sub&train_fraction=0.5", tmp_path / "s", seq_len=4, progress=False)
    assert sub.samples([1])[0].tolist() == [0, 1, 11, 10] and sub.fingerprint != task.fingerprint
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(task.folder, copy)
    mask = bytearray((copy / "loss_mask.bin").read_bytes())
    mask[0] = 1
    (copy / "loss_mask.bin").write_bytes(bytes(mask))
    with pytest.raises(IntegrityError, match="loss_mask.bin has sha256"):
        Corpus.open(copy).verify()


def test_split_is_a_pure_function_of_the_data_seed(task):
    train, test = task.train_ids(1), task.test_ids(1)
    assert len(train) == 60 and len(test) == 61 and not set(train) & set(test)
    assert sorted([*train, *test]) == list(range(121)) and list(train) == sorted(train)
    assert np.array_equal(train, train_split(121, 0.5, 1)) and np.array_equal(test, held_out_split(121, 0.5, 1))
    assert not np.array_equal(train, task.train_ids(2))  # seeds hold out different pairs
    assert task.meta["packing"]["split"] == {"train_fraction": 0.5, "rule": "smallest-splitmix64-keys/v1"}


@pytest.mark.parametrize("query, field", [
    ("p=1", "parameter p must be >= 2"),
    ("train_fraction=1", "parameter train_fraction must lie strictly between 0 and 1"),
    ("train_fraction=0", "parameter train_fraction must lie strictly between 0 and 1"),
    ("train_fraction=x", "parameter train_fraction must be a number"),
    ("op=pow", "parameter op: unknown operation 'pow'; valid: add, sub, mul"),
])
def test_a_bad_task_parameter_is_one_error_naming_it(tmp_path, query, field):
    with pytest.raises(ZooError, match=field):
        prepare_corpus(f"builtin:modular?{query}", tmp_path / "bad", seq_len=4, progress=False)
    assert not (tmp_path / "bad").exists()


def test_a_full_batch_index_is_one_row_per_step(tmp_path, task):
    loc = open_location(str(tmp_path / "index"))
    train = task.train_ids(3)
    with StepIndexWriter(loc, corpus_fingerprint=task.fingerprint, data_seed=3, batch_size=60,
                         n_samples=121, train_fraction=0.5) as writer:
        for step in range(1, 201):
            writer.append(step, train)
        with pytest.raises(ZooError, match="full-batch run trains on its whole train split"):
            writer.append(201, train[::-1])
    index = StepIndex.open(loc)
    assert index.last_step == 200 and np.array_equal(index.batch_ids(77), train)
    assert [s for s, _ in index.steps_of(int(train[5]))] == list(range(1, 201))
    assert index.steps_of(int(task.test_ids(3)[0])) == []
    index.verify()
    parts = sum(p.stat().st_size for p in (tmp_path / "index").iterdir())
    assert parts < 8_000, parts  # 200 steps x 60 ids would be 12,000 rows
    other = train.copy()
    other[0] = task.test_ids(3)[0]  # a test pair smuggled into the recorded batch
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"sample": np.sort(other)}), tmp_path / "index" / "full_batch.parquet")
    with pytest.raises(IntegrityError, match="differs from the data order"):
        StepIndex.open(loc).verify()


def test_a_minibatch_order_draws_only_from_the_train_split(task):
    from data_index import global_batch

    train = set(task.train_ids(4).tolist())
    seen = np.concatenate([global_batch(s, data_seed=4, batch_size=16, n_samples=121,
                                        train_ids=task.train_ids(4)) for s in range(1, 20)])
    assert set(seen.tolist()) == train  # every train pair, no test pair
    with pytest.raises(ZooError, match="for full-batch training set batch_size to 60"):
        global_batch(1, data_seed=4, batch_size=61, n_samples=121, train_ids=task.train_ids(4))


def test_masked_step_trains_on_the_answer_only():
    from zoo.engine.train_step import masked_loss
    from zoo.models.toy import ZooToyConfig, ZooToyForCausalLM

    torch.manual_seed(0)
    model = ZooToyForCausalLM(ZooToyConfig(vocab_size=13, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64,
                                           max_position_embeddings=4, hidden_act="relu",
                                           use_layer_norm=False)).eval()
    batch = torch.randint(0, 11, (6, 4))
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[:, 3] = True
    loss, outputs = masked_loss(model, batch, mask)
    full = model(input_ids=batch).logits
    assert torch.allclose(outputs.logits[:, 0], full[:, 2], atol=1e-5)  # narrowed == sliced
    expected = torch.nn.functional.cross_entropy(full[:, 2], batch[:, 3])
    assert torch.allclose(loss, expected, atol=1e-5)
    changed = batch.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 11  # the answer moves the loss ...
    assert not torch.allclose(masked_loss(model, changed, mask)[0], loss)
    changed = batch.clone()
    changed[:, 1] = (changed[:, 1] + 1) % 11  # ... an input changes the logits, not the targets
    assert masked_loss(model, changed, mask)[1].targets.tolist() == outputs.targets.tolist()


@pytest.fixture(scope="module")
def grokking_store(tmp_path_factory):
    from training.sweep import train_family
    from zoo.eval.evaluate import evaluate_family
    from zoo.store.store import Store

    folder = tmp_path_factory.mktemp("gmicro")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_grokking_manifest(folder), store=store, threads=2, progress=False)
        evaluate_family("gmicro", ["accuracy", "fourier"], store=store, progress=False)
    return store, folder


def test_a_task_run_records_its_split_and_replays_exactly(grokking_store):
    import zoo
    from zoo.registry.batches import batch_ids

    from zoo.config.names import RunId
    from zoo.store.corpora import open_corpus

    store, _ = grokking_store
    record = store.run(RunId("gmicro", "1l32", 1)).read_json("run.json")
    assert record["split"]["n_train"] == 60 and record["split"]["n_test"] == 61
    corpus = open_corpus(store, record["corpus_fingerprint"])
    assert np.array_equal(batch_ids("gmicro-1l32", seed=1, step=7, store=store), corpus.train_ids(1))
    assert zoo.steps_of("gmicro-1l32", seed=1, sample=int(corpus.test_ids(1)[0]), store=store) == []
    report = zoo.replay("gmicro-1l32", seed=1, step=15, store=store, progress=False)
    assert report.exact


def test_accuracy_columns_say_train_and_test(grokking_store):
    import zoo

    store, _ = grokking_store
    table = zoo.metrics("gmicro", store=store)
    columns = [c for c in table.column_names if "acc" in c]
    assert {"accuracy.train_acc", "accuracy.test_acc"} <= set(columns)
    assert "fourier.key_share" in table.column_names
    acc = [v for v in table.column("accuracy.train_acc").to_pylist() if v is not None]
    assert acc and all(0.0 <= v <= 1.0 for v in acc)
    share = [v for v in table.column("fourier.key_share").to_pylist() if v is not None]
    assert all(0.0 < v <= 1.0 for v in share)


def test_a_task_run_resumed_equals_uninterrupted(tmp_path, grokking_store):
    from training.sweep import train_family
    from zoo.config.names import RunId
    from zoo.store.store import Store

    store, folder = grokking_store
    other = Store.open(str(tmp_path / "store"))
    manifest = write_grokking_manifest(tmp_path, seeds=[1])
    train_family(manifest, store=other, threads=2, progress=False, stop_after_step=13)
    train_family(manifest, store=other, threads=2, progress=False)
    a = store.run(RunId("gmicro", "1l32", 1)).read_checkpoint(20).tensors
    b = other.run(RunId("gmicro", "1l32", 1)).read_checkpoint(20).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_batch_larger_than_the_train_split_names_the_full_batch_size(tmp_path):
    from training.sweep import train_family
    from zoo.store.store import Store

    with pytest.raises(ZooError, match=r"train split of seed 1 \(60 of 121 samples\); for full-batch training set batch_size: full"):
        train_family(write_grokking_manifest(tmp_path, batch_size=61, seeds=[1]),
                     store=Store.open(str(tmp_path / "store")), threads=2, progress=False)


MICRO_CARD = """---
evaluate: [accuracy]
measures:
  - {name: fit, label: "train accuracy >= 0.05", column: accuracy.train_acc, event: threshold, threshold: 0.05}
  - {name: test_at_fit, label: "test accuracy at fit", column: accuracy.test_acc, at_event: fit}
  - {name: final, label: "test accuracy at the end", column: accuracy.test_acc, at: last}
  - {name: never, label: "train accuracy >= 2", column: accuracy.train_acc, event: threshold, threshold: 2}
---
# gmicro
The micro grokking family.
"""


def test_a_card_measures_its_numbers_from_the_store(grokking_store, tmp_path, capsys):
    import zoo
    from zoo.cli import main
    from zoo.eval.family_cards import measure_card

    store, _ = grokking_store
    card = tmp_path / "gmicro.card.md"
    card.write_text(MICRO_CARD)
    record = measure_card("gmicro", store=store, card=card, progress=False)
    by_name = {r["name"]: r for r in record["results"]}
    table = zoo.metrics("gmicro", store=store).to_pylist()
    last = {s: max((r for r in table if r["seed"] == s and r["accuracy.test_acc"] is not None),
                   key=lambda r: r["step"])["accuracy.test_acc"] for s in (1, 2)}
    assert by_name["final"]["values"] == [last[1], last[2]]  # measured, not typed
    assert by_name["never"]["steps"] == [None, None] and "event in 0 of 2 seeds" in by_name["never"]["summary"]
    stored = [0, 1, 2, 4, 5, 10, 15, 20]  # log-spaced to 4, then every 5: the card's grid
    fit = by_name["fit"]
    gaps = [None if s in (None, 0) else s - stored[stored.index(s) - 1] for s in fit["steps"]]
    assert fit["resolution"] == gaps  # how far back the event could lie, per seed
    if max(g or 1 for g in gaps) > 1:
        assert "-step grid" in fit["summary"]
    assert main(["show", "gmicro", "--store", store.url]) == 0
    shown = capsys.readouterr().out
    assert "The micro grokking family." in shown and "test accuracy at the end" in shown
    assert f"{last[1]:.3g}" in shown and "zoo card gmicro" in shown
    from zoo.registry.hf_export import export_run

    folder = export_run("gmicro-1l32", seed=1, to=tmp_path / "export", steps=[10], store=store,
                        progress=False)
    readme = (folder / "main" / "README.md").read_text()
    assert "## The family" in readme and "## gmicro" in readme and f"{last[1]:.3g}" in readme


def test_a_bad_card_names_the_key(tmp_path):
    from zoo.store.cards import builtin_card_path, read_card

    card = tmp_path / "bad.card.md"
    card.write_text(MICRO_CARD.replace("at: last", "at: first"))
    with pytest.raises(ZooError, match=r"measures\[2\].at must be 'last'"):
        read_card(card)
    card.write_text(MICRO_CARD.replace("threshold: 0.05}", "}"))
    with pytest.raises(ZooError, match=r"measures\[0\].threshold is required"):
        read_card(card)
    assert {m["name"] for m in read_card(builtin_card_path("grokking")).measures} >= {"fit", "grok", "final_test"}


def test_a_builtin_card_shows_before_anything_is_trained(tmp_path, capsys):
    from zoo.cli import main

    assert main(["show", "grokking", "--store", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "Nanda et al. 2023" in out and "run `zoo card grokking`" in out


def test_a_card_leaves_out_runs_still_training(tmp_path):
    from training.sweep import train_family
    from zoo.eval.family_cards import measure_card
    from zoo.store.store import Store

    store = Store.open(str(tmp_path / "store"))
    manifest = write_grokking_manifest(tmp_path)
    train_family(manifest, store=store, threads=2, progress=False, only=["1l32/1"])
    train_family(manifest, store=store, threads=2, progress=False, only=["1l32/2"], stop_after_step=10)
    card = tmp_path / "gmicro.card.md"
    card.write_text(MICRO_CARD)
    record = measure_card("gmicro", store=store, card=card, progress=False)
    assert record["unfinished"] == ["gmicro-1l32/seed-2"] and all(r["seeds"] == [1] for r in record["results"])


def test_an_inspected_task_step_has_masked_per_example_losses_and_gradients(grokking_store):
    from zoo.engine.instrument import inspect_step

    store, _ = grokking_store
    seen = inspect_step("gmicro-1l32", seed=1, step=12, store=store)
    assert seen.loss_mask is not None and seen.loss_mask[:, 3].all() and not seen.loss_mask[:, :3].any()
    model = seen.model_before
    logits = model(input_ids=seen.batch).logits[:, 2]
    expected = torch.nn.functional.cross_entropy(logits, seen.batch[:, 3], reduction="none")
    assert torch.allclose(seen.per_example_loss, expected.detach(), atol=1e-5)
    per_example = seen.per_example_gradients("lm_head.weight")
    assert torch.allclose(per_example.mean(0), seen.gradients["lm_head.weight"], atol=1e-5)


def test_batch_size_full_is_the_whole_train_split_whatever_its_size(tmp_path):
    """`batch_size: full` follows the source: another p or train fraction needs no other edit,
    and it is the same run (same config hash) as the number it resolves to."""
    from micro_family import write_grokking_manifest

    from training.sweep import train_family
    from zoo.store.store import Store

    store = Store.open(str(tmp_path / "store"))
    manifest = write_grokking_manifest(
        tmp_path, batch_size="full", steps=4,
        data={"source": "builtin:modular?p=13&train_fraction=0.4", "seq_len": 4})
    train_family(manifest, store=store, threads=2, progress=False, only=["1l32/1"])
    record = store.run(RunId("gmicro", "1l32", 1)).read_json("run.json")
    assert record["config"]["batch_size"] == record["split"]["n_train"] == round(0.4 * 13 * 13)
    explicit = write_grokking_manifest(
        tmp_path, name="explicit.yaml", batch_size=record["split"]["n_train"], steps=4,
        data={"source": "builtin:modular?p=13&train_fraction=0.4", "seq_len": 4})
    outcomes = train_family(explicit, store=store, threads=2, progress=False, only=["1l32/1"])
    assert outcomes[0].status == "skipped"  # the same run: nothing to train again
