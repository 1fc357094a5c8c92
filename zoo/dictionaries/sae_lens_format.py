"""A stored dictionary in SAELens' on-disk format, which `sae_lens.SAE.load_from_disk` opens.

    DIR/cfg.json                 architecture ("topk" or "standard"), d_in, d_sae, k, dtype, ...
    DIR/sae_weights.safetensors  W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]

Our encode is SAELens' with `apply_b_dec_to_input` (x - b_dec first), no activation
normalisation, and for TopK no rescaling by decoder norms (our decoder rows are unit norm
already): `relu` is SAELens' "standard" SAE, `topk` its "topk". `metadata.sae_lens_version` must
say 6 or later, or SAELens reads the file as an older config and drops the metadata; the hook is
the module whose output the dictionary read (`metadata.hook_name`); what zoo knows about the
dictionary (run, step, site, data, seed) rides along in `metadata.zoo`. SAELens lives in an
environment of its own (SAELens 6 pins TransformerLens < 4), so nothing here imports it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from zoo_common.errors import ArgumentError

SAE_LENS_FORMAT_VERSION = "6.0.0"  # the on-disk format this writes (SAELens >= 6 reads it)
ARCHITECTURES = {"relu": "standard", "topk": "topk"}


def export_sae_lens(dictionary, to: str | os.PathLike) -> Path:
    """Write `dictionary` (zoo.load_dict's) into the new folder `to`; returns it."""
    target = Path(to)
    if target.exists() and any(target.iterdir()):
        raise ArgumentError(f"{target} exists and is not empty: export into a new folder")
    record = dictionary.record
    config = record["config"]
    cfg = {
        "architecture": ARCHITECTURES[config["kind"]],
        "d_in": int(record["d_in"]),
        "d_sae": int(config["width"]),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAE_LENS_FORMAT_VERSION,
            "hook_name": record["module"] or record["site"],
            "zoo": {key: record[key] for key in ("name", "run", "step", "site", "module", "capture",
                                                 "config", "data", "quality")},
        },
    }
    if config["kind"] == "topk":
        cfg.update(k=int(config["k"]), rescale_acts_by_decoder_norm=False)
    target.mkdir(parents=True, exist_ok=True)
    weights = {name: dictionary.state_dict()[name].detach().contiguous()
               for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    save_file(weights, target / "sae_weights.safetensors")
    (target / "cfg.json").write_text(json.dumps(cfg, indent=2))
    return target
