"""What a branch changes at its branch point, and how the change is applied to a restored state.

The interventions (each recorded in the branch's run.json):
- dropped samples / documents: never trained on after N (or in a window N+1..`drop_until`); a
  batch slot that would have held one takes the next sample of the order
  (data_index/branch_order.py), so batches stay full;
- other data (`replace_data`, any source or mix, prepared with the parent's tokenizer);
- hyperparameters from N: `lr_scale`, `settings={"optimizer.weight_decay": ...}` (also
  optimizer.lr, optimizer.clip);
- `reinit`: parameters (glob patterns over parameter names) drawn afresh at N from the
  architecture's own initialisation (the named stream "reinit"), their AdamW moments zeroed.
None: a null branch, its parent bit for bit.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib

import numpy as np
import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import ArgumentError, ZooError
from zoo.config.run_config import RunConfig
from zoo.config.seeds import derive_seed
from zoo.engine.training_state import TrainingState
from zoo.models.build import build_model

SETTABLE = ("optimizer.lr", "optimizer.weight_decay", "optimizer.clip")


@dataclasses.dataclass(frozen=True)
class Interventions:
    """What a branch changes at its branch point; empty: a null branch (its parent, bit for bit)."""

    drop_samples: tuple[int, ...] = ()
    drop_documents: tuple[str, ...] = ()
    replace_data: str | None = None
    lr_scale: float | None = None
    settings: tuple[tuple[str, float], ...] = ()
    reinit: tuple[str, ...] = ()
    reinit_seed: int = 0
    drop_until: int | None = None  # dropped in steps N+1..drop_until only (None: to the end)
    # masked: kept in their batches with no loss (the batches are the parent's, less these
    # samples), in steps N+1..drop_until; what a training-data attribution's check removes
    mask_samples: tuple[int, ...] = ()



def interventions_from(given: dict, label: str) -> Interventions:
    """The Interventions that `branch`'s keywords ask for, checked; errors name the keyword."""
    known = [f.name for f in dataclasses.fields(Interventions)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ArgumentError(f"branch {label!r}: unknown intervention {', '.join(unknown)}; "
                            f"interventions: {', '.join(known)}")
    drop_samples, drop_documents = _listed(given.get("drop_samples")), _listed(given.get("drop_documents"))
    mask_samples = _listed(given.get("mask_samples"))
    reinit = given.get("reinit")
    reinit = [reinit] if isinstance(reinit, str) else _listed(reinit)
    settings = given.get("settings")
    for what, value in (("drop_samples", drop_samples), ("drop_documents", drop_documents),
                        ("mask_samples", mask_samples), ("reinit", reinit), ("settings", settings)):
        if value is not None and len(value) == 0:
            raise ArgumentError(f"branch {label!r}: {what} is given but empty, so it changes "
                                f"nothing; give its ids / names, or leave it out for a null branch")
    wanted = _interventions(drop_samples or (), drop_documents or (), given.get("replace_data"),
                            given.get("lr_scale"), settings, reinit or (),
                            given.get("reinit_seed", 0))
    if mask_samples:
        if drop_samples or drop_documents or given.get("replace_data") is not None:
            raise ArgumentError(f"branch {label!r}: mask_samples keeps the parent's batches; it "
                                f"does not combine with dropping or replacing data")
        wanted = dataclasses.replace(wanted, mask_samples=tuple(sorted(
            {whole_number(s, "each masked sample id") for s in mask_samples})))
    drop_until = given.get("drop_until")
    if drop_until is not None:
        if not (wanted.drop_samples or wanted.drop_documents or wanted.mask_samples):
            raise ArgumentError("drop_until ends a window of dropped (or masked) samples: give "
                                "drop_samples, drop_documents or mask_samples too")
        wanted = dataclasses.replace(wanted, drop_until=whole_number(drop_until, "drop_until"))
    return wanted


def _listed(values) -> list | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ZooError(f"expected a list of ids, got {values!r}")
    return list(values.tolist() if isinstance(values, np.ndarray) else values)



def _interventions(drop_samples, drop_documents, replace_data, lr_scale, settings, reinit,
                   reinit_seed) -> Interventions:
    samples = tuple(sorted({whole_number(s, "each dropped sample id") for s in drop_samples}))
    documents = tuple(sorted({str(d) for d in drop_documents}))
    if replace_data is not None and (samples or documents):
        raise ZooError("replace_data trains on another corpus, where the parent's sample and "
                       "document ids mean nothing: drop samples, or replace the data, not both")
    if replace_data is not None and (not isinstance(replace_data, str) or not replace_data.strip()):
        raise ZooError(f"replace_data is a source (builtin:NAME, a file or folder, mix:[...]), "
                       f"got {replace_data!r}")
    if lr_scale is not None:
        if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)) or not lr_scale > 0:
            raise ZooError(f"lr_scale must be a number > 0, got {lr_scale!r}")
        lr_scale = float(lr_scale)
    pairs = []
    for key, value in sorted((settings or {}).items()):
        if key not in SETTABLE:
            raise ZooError(f"cannot set {key!r} in a branch; settable from the branch point: "
                           f"{', '.join(SETTABLE)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ZooError(f"{key} must be a number >= 0, got {value!r}")
        pairs.append((key, float(value)))
    patterns = (reinit,) if isinstance(reinit, str) else tuple(str(p) for p in reinit)
    return Interventions(samples, documents, replace_data, lr_scale, tuple(pairs), patterns,
                         whole_number(reinit_seed, "reinit_seed"))



def describe(wanted: Interventions) -> list[dict]:
    out = []
    if wanted.drop_samples:
        digest = hashlib.sha256(np.asarray(wanted.drop_samples, dtype="<i8").tobytes()).hexdigest()
        out.append({"kind": "drop_samples", "count": len(wanted.drop_samples), "sha256": digest})
    if wanted.drop_documents:
        out.append({"kind": "drop_documents", "documents": list(wanted.drop_documents)})
    if wanted.mask_samples:
        digest = hashlib.sha256(np.asarray(wanted.mask_samples, dtype="<i8").tobytes()).hexdigest()
        out.append({"kind": "mask_samples", "count": len(wanted.mask_samples), "sha256": digest})
    if wanted.drop_until is not None:
        for item in out:
            item["until_step"] = wanted.drop_until
    if wanted.replace_data is not None:
        out.append({"kind": "replace_data", "source": wanted.replace_data})
    if wanted.lr_scale is not None:
        out.append({"kind": "lr_scale", "value": wanted.lr_scale})
    out += [{"kind": "set", "field": key, "value": value} for key, value in wanted.settings]
    if wanted.reinit:
        out.append({"kind": "reinit", "params": list(wanted.reinit), "seed": wanted.reinit_seed})
    return out


def branch_config(parent_cfg: RunConfig, wanted: Interventions) -> RunConfig:
    optimizer = parent_cfg.optimizer
    if wanted.lr_scale is not None:
        optimizer = dataclasses.replace(optimizer, lr=optimizer.lr * wanted.lr_scale)
    for key, value in wanted.settings:
        optimizer = dataclasses.replace(optimizer, **{key.split(".", 1)[1]: value})
    if wanted.mask_samples:
        if parent_cfg.masked_samples:
            raise ZooError("this run masks samples already; a branch of it cannot mask others")
        return dataclasses.replace(parent_cfg, optimizer=optimizer,
                                   masked_samples=wanted.mask_samples,
                                   masked_until=wanted.drop_until)
    return dataclasses.replace(parent_cfg, optimizer=optimizer)



def apply_interventions(state: TrainingState, parent_cfg: RunConfig, wanted: Interventions, *,
           vocab_size: int, eos_token_id: int) -> list[str]:
    """Change the restored state as the interventions say; returns the re-initialised names."""
    if wanted.lr_scale is not None or wanted.settings:
        _apply_hyperparameters(state, parent_cfg)
    if not wanted.reinit:
        return []
    params = dict(state.model.named_parameters())
    chosen = sorted(n for n in params if any(fnmatch.fnmatchcase(n, p) for p in wanted.reinit))
    if not chosen:
        raise ZooError(f"reinit {', '.join(wanted.reinit)} matches no parameter; names look like "
                       f"{', '.join(list(params)[:4])} (glob patterns: * and ?)")
    seeds = dataclasses.replace(state.cfg.seed, init_seed=derive_seed("reinit", wanted.reinit_seed)
                                % (1 << 31))
    fresh = dict(build_model(dataclasses.replace(state.cfg, seed=seeds), vocab_size=vocab_size,
                             eos_token_id=eos_token_id).named_parameters())
    with torch.no_grad():
        for name in chosen:
            params[name].copy_(fresh[name].to(params[name].device))
            moments = state.optimizer.state.get(params[name], {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in moments:
                    moments[key].zero_()
    return chosen


def _apply_hyperparameters(state: TrainingState, parent_cfg: RunConfig) -> None:
    """The branch config's lr / weight decay into the restored optimizer and schedule (a
    restored optimizer keeps the values it was saved with; clip is read from the config)."""
    new, old = state.cfg.optimizer, parent_cfg.optimizer
    scale = new.lr / old.lr if old.lr else 1.0
    for k, group in enumerate(state.optimizer.param_groups):
        group["lr"] *= scale
        if "initial_lr" in group:
            group["initial_lr"] *= scale
        if k == 0:  # the decayed group (zoo.engine.train_step.make_optimizer)
            group["weight_decay"] = new.weight_decay
    state.scheduler.base_lrs = [lr * scale for lr in state.scheduler.base_lrs]
