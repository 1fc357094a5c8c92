"""The streaming safetensors writer lays files out exactly as safetensors does, whatever the order
tensors arrive in, and refuses a tensor whose size does not match its slot."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from zoo.blobs import dtype_name
from zoo.safetensors_file import SafetensorsWriter, can_write


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
