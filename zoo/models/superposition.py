"""The ReLU output model of Elhage et al. 2022 ("Toy Models of Superposition") as a transformers model.

    h = W x                      W: [hidden, features]  (m x n, the paper's notation)
    x' = ReLU(W^T h + b)         b: [features]
    loss = mean over the batch of sum_i I_i (x_i - x'_i)^2      I_i: the features' importances

Its true features are known: the input basis. Column W_i is where feature i lives in the hidden
space, so every measure of superposition (which features are represented, how they interfere,
their geometry) reads W, and any method's directions can be scored against W's columns.

A PreTrainedModel so that snapshots are ordinary Hugging Face folders: this very file travels
with each one (config.json's `auto_map`), so `AutoModel.from_pretrained(folder,
trust_remote_code=True)` and nnsight open it with no zoo installed. Hence it imports nothing of zoo.
The hidden vector and the reconstruction are returned (and pass through plain modules, `encoder`
and `decoder` hooks for nnsight), the loss when `features` are given with `labels=True` or by
default in training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

SUPERPOSITION_MODEL_TYPE = "zoo-superposition"
REMOTE_CODE_FILE = "modeling_zoo_superposition.py"


class ZooSuperpositionConfig(PreTrainedConfig):
    """n features into m hidden dimensions, and the features' importances (the loss's weights)."""

    model_type = SUPERPOSITION_MODEL_TYPE

    n_features: int = 20
    hidden_size: int = 5
    importance: list[float] | None = None  # I_i; None: all 1
    initializer_range: float | None = None  # None: Xavier normal, as the paper's notebook

    def importance_tensor(self) -> torch.Tensor:
        values = self.importance if self.importance is not None else [1.0] * self.n_features
        return torch.tensor(values, dtype=torch.float32)


@dataclass
class SuperpositionOutput(ModelOutput):
    """`loss` (when features were given), `reconstruction` x' [B, n], `hidden` h [B, m]."""

    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


class ZooSuperpositionModel(PreTrainedModel):
    """h = W x, x' = ReLU(W^T h + b), with W [m, n] and b [n] as the paper writes them."""

    config_class = ZooSuperpositionConfig
    config: ZooSuperpositionConfig
    main_input_name = "features"

    def __init__(self, config: ZooSuperpositionConfig):
        super().__init__(config)
        self.W = nn.Parameter(torch.empty(config.hidden_size, config.n_features))
        self.b = nn.Parameter(torch.zeros(config.n_features))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self:
            with torch.no_grad():
                if self.config.initializer_range is None:
                    nn.init.xavier_normal_(self.W)
                else:
                    self.W.normal_(0.0, self.config.initializer_range)
                self.b.zero_()

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """h = W x: the hidden vector [B, m]."""
        return features @ self.W.T

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        """x' = ReLU(W^T h + b): the reconstruction [B, n]."""
        return torch.relu(hidden @ self.W + self.b)

    def reconstruction_loss(self, features: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """The importance-weighted squared error, summed over features, averaged over the batch."""
        # the importances from the config, not a buffer: from_pretrained may build the model on
        # the meta device and fill only what the weights file holds
        importance = self.config.importance_tensor().to(features.device, features.dtype)
        weighted = importance * (features - reconstruction) ** 2
        return weighted.sum(dim=-1).mean()

    def forward(self, features: torch.Tensor, *, return_loss: bool = True,
                return_dict: bool | None = None, **kwargs) -> SuperpositionOutput | tuple:
        hidden = self.encode(features)
        reconstruction = self.decode(hidden)
        loss = None
        if return_loss:
            loss = self.reconstruction_loss(features, reconstruction)
        result = SuperpositionOutput(loss=loss, reconstruction=reconstruction, hidden=hidden)
        if return_dict is False:
            return result.to_tuple()
        return result


def register_superposition_model() -> None:
    """Make `AutoConfig` / `AutoModel` know "zoo-superposition"; safe to call repeatedly."""
    AutoConfig.register(SUPERPOSITION_MODEL_TYPE, ZooSuperpositionConfig, exist_ok=True)
    AutoModel.register(ZooSuperpositionConfig, ZooSuperpositionModel, exist_ok=True)


def write_remote_code(folder, config: ZooSuperpositionConfig) -> None:
    """Put this module into a model folder and point the config's `auto_map` at it, so that
    `AutoModel.from_pretrained(folder, trust_remote_code=True)` works with no zoo installed.
    Call before `config.save_pretrained(folder)`."""
    from pathlib import Path

    here = Path(__file__).resolve()
    Path(folder, REMOTE_CODE_FILE).write_text(here.read_text(encoding="utf-8"), encoding="utf-8")
    module = REMOTE_CODE_FILE.removesuffix(".py")
    config.auto_map = {"AutoConfig": f"{module}.ZooSuperpositionConfig",
                       "AutoModel": f"{module}.ZooSuperpositionModel"}
    config.architectures = [ZooSuperpositionModel.__name__]
