"""The streaming safetensors writer lays files out exactly as safetensors does, whatever the order
tensors arrive in, and refuses a tensor whose size does not match its slot."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from data_index.piecewise_writes import open_piecewise, write_all
from zoo.blobs import dtype_name
from zoo.safetensors_file import SafetensorsWriter, can_write, save_tensors


def _refs(tensors):
    return {k: {"dtype": dtype_name(v.dtype), "shape": list(v.shape),
                "nbytes": v.numel() * v.element_size()} for k, v in tensors.items()}


def test_bytes_equal_save_file_for_mixed_dtypes_in_any_order(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"b.weight": torch.randn(3, 4, generator=g),
               "a.half": torch.randn(5, generator=g).to(torch.bfloat16),
               "ids": torch.arange(7), "z": torch.randn(2, generator=g).half(),
               "mask": torch.tensor([True, False]), "empty": torch.empty(0, 3)}
    save_file(tensors, str(tmp_path / "reference.safetensors"), metadata={"format": "pt"})
    assert can_write(_refs(tensors))
    writer = SafetensorsWriter(tmp_path / "ours.safetensors", _refs(tensors))
    for name in reversed(list(tensors)):
        writer.write(name, tensors[name])
    writer.close()
    ours = (tmp_path / "ours.safetensors").read_bytes()
    assert ours == (tmp_path / "reference.safetensors").read_bytes()
    back = load_file(str(tmp_path / "ours.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_wrong_size_is_refused_and_unknown_dtype_is_not_writable(tmp_path):
    writer = SafetensorsWriter(tmp_path / "x.safetensors", _refs({"w": torch.zeros(4)}))
    with pytest.raises(ValueError, match="expects 16"):
        writer.write("w", torch.zeros(5))
    writer.close()
    assert not can_write({"w": {"dtype": "complex128", "shape": [1], "nbytes": 16}})


def test_save_tensors_writes_save_files_bytes_and_refuses_unknown_dtypes(tmp_path):
    g = torch.Generator().manual_seed(1)
    # 3 MiB of float32: written in several pieces (data_index/piecewise_writes.py)
    tensors = {"big": torch.randn(3 << 18, generator=g), "ids": torch.arange(5),
               "half": torch.randn(6, generator=g).to(torch.bfloat16),
               "strided": torch.randn(4, 6, generator=g).t()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "reference.safetensors"),
              metadata={"format": "pt"})
    save_tensors(tensors, tmp_path / "ours.safetensors", metadata={"format": "pt"})
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    with pytest.raises(ValueError, match="complex128"):
        save_tensors({"c": torch.zeros(2, dtype=torch.complex128)}, tmp_path / "c.safetensors")


def test_piecewise_writes_keep_every_byte_in_place(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (5 << 20) // 2 + 7, dtype=np.uint8)
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_all(fd, b"head")  # at the file position
        write_all(fd, data, offset=100)  # pwrite, several pieces
    finally:
        os.close(fd)
    written = path.read_bytes()
    assert written[:4] == b"head" and written[4:100] == bytes(96) and written[100:] == data.tobytes()
    with open_piecewise(tmp_path / "g.bin", "xb") as handle:
        assert handle.write(memoryview(data)) == data.size
        handle.write(b"tail")
    assert (tmp_path / "g.bin").read_bytes() == data.tobytes() + b"tail"
    with pytest.raises(FileExistsError):
        open_piecewise(tmp_path / "g.bin", "xb")
    with pytest.raises(ValueError, match="mode"):
        open_piecewise(tmp_path / "h.bin", "w")


def test_tensors_of_every_dtype_are_laid_out_in_save_files_order(tmp_path):
    """safetensors orders by its dtype enum (not by item size): int32 before bfloat16 before
    float16, float64 after int64, ... one tensor of each dtype, named against that order."""
    dtypes = [torch.bool, torch.uint8, torch.int8, torch.float8_e5m2, torch.float8_e4m3fn,
              torch.int16, torch.uint16, torch.float16, torch.bfloat16, torch.int32, torch.uint32,
              torch.float32, torch.complex64, torch.float64, torch.int64, torch.uint64]
    tensors = {f"t{i:02d}": torch.zeros(3, dtype=dtype) for i, dtype in enumerate(dtypes)}
    save_file(tensors, str(tmp_path / "reference.safetensors"))
    save_tensors(tensors, tmp_path / "ours.safetensors")
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()


def test_save_tensors_that_fails_midway_leaves_no_file(tmp_path):
    """A half-written file would load with zeros where data is missing: nothing must be left."""
    target = tmp_path / "out.safetensors"
    with pytest.raises(NotImplementedError):  # a meta tensor has no bytes to write
        save_tensors({"values": torch.ones(4), "steps": torch.empty(4, device="meta")}, target)
    assert list(tmp_path.iterdir()) == []
