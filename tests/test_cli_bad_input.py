"""Mistakes on the command line get one clear line and exit 2, before any work starts: counts,
devices, process counts, and store paths (empty, a file, nothing there, the same store twice)."""
from __future__ import annotations

import os

import pytest
import torch
from micro_family import write_manifest

from zoo.cli import main
from zoo.store.store import Store


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["replay", "m-1l32", "--seed", "1", "--step", "3", "--threads", "0"],
     "argument --threads: expected a whole number >= 1, got '0'"),
    (["train", "tiny", "--threads", "-1"], "argument --threads: expected a whole number >= 1"),
    (["train", "tiny", "--nproc", "0"], "argument --nproc: expected a whole number >= 1"),
    (["train", "tiny", "--device", "bogus"], "unknown device 'bogus'; use cpu, cuda or cuda:N"),
    (["data", "show", "--corpus", "c", "--index", "i", "--step", "1", "--max-chars", "-5"],
     "argument --max-chars: expected a whole number >= 0"),
    (["replay", "m-1l32", "--sed", "1", "--step", "3"],
     "unrecognized option --sed (did you mean --seed?)"),
    # a unique prefix is an abbreviation argparse accepts, not a typo: the missing --step is named
    (["replay", "m-1l32", "--se", "1"], "one of the arguments --step --all is required"),
])
def test_bad_numbers_and_devices_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in _error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_one_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["replay", "m-1l32", "--seed", "1", "--step", "3", "--device", "cuda"])
    assert "no CUDA GPU is usable here" in _error(capsys)


def test_nproc_that_does_not_split_the_batch_is_refused_before_launching(tmp_path, capsys):
    manifest = write_manifest(tmp_path)  # batch_size 8
    assert main(["train", manifest, "--nproc", "3", "--store", str(tmp_path / "s")]) == 2
    assert "does not split over 3 processes; valid process counts: [1, 2, 4, 8]" in _error(capsys)
    assert main(["train", manifest, "--nproc", "3", "--plan"]) == 2
    assert not (tmp_path / "s").exists()


def test_stack_with_several_processes_is_refused_in_one_line(tmp_path, capsys):
    manifest = write_manifest(tmp_path)
    assert main(["train", manifest, "--stack", "--nproc", "2", "--store", str(tmp_path / "s")]) == 2
    assert "--stack trains several runs in one process, --nproc 2" in _error(capsys)
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif((os.cpu_count() or 1) >= 8, reason="needs a machine with fewer than 8 cores")
def test_more_cpu_processes_than_cores_is_refused(tmp_path, capsys):
    manifest = write_manifest(tmp_path)
    assert main(["train", manifest, "--nproc", "8", "--store", str(tmp_path / "s")]) == 2
    assert f"on a machine with {os.cpu_count()} CPU cores" in _error(capsys)


def test_store_paths(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    for command in (["ls"], ["verify"], ["show", "micro-1l32"], ["gc", "--dry-run"]):
        assert main([*command, "--store", str(missing)]) == 2
        assert f"no Model Zoo store at {missing}" in _error(capsys)
    assert not missing.exists()  # a read never creates a store
    assert main(["ls", "--store", ""]) == 2
    assert "the store is an empty string" in _error(capsys)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["ls", "--store", str(a_file)]) == 2
    assert "is a file; a store is a folder" in _error(capsys)
    store = Store.open(str(tmp_path / "store"))
    store.ensure_created()
    assert main(["ls", "--store", store.url]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert main(["push", store.url, "--store", store.url]) == 2
    assert "source and destination are the same store" in _error(capsys)
    assert main(["pull", str(missing), "--store", store.url]) == 2
    assert f"no Model Zoo store at {missing} (SOURCE)" in _error(capsys)
    assert main(["data", "prepare", " ", "--out", str(tmp_path / "c")]) == 2
    assert "SOURCE is empty" in _error(capsys)
