"""A weighted mix of text sources (data.sources): deterministic, shares held, bad weights named."""
from __future__ import annotations

import pytest
from micro_family import write_manifest

from data_index import prepare_corpus
from data_index.mixing import mix_spec
from data_index.sources import resolve_source
from zoo_common.errors import ZooError

TEXT = "builtin:pydoc?max_docs=60"
REPEATS = "builtin:induction?n_docs=400&length=16"


def test_a_mix_follows_its_weights_and_is_the_same_every_time():
    docs = list(resolve_source(mix_spec([(TEXT, 1.0), (REPEATS, 3.0)])).documents())
    chars = {"s0": 0, "s1": 0}
    for doc_id, text in docs:
        chars[doc_id.split(":", 1)[0]] += len(text)
    share = chars["s1"] / (chars["s0"] + chars["s1"])
    assert 0.7 < share < 0.8, share  # 3 : 1 by characters
    assert docs == list(resolve_source(mix_spec([(TEXT, 1.0), (REPEATS, 3.0)])).documents())
    pydoc_ids = [d.split(":", 1)[1] for d, _ in docs if d.startswith("s0:")]
    assert pydoc_ids == [d for d, _ in resolve_source(TEXT).documents()][: len(pydoc_ids)]  # own order


def test_a_mix_prepares_into_one_corpus_with_prefixed_document_ids(tmp_path):
    corpus = prepare_corpus(mix_spec([(TEXT, 1.0), (REPEATS, 1.0)]), tmp_path / "c", vocab_size=300,
                            seq_len=32, progress=False)
    ids = {corpus.provenance(i)[0].split(":", 1)[0] for i in range(corpus.n_samples)}
    assert ids == {"s0", "s1"} and corpus.meta["source"].startswith("mix:")


@pytest.mark.parametrize("sources, message", [
    ([{"source": TEXT, "weight": 0}], r"data.sources\[0\]: weight: must be > 0"),
    ([{"source": TEXT, "weight": -1}], r"data.sources\[0\]: weight: must be > 0"),
    ([{"source": TEXT}], r"data.sources\[0\].weight: is required"),
    ([], "a mix needs at least one"),
])
def test_a_bad_mix_in_a_manifest_is_one_error_naming_the_field(tmp_path, sources, message):
    from zoo.config.manifest import load_manifest

    path = write_manifest(tmp_path, data={"sources": sources, "vocab_size": 300, "seq_len": 32})
    with pytest.raises(ZooError, match=message):
        load_manifest(path)


def test_a_mix_takes_text_only_and_not_beside_a_source(tmp_path):
    with pytest.raises(ZooError, match="is a task, not text"):
        resolve_source(mix_spec([(TEXT, 1.0), ("builtin:modular?p=7", 1.0)]))
    from zoo.config.manifest import load_manifest

    path = write_manifest(tmp_path, data={"source": REPEATS, "sources": [{"source": TEXT, "weight": 1}]})
    with pytest.raises(ZooError, match="not both"):
        load_manifest(path)


def test_induction_documents_vary_length_and_gap_when_asked():
    from data_index.builtin_sources import resolve_builtin

    plain = list(resolve_builtin("induction?n_docs=2&length=8").documents())
    assert plain[0][1] == "gi ka bu fa vo ge to fo gi ka bu fa vo ge to fo"  # the original layout
    docs = list(resolve_builtin("induction?n_docs=50&length=12&min_length=4&gap=6&symbols=300").documents())
    assert docs == list(resolve_builtin("induction?n_docs=50&length=12&min_length=4&gap=6&symbols=300").documents())
    lengths, offsets = set(), set()
    for _, text in docs:
        words = text.split()
        for size in range(12, 3, -1):  # the longest tail segment that appears earlier too
            tail = words[-size:]
            starts = [i for i in range(len(words) - 2 * size + 1) if words[i:i + size] == tail]
            if starts:
                lengths.add(size)
                offsets.add(len(words) - size - starts[-1])
                break
    assert len(lengths) > 3 and len(offsets) > 5  # no fixed period for a positional head to learn
    with pytest.raises(ZooError, match="min_length .* must be <= length"):
        resolve_builtin("induction?length=4&min_length=8")


TOKEN_REPEATS = "builtin:induction_tokens?n_docs=400&length=12&min_length=4"


def test_token_repeats_draw_from_the_tokenizer_the_text_beside_them_trains(tmp_path):
    from tokenizers import Tokenizer

    corpus = prepare_corpus(mix_spec([(TEXT, 1.0), (TOKEN_REPEATS, 3.0)]), tmp_path / "mix", vocab_size=300,
                            seq_len=64, progress=False)
    text_only = prepare_corpus(TEXT, tmp_path / "text", vocab_size=300, seq_len=64, progress=False)
    assert ((corpus.tokenizer_dir / "tokenizer.json").read_bytes()
            == (text_only.tokenizer_dir / "tokenizer.json").read_bytes())  # trained on the text alone
    tokenizer = Tokenizer.from_file(str(corpus.tokenizer_dir / "tokenizer.json"))
    bound = resolve_source(TOKEN_REPEATS).bind(tokenizer)
    docs = list(bound.documents())
    assert docs == list(resolve_source(TOKEN_REPEATS).bind(tokenizer).documents())  # the same every time
    halves = [tokenizer.encode(text).ids for _, text in docs[:50]]
    assert sum(ids[: len(ids) // 2] == ids[len(ids) // 2:] for ids in halves) >= 40  # [r, r], as tokens
    alphabet = bound.metadata["alphabet_size"]
    assert 0.9 * alphabet <= len(corpus.seen_tokens()) <= alphabet  # the repeats cover the vocabulary
    assert corpus.meta["source_metadata"]["mix"][1]["metadata"]["alphabet_size"] == alphabet


def test_token_repeats_with_nothing_to_train_a_tokenizer_say_what_would(tmp_path):
    with pytest.raises(ZooError, match="draws its tokens from the corpus tokenizer.*mix it with a text source"):
        prepare_corpus(TOKEN_REPEATS, tmp_path / "alone", vocab_size=300, seq_len=64, progress=False)
    text = prepare_corpus(TEXT, tmp_path / "text", vocab_size=300, seq_len=64, progress=False)
    alone = prepare_corpus(TOKEN_REPEATS, tmp_path / "given", tokenizer=text.tokenizer_dir, seq_len=64,
                           progress=False)  # a given tokenizer is enough
    assert alone.n_samples > 0


def test_a_held_out_source_drawn_from_a_tokenizer_is_refused_clearly():
    from zoo.eval.heldout import heldout_documents

    with pytest.raises(ZooError, match="is not plain text .* give text documents"):
        heldout_documents("builtin:pydoc", heldout=TOKEN_REPEATS)
