"""The sparse autoencoder a dictionary is, and its deterministic trainer.

    z = act((x - b_dec) @ W_enc + b_enc)        W_enc [d_in, width], b_enc [width]
    x_hat = z @ W_dec + b_dec                    W_dec [width, d_in], b_dec [d_in]

in SAELens' layout and encode, so an exported dictionary opens in SAELens and encodes the same.
Two kinds: `topk` (act keeps the k largest pre-activations, then ReLU; Gao et al. 2024; decoder
rows held at unit norm) and `relu` (ReLU, with an L1 penalty on z weighted by each decoder row's
norm, so the penalty cannot be dodged by shrinking z and growing W_dec).

Why a trainer of our own: exactness. Every random choice (the decoder's initial directions, the
order of the activations) comes from the named stream "dict" seeded by the dictionary's seed, so
the same command gives the same bits (SAELens' training is not bit-reproducible here). It is a
plain Adam loop as SAELens' trainer runs it (squared error summed over the input, averaged over
the batch; the gradient clipped to norm 1; Adam's defaults; a constant lr), checked against
SAELens on the same activations (benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from zoo_common.errors import ArgumentError
from zoo.config.seeds import derive_seed

KINDS = ("topk", "relu")
TRAINER = 2  # raise when fit() would give other bits for the same settings (a dictionary's identity)
RELU_DECODER_INIT_NORM = 0.1  # SAELens' decoder_init_norm: a relu dictionary's decoder is free


@dataclass(frozen=True)
class DictionaryConfig:
    """What decides a dictionary's weights, besides its activations."""

    kind: str = "topk"
    width: int = 1024
    k: int = 32  # topk: active features per row
    l1: float = 1e-3  # relu: the L1 penalty's weight
    lr: float = 1e-3
    clip: float = 1.0  # the gradient's global norm is clipped to this (SAELens' fixed 1.0); 0: off
    steps: int = 2000
    batch: int = 1024
    seed: int = 0  # the named stream "dict"

    def check(self, d_in: int) -> None:
        if self.kind not in KINDS:
            raise ArgumentError(f"unknown dictionary kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        for name in ("width", "steps", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"dictionary {name} must be a whole number >= 1, got {value!r}")
        if self.kind == "topk" and not 1 <= self.k <= self.width:
            raise ArgumentError(f"k must be between 1 and the width {self.width}, got {self.k}")
        if not self.lr > 0:
            raise ArgumentError(f"lr must be > 0, got {self.lr}")
        if self.kind == "relu" and not self.l1 >= 0:
            raise ArgumentError(f"l1 must be >= 0, got {self.l1}")
        if d_in < 1:
            raise ArgumentError(f"the site has width {d_in}: nothing to encode")

    def record(self) -> dict:
        data = asdict(self)
        if self.kind == "topk":
            data.pop("l1")
        else:
            data.pop("k")
        return data


class SparseAutoencoder(nn.Module):
    """encode / decode / forward, as the module docstring writes them."""

    def __init__(self, d_in: int, width: int, kind: str, *, k: int | None = None):
        super().__init__()
        self.kind, self.k = kind, k
        self.W_enc = nn.Parameter(torch.zeros(d_in, width))
        self.b_enc = nn.Parameter(torch.zeros(width))
        self.W_dec = nn.Parameter(torch.zeros(width, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @property
    def width(self) -> int:
        return self.W_enc.shape[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        if self.kind == "relu":
            return torch.relu(pre)
        top = torch.topk(pre, self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], kind: str, k: int | None) -> SparseAutoencoder:
        d_in, width = tensors["W_enc"].shape
        sae = cls(d_in, width, kind, k=k)
        sae.load_state_dict(tensors)
        return sae.eval()


def fit(data: torch.Tensor, config: DictionaryConfig, *,
        init: SparseAutoencoder | None = None) -> tuple[SparseAutoencoder, dict]:
    """Train a dictionary on `data` [rows, d_in]; `init` warm-starts from another dictionary (the
    previous step's in a sweep). Returns it and its training record (final loss, steps, rows)."""
    rows, d_in = data.shape
    config.check(d_in)
    generator = torch.Generator().manual_seed(derive_seed("dict", config.seed) % (1 << 63))
    sae = SparseAutoencoder(d_in, config.width, config.kind, k=config.k)
    with torch.no_grad():
        if init is not None:
            if init.W_enc.shape != sae.W_enc.shape:
                raise ArgumentError(f"a warm start needs the same shape: {tuple(init.W_enc.shape)} "
                                    f"against {tuple(sae.W_enc.shape)}")
            sae.load_state_dict(init.state_dict())
        else:  # as SAELens 6 starts: random decoder rows, the encoder their transpose, b = 0
            directions = torch.randn(config.width, d_in, generator=generator)
            scale = 1.0 if config.kind == "topk" else RELU_DECODER_INIT_NORM
            sae.W_dec.copy_(scale * directions / directions.norm(dim=1, keepdim=True))
            sae.W_enc.copy_(sae.W_dec.T)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
    order = torch.randperm(rows, generator=generator)
    cursor, loss, mse = 0, torch.zeros(()), torch.zeros(())
    for _ in range(config.steps):
        if cursor + config.batch > rows:  # a new epoch in a new order
            order, cursor = torch.randperm(rows, generator=generator), 0
        x = data[order[cursor:cursor + min(config.batch, rows)]]
        cursor += config.batch
        x_hat, z = sae(x)
        mse = ((x_hat - x) ** 2).sum(dim=-1).mean()
        loss = mse
        if config.kind == "relu":
            loss = mse + config.l1 * (z * sae.W_dec.norm(dim=1)).sum(dim=-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip > 0:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), config.clip)
        optimizer.step()
        if config.kind == "topk":
            with torch.no_grad():
                sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return sae.eval(), {"final_loss": float(loss.detach()), "final_mse": float(mse.detach()),
                        "rows": rows, "epochs": round(config.steps * config.batch / rows, 3)}
