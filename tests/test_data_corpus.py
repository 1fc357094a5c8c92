"""Preparing corpora: same source => same fingerprint (any workers), round trips, bad inputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_index import BUILTIN_SOURCES, Corpus, prepare_corpus
from zoo_common.errors import IntegrityError, ZooError
from data_index.packing import PACKING_RULE

SMALL = "builtin:pydoc?max_docs=40"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return prepare_corpus(SMALL, tmp_path_factory.mktemp("c") / "pydoc", vocab_size=320, seq_len=32, progress=False)


def test_prepare_twice_same_fingerprint_and_reuse(corpus, tmp_path):
    again = prepare_corpus(SMALL, tmp_path / "again", vocab_size=320, seq_len=32, progress=False)
    assert again.fingerprint == corpus.fingerprint
    assert (again.folder / "tokens.bin").read_bytes() == (corpus.folder / "tokens.bin").read_bytes()
    assert (again.folder / "tokenizer" / "tokenizer.json").read_bytes() == (corpus.folder / "tokenizer" / "tokenizer.json").read_bytes()
    same = prepare_corpus(SMALL, corpus.folder, vocab_size=320, seq_len=32, progress=False)
    assert same.fingerprint == corpus.fingerprint


def test_workers_do_not_change_the_corpus(corpus, tmp_path):
    parallel = prepare_corpus(SMALL, tmp_path / "w2", vocab_size=320, seq_len=32, workers=2, progress=False)
    assert parallel.fingerprint == corpus.fingerprint


def test_tokenizer_training_is_deterministic_across_processes(corpus, tmp_path):
    code = ("from data_index import prepare_corpus; import sys; "
            f"print(prepare_corpus({SMALL!r}, sys.argv[1], vocab_size=320, seq_len=32, progress=False).fingerprint)")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == corpus.fingerprint


def test_packing_follows_the_documented_rule(corpus):
    meta = json.loads((corpus.folder / "corpus.json").read_text())
    assert meta["packing"]["rule"] == PACKING_RULE
    assert meta["n_stream_tokens"] == corpus.n_samples * corpus.seq_len + meta["dropped_tail_tokens"]
    assert 0 <= meta["dropped_tail_tokens"] < corpus.seq_len
    tokens = corpus.samples(np.arange(corpus.n_samples)).reshape(-1)
    assert corpus.dtype == np.uint16 and tokens.dtype == np.int64
    # EOS count: one per document fully inside the kept stream
    assert (tokens == corpus.eos_id).sum() in (meta["n_documents"], meta["n_documents"] - 1)
    from data_index.sources import resolve_source

    source_texts = [text for _, text in resolve_source(SMALL).documents()]
    decoded = corpus.decode(tokens).split("<|endoftext|>")
    complete = decoded[:-1]  # every document whose EOS was kept, in source order
    assert complete == source_texts[: len(complete)] and len(complete) >= len(source_texts) - 1
    assert source_texts[len(complete)].startswith(decoded[-1])  # the tail is a cut prefix


def test_decode_round_trip_and_provenance(corpus):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(corpus.tokenizer_dir / "tokenizer.json"))
    sample = corpus.samples([3])[0]
    text = corpus.decode(sample)
    assert tokenizer.encode(text, add_special_tokens=False).ids == sample.tolist()
    doc, offset = corpus.provenance(3)
    assert doc.startswith("__future__:") or ":" in doc
    assert doc == corpus.documents_of(3)[0]
    import pyarrow.parquet as pq

    table = pq.read_table(corpus.folder / "provenance.parquet")
    assert table.num_rows == corpus.n_samples
    row = table.slice(3, 1).to_pylist()[0]
    assert (row["sample"], row["document_id"], row["token_offset"]) == (3, doc, offset)


def test_autotokenizer_loads_the_folder(corpus):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(corpus.folder / "tokenizer")
    sample = corpus.samples([5])[0].tolist()
    assert hf.eos_token == "<|endoftext|>" and hf.eos_token_id == corpus.eos_id
    assert hf.decode(sample) == corpus.decode(sample)
    text = "Return the value of the attribute."
    assert hf(text)["input_ids"] == hf.convert_tokens_to_ids(hf.tokenize(text))


def test_existing_tokenizer_is_reused_verbatim(corpus, tmp_path):
    other = prepare_corpus("builtin:induction?n_docs=20", tmp_path / "ind", tokenizer=corpus.tokenizer_dir, seq_len=16, progress=False)
    assert (other.tokenizer_dir / "tokenizer.json").read_bytes() == (corpus.tokenizer_dir / "tokenizer.json").read_bytes()
    assert other.vocab_size == corpus.vocab_size


def test_synthetic_sources_are_deterministic_in_seed(tmp_path):
    a = prepare_corpus("builtin:induction?n_docs=30&length=8&seed=1", tmp_path / "a", vocab_size=300, seq_len=64, progress=False)
    b = prepare_corpus("builtin:induction?n_docs=30&length=8&seed=2", tmp_path / "b", vocab_size=300, seq_len=16, progress=False)
    assert a.fingerprint != b.fingerprint
    first = a.decode(a.samples([0])[0]).split("<|endoftext|>")[0].split()
    assert first[:8] == first[8:16]  # the sequence, then its repeat
    m = prepare_corpus("builtin:modular?p=7", tmp_path / "m", seq_len=4, progress=False)
    again = prepare_corpus("builtin:modular?p=7", tmp_path / "m2", seq_len=4, progress=False)
    assert m.fingerprint == again.fingerprint and m.meta["n_documents"] == 49


def test_corpus_files_are_verified(corpus, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(corpus.folder, copy)
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == corpus.files()
    Corpus.open(copy).verify()
    data = bytearray((copy / "tokens.bin").read_bytes())
    data[10] ^= 1
    (copy / "tokens.bin").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="tokens.bin has sha256"):
        Corpus.open(copy).verify()
    (copy / "tokens.bin").write_bytes(bytes(data[:-2]))
    with pytest.raises(IntegrityError, match="tokens.bin has"):
        Corpus.open(copy)


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("source, kwargs, message", [
    ("/no/such/file.txt", {}, "is not a file or folder"),
    ("builtin:wikipedia", {}, "unknown built-in source 'wikipedia'; valid: builtin:pydoc, builtin:induction, builtin:induction_tokens, builtin:modular"),
    ("builtin:modular?q=3", {}, "has no parameter 'q'; valid: p, train_fraction, op"),
    (SMALL, {"seq_len": 0}, "seq_len must be > 0"),
    (SMALL, {"vocab_size": 100}, "vocab_size 100 is too small .* at least 257"),
    ("builtin:induction?n_docs=2", {"seq_len": 1000}, "fewer than one sample of seq_len 1000"),
    ("builtin:modular?p=5", {"seq_len": 8}, "samples are 4 tokens .*set data.seq_len to 4"),
])
def test_bad_inputs_get_their_message(tmp_path, source, kwargs, message):
    with pytest.raises(ZooError, match=message):
        prepare_corpus(source, tmp_path / "out", **{"vocab_size": 300, "progress": False, **kwargs})
    assert not (tmp_path / "out").exists() and not _no_leftovers(tmp_path)


def test_empty_and_unreadable_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ZooError, match="no documents"):
        prepare_corpus(str(tmp_path / "empty.txt"), tmp_path / "out", vocab_size=300, progress=False)
    (tmp_path / "bad.csv").write_text("a,b")
    with pytest.raises(ZooError, match="unsupported file type '.csv'"):
        prepare_corpus(str(tmp_path / "bad.csv"), tmp_path / "out", vocab_size=300, progress=False)
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": ')
    with pytest.raises(ZooError, match="cannot read .*broken.jsonl") as raised:
        prepare_corpus(str(tmp_path / "broken.jsonl"), tmp_path / "out", vocab_size=300, progress=False)
    assert "DatasetGenerationError" not in str(raised.value)  # the parser's own words instead
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(ZooError, match=r"cannot read .*latin1.txt: UnicodeDecodeError: .*not UTF-8"):
        prepare_corpus(str(tmp_path / "latin1.txt"), tmp_path / "out", vocab_size=300, progress=False)
    (tmp_path / "other.jsonl").write_text('{"body": "some text here"}\n')
    with pytest.raises(ZooError, match=r"no column 'text'; columns: \['body'\]"):
        prepare_corpus(str(tmp_path / "other.jsonl"), tmp_path / "out", vocab_size=300, progress=False)
    assert not (tmp_path / "out").exists() and not _no_leftovers(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.txt"
        locked.write_text("text")
        locked.chmod(0)
        with pytest.raises(ZooError, match="permission denied"):
            prepare_corpus(str(locked), tmp_path / "out", vocab_size=300, progress=False)


def test_local_files_through_datasets(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("First paragraph of a.\n\nSecond paragraph of a, longer text.\n")
    (folder / "sub" / "b.jsonl").write_text('{"text": "Document b zero."}\n{"text": "Document b one."}\n')
    c = prepare_corpus(str(folder), tmp_path / "out", vocab_size=300, seq_len=4, progress=False)
    ids = c.documents_of(0) + [d for s in range(c.n_samples) for d in c.documents_of(s)]
    assert ["a.txt#0", "a.txt#1", "sub/b.jsonl#0", "sub/b.jsonl#1"] == list(dict.fromkeys(ids))[:4]
    assert c.decode(c.samples([0])[0]).startswith("First")


def test_hub_source_offline_fails_with_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZooError, match="needs the network, but HF_HUB_OFFLINE is set"):
        prepare_corpus("hf:roneneldan/TinyStories@train#text", tmp_path / "out", progress=False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ZooError, match="cannot be reached"):
        prepare_corpus("hf:roneneldan/TinyStories", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_folder_with_a_different_corpus_is_refused(corpus):
    with pytest.raises(ZooError, match="already holds a different corpus"):
        prepare_corpus(SMALL, corpus.folder, vocab_size=320, seq_len=16, progress=False)
    assert Corpus.open(corpus.folder).fingerprint == corpus.fingerprint
    assert not _no_leftovers(corpus.folder.parent)


def test_builtin_sources_are_listed():
    assert set(BUILTIN_SOURCES) == {"pydoc", "induction", "induction_tokens", "modular"}


def test_pydoc_max_chars_bounds_documents_and_keeps_old_fingerprints():
    from data_index.builtin_sources import resolve_builtin

    short = resolve_builtin("pydoc?min_chars=80&max_chars=199&max_docs=30")
    lengths = [len(text) for _, text in short.documents()]
    assert len(lengths) == 30 and all(80 <= n <= 199 for n in lengths)
    assert resolve_builtin("pydoc?max_chars=0").spec == resolve_builtin("pydoc").spec
    assert "max_chars" not in resolve_builtin("pydoc").spec
