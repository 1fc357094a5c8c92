"""PartLog and the per-step index: round trip, resume, truncation and corruption are caught."""
import numpy as np
import pyarrow as pa
import pytest

from zoo_common.errors import IntegrityError, ZooError
from zoo_common.location import open_location
from data_index.order import global_batch
from data_index.part_log import PartLog
from data_index.step_index import StepIndex, StepIndexWriter

N, B, SEED = 50, 8, 3


def _write(loc, last_step, *, after_step=None, flush_every=4):
    with StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=SEED, batch_size=B, n_samples=N,
                         flush_every=flush_every, after_step=after_step) as writer:
        for step in range((after_step or 0) + 1, last_step + 1):
            writer.append(step, global_batch(step, data_seed=SEED, batch_size=B, n_samples=N))


def test_index_round_trip_and_verify(tmp_path):
    loc = open_location(tmp_path / "idx")
    _write(loc, 20)
    index = StepIndex.open(loc)
    assert (index.first_step, index.last_step, index.batch_size, index.data_seed) == (1, 20, B, SEED)
    assert index.corpus_fingerprint == "abc"
    for step in (1, 7, 20):
        assert np.array_equal(index.batch_ids(step), global_batch(step, data_seed=SEED, batch_size=B, n_samples=N))
    index.verify()
    sample = int(index.batch_ids(7)[3])
    hits = index.steps_of(sample)
    assert (7, 3) in hits and hits == sorted(hits)
    brute = [(s, p) for s in range(1, 21) for p, x in enumerate(index.batch_ids(s)) if x == sample]
    assert hits == brute


def test_step_out_of_range_names_the_range(tmp_path):
    loc = open_location(tmp_path / "idx")
    _write(loc, 5)
    with pytest.raises(ZooError, match=r"step 9 is not in the data index .* steps 1\.\.5"):
        StepIndex.open(loc).batch_ids(9)


def test_resume_after_step_drops_later_steps(tmp_path):
    loc = open_location(tmp_path / "idx")
    _write(loc, 13, flush_every=5)  # parts hold 1-5, 6-10, 11-13
    _write(loc, 16, after_step=7)  # resume from a keyframe at step 7
    index = StepIndex.open(loc)
    assert (index.first_step, index.last_step) == (1, 16)
    index.verify()
    uninterrupted = open_location(tmp_path / "ref")
    _write(uninterrupted, 16)
    assert np.array_equal(index._samples, StepIndex.open(uninterrupted)._samples)


def test_writer_refuses_to_overwrite_or_skip(tmp_path):
    loc = open_location(tmp_path / "idx")
    _write(loc, 3)
    with pytest.raises(ZooError, match="pass after_step"):
        _write(loc, 5)
    with pytest.raises(ZooError, match="only up to 3"):
        _write(loc, 9, after_step=6)
    with pytest.raises(ZooError, match="belongs to another run .*data_seed"):
        StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=99, batch_size=B, n_samples=N, after_step=3)
    with StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=SEED, batch_size=B, n_samples=N, after_step=3) as w:
        with pytest.raises(ZooError, match="expects step 4 next, got step 6"):
            w.append(6, np.arange(B))


def test_unflushed_tail_is_lost_but_flushed_rows_survive(tmp_path):
    loc = open_location(tmp_path / "idx")
    writer = StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=SEED, batch_size=B, n_samples=N, flush_every=4)
    for step in range(1, 7):
        writer.append(step, global_batch(step, data_seed=SEED, batch_size=B, n_samples=N))
    # "crash": the writer is never closed
    index = StepIndex.open(loc)
    assert index.last_step == 4
    index.verify()


def test_truncated_part_file_is_detected_by_name(tmp_path):
    loc = open_location(tmp_path / "idx")
    _write(loc, 12)
    part = sorted((tmp_path / "idx").glob("part-*.parquet"))[1]
    part.write_bytes(part.read_bytes()[:-20])
    with pytest.raises(IntegrityError, match=part.name):
        StepIndex.open(loc)


def test_verify_names_the_first_bad_step(tmp_path):
    loc = open_location(tmp_path / "idx")
    with StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=SEED, batch_size=B, n_samples=N) as writer:
        for step in range(1, 6):
            ids = global_batch(step, data_seed=SEED, batch_size=B, n_samples=N)
            writer.append(step, ids[::-1] if step == 4 else ids)
    with pytest.raises(IntegrityError, match="step 4 of the data index"):
        StepIndex.open(loc).verify()


def test_part_log_is_generic_and_truncates(tmp_path):
    schema = pa.schema([("step", pa.int64()), ("loss", pa.float32())])
    loc = open_location("memory://zoo-test-partlog/metrics")
    log = PartLog(loc, schema=schema, flush_every=2)
    for step in range(1, 8):
        log.append({"step": [step], "loss": [1.0 / step]})
    log.flush()
    assert log.read().column("step").to_pylist() == list(range(1, 8))
    log.truncate_after(3)
    log.append({"step": [4], "loss": [0.5]})
    log.close()
    table = PartLog(loc, schema=schema).read()
    assert table.column("step").to_pylist() == [1, 2, 3, 4]
    assert table.column("loss").to_pylist()[-1] == 0.5
    with pytest.raises(ZooError, match="must not decrease"):
        PartLog(loc, schema=schema).append({"step": [2], "loss": [0.0]})
    with pytest.raises(ZooError, match=r"columns \['step'\], the log schema has \['step', 'loss'\]"):
        PartLog(loc, schema=schema).append({"step": [9]})
    bad = PartLog(loc, schema=schema)
    bad.append({"step": [9], "loss": ["not a number"]})
    with pytest.raises(ZooError, match="do not fit the log schema"):
        bad.flush()
    assert PartLog(loc, schema=schema).read().num_rows == 4


def test_part_log_crash_during_truncation_reads_trimmed_twin(tmp_path):
    schema = pa.schema([("step", pa.int64())])
    loc = open_location(tmp_path / "log")
    with PartLog(loc, schema=schema, flush_every=10) as log:
        log.append({"step": list(range(1, 10))})
    # simulate a crash after the trimmed twin was written but before the old part was removed
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"step": pa.array([1, 2, 3], pa.int64())}), tmp_path / "log" / "part-00000000-000000000001-000000000003.parquet")
    assert PartLog(loc, schema=schema).read().column("step").to_pylist() == [1, 2, 3]


def test_steps_of_scan_and_inverted_index_agree_with_brute_force(tmp_path):
    """The first queries scan, later ones use the sorted index: both must give the same answer."""
    loc = open_location(tmp_path / "idx")
    _write(loc, 30)
    index = StepIndex.open(loc)
    brute = {x: [(s, p) for s in range(1, 31) for p, y in enumerate(index.batch_ids(s)) if y == x]
             for x in range(N)}
    first = [index.steps_of(x) for x in range(N)]  # crosses from scanning to the sorted index
    again = [index.steps_of(x) for x in range(N)]
    assert index._sorted_rows is not None
    assert first == again == [brute[x] for x in range(N)]


def test_ids_outside_the_corpus_are_refused_by_step_and_earlier_steps_kept(tmp_path):
    loc = open_location(tmp_path / "idx")
    writer = StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=SEED, batch_size=B, n_samples=N,
                             flush_every=4)
    for step in (1, 2):
        writer.append(step, global_batch(step, data_seed=SEED, batch_size=B, n_samples=N))
    writer.append(3, np.full(B, N))  # one past the last sample: checked when the steps are flushed
    with pytest.raises(ZooError, match=r"step 3: sample ids must lie in 0\.\.49"):
        writer.append(4, global_batch(4, data_seed=SEED, batch_size=B, n_samples=N))
    index = StepIndex.open(loc)
    assert (index.first_step, index.last_step) == (1, 2)
    with pytest.raises(ZooError, match="expects step 3 next"):
        writer.append(4, global_batch(4, data_seed=SEED, batch_size=B, n_samples=N))


def test_part_files_go_where_write_part_sends_them(tmp_path):
    loc = open_location(tmp_path / "idx")
    sent = []
    with StepIndexWriter(loc, corpus_fingerprint="abc", data_seed=SEED, batch_size=B, n_samples=N,
                         flush_every=2, write_part=lambda name, data: sent.append((name, data))) as writer:
        for step in range(1, 6):
            writer.append(step, global_batch(step, data_seed=SEED, batch_size=B, n_samples=N))
    assert [name for name, _ in sent] == [
        "part-00000000-000000000001-000000000002.parquet",
        "part-00000001-000000000003-000000000004.parquet",
        "part-00000002-000000000005-000000000005.parquet",
    ]
    assert not list((tmp_path / "idx").glob("part-*"))  # nothing written behind the hook's back
    for name, data in sent:
        loc.write_atomic(name, data)
    StepIndex.open(loc).verify()
