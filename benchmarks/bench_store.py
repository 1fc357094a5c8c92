"""Store codec benchmark: stored bytes / raw fp32 bytes and per-core throughput, ours vs plain zstd.

Weights: a small GPT-NeoX (transformers, built from config) trained ~100 AdamW steps on random
tokens on CPU, so mantissas are no longer those of the initializer. Codec timings are single-thread
(one core); "verified read" adds the sha256 check every store read does. The store rows write and
read the whole checkpoint through Store (threads across tensors), end to end.

    python benchmarks/bench_store.py
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

import torch
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.store import codec
from zoo.store.blobs import tensor_bytes
from zoo.config.names import RunId
from zoo.store.store import Store


def trained_weights(steps: int = 100) -> dict[str, torch.Tensor]:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=4096,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=128,
    )
    model = GPTNeoXForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    for step in range(steps):
        tokens = torch.randint(0, config.vocab_size, (2, 32))
        loss = model(input_ids=tokens, labels=tokens).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            print(f"  training step {step}: loss {loss.item():.3f}", file=sys.stderr)
    return {
        k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype == torch.float32
    }


REPEAT = 5


def best_of(fn, repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(raws: list[bytes], encode, decode) -> tuple[int, float, float]:
    encoded = [encode(r) for r in raws]
    total = sum(map(len, raws))
    enc = best_of(lambda: [encode(r) for r in raws])
    dec = best_of(lambda: [decode(e) for e in encoded])
    return sum(map(len, encoded)), total / enc / 1e9, total / dec / 1e9


def main() -> None:
    torch.set_num_threads(2)
    weights = trained_weights()
    raws = [bytes(tensor_bytes(t)) for t in weights.values()]
    raw_total = sum(map(len, raws))
    print(f"{len(raws)} fp32 tensors, {raw_total / 1e6:.1f} MB raw")
    rows = []
    for level in (1, 3):
        plain = zstandard.ZstdCompressor(level=level)
        rows.append(
            (
                f"plain zstd -{level}",
                *measure(raws, plain.compress, zstandard.ZstdDecompressor().decompress),
            )
        )
        rows.append(
            (
                f"ours bytegroup-zstd -{level}",
                *measure(
                    raws, lambda r, lv=level: codec.encode(r, itemsize=4, level=lv), codec.decode
                ),
            )
        )
    ours_encoded = [codec.encode(r, itemsize=4) for r in raws]
    verified = (
        raw_total
        / best_of(lambda: [hashlib.sha256(codec.decode(e)).digest() for e in ours_encoded])
        / 1e9
    )
    bf16 = [bytes(tensor_bytes(t.bfloat16())) for t in weights.values()]
    bf_total = sum(map(len, bf16))
    plain_bf = sum(len(zstandard.ZstdCompressor(level=1).compress(r)) for r in bf16)
    ours_bf = sum(len(codec.encode(r, itemsize=2)) for r in bf16)

    with tempfile.TemporaryDirectory() as folder:
        stores = iter(range(100))
        write = best_of(
            lambda: (
                Store.open(f"{folder}/{next(stores)}")
                .run(RunId("bench", "4l256", 0))
                .write_checkpoint(0, weights, tokens_seen=0, config_hash="b")
            )
        )
        run = Store.open(f"{folder}/0").run(RunId("bench", "4l256", 0))
        read = best_of(lambda: run.read_checkpoint(0), REPEAT)
        stored = sum(
            p.stat().st_size for p in (Path(folder) / "0" / "blobs").rglob("*") if p.is_file()
        )

    print("\nfp32 weights (GPT-NeoX 4l256 trained 100 AdamW steps), codec rows on one core")
    print(f"| {'codec':28s} | {'stored/raw':>10s} | {'encode GB/s':>11s} | {'decode GB/s':>11s} |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 13}|{'-' * 13}|")
    for name, size, enc, dec in rows:
        print(f"| {name:28s} | {size / raw_total:10.3f} | {enc:11.2f} | {dec:11.2f} |")
    print(f"| {'ours -1, decode + sha256':28s} | {'':>10s} | {'':>11s} | {verified:11.2f} |")
    print(f"\nours / plain zstd stored bytes (level 1): {rows[1][1] / rows[0][1]:.3f}")
    print(
        f"bf16 copy of the same weights, stored/raw: plain zstd {plain_bf / bf_total:.3f}, ours {ours_bf / bf_total:.3f}"
    )
    print(
        f"Store end to end (threads across tensors, local disk, fsync per blob): write "
        f"{raw_total / write / 1e9:.2f} GB/s, verified read {raw_total / read / 1e9:.2f} GB/s, "
        f"stored/raw {stored / raw_total:.3f}"
    )


if __name__ == "__main__":
    main()
