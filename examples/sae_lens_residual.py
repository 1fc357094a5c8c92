"""A sparse autoencoder on a zoo model's residual stream, trained with SAELens at two checkpoints
of one run, loaded back, and compared.

SAELens 6 needs TransformerLens < 4, and zoo's TransformerLens support is 4.x, so this example
runs in an environment of its own (zoo itself needs neither):

    python3 -m venv .venv-sae && .venv-sae/bin/pip install torch==2.13.0
    .venv-sae/bin/pip install -e '.[sae]'   # sae-lens 6.54.12 with transformers 5.24.0 here
    .venv-sae/bin/python examples/sae_lens_residual.py --store STORE --model induction-attn2l \\
        --seed 1 --steps 500 3000

How: SAELens' own training API (LanguageModelSAERunnerConfig + LanguageModelSAETrainingRunner)
on its `AutoModelForCausalLM` path, pointed at the step's snapshot folder. A toy model's folder
carries its modeling code (trust_remote_code), so SAELens loads it as any HF model. The hook is
`model.layers.<L>`: block L's residual-stream output. The data is the family's own corpus in the
run's own order: the exact batches the run trained on (zoo.batch), as a datasets.Dataset of
token ids. Each SAE is saved, loaded back with SAE.load_from_disk, and measured on held-out
batches (later steps of the same run): fraction of variance explained, L0, and how many of one
SAE's decoder directions have a close match (cosine >= 0.9) in the other's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import zoo


def token_dataset(model: str, seed: int, store: str, steps: range):
    """The run's training batches for `steps`, one 64-token sample per row."""
    import datasets

    rows = torch.cat([zoo.batch(model, seed=seed, step=s, store=store) for s in steps])
    return datasets.Dataset.from_dict({"input_ids": rows.tolist()})


def train_sae(folder: Path, dataset, *, layer: int, width: int, d_sae: int, tokens: int, l1: float, out: Path):
    from sae_lens import (LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig,
                          StandardTrainingSAEConfig)

    config = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=width, d_sae=d_sae, l1_coefficient=l1),
        model_name=str(folder), model_class_name="AutoModelForCausalLM",
        model_from_pretrained_kwargs={"trust_remote_code": True},
        hook_name=f"model.layers.{layer}", dataset_path="", is_dataset_tokenized=True, streaming=False,
        context_size=len(dataset[0]["input_ids"]), prepend_bos=False,
        training_tokens=tokens, train_batch_size_tokens=1024, store_batch_size_prompts=16,
        n_batches_in_buffer=32, lr=1e-3, device="cpu", seed=0, logger=LoggingConfig(log_to_wandb=False), checkpoint_path=str(out / "checkpoints"),
        output_path=str(out / "sae"), n_checkpoints=0,
    )
    runner = LanguageModelSAETrainingRunner(config, override_dataset=dataset)
    return runner.run()


def residuals(folder: Path, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    seen = []  # what SAELens hooks: the block's output (its first element when a tuple)
    handle = model.get_submodule(f"model.layers.{layer}").register_forward_hook(
        lambda module, inputs, output: seen.append(output[0] if isinstance(output, tuple) else output))
    with torch.no_grad():
        model(tokens)
    handle.remove()
    return seen[0].reshape(-1, seen[0].shape[-1])


def measure(sae, acts: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        features = sae.encode(acts)
        recon = sae.decode(features)
    unexplained = ((acts - recon) ** 2).sum() / ((acts - acts.mean(0)) ** 2).sum()
    return {"variance explained": float(1 - unexplained), "L0": float((features > 0).float().sum(-1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default="induction-attn2l")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs=2, default=[500, 3000], help="the two checkpoints")
    parser.add_argument("--layer", type=int, default=0, help="hook model.layers.<L> (its residual output)")
    parser.add_argument("--expansion", type=int, default=4, help="d_sae = expansion x width")
    parser.add_argument("--tokens", type=int, default=1024 * 1024, help="SAE training tokens (1,024 per SAE step)")
    parser.add_argument("--l1", type=float, default=0.5, help="the sparsity penalty's coefficient")
    parser.add_argument("--out", default=None, help="where the SAEs are saved (default: a temporary folder)")
    args = parser.parse_args()
    from sae_lens import SAE

    out = Path(args.out or tempfile.mkdtemp(prefix="zoo-sae-"))
    train_steps = range(1, 1 + -(-args.tokens // (32 * 64)) + 1)  # enough of the run's batches
    dataset = token_dataset(args.model, args.seed, args.store, train_steps)
    heldout = torch.cat([zoo.batch(args.model, seed=args.seed, step=s, store=args.store)
                         for s in range(train_steps.stop, train_steps.stop + 4)])
    saes, results = {}, {}
    for step in args.steps:
        folder = zoo.snapshot(args.model, seed=args.seed, step=step, store=args.store)
        width = json.loads((folder / "config.json").read_text())["hidden_size"]
        start = time.perf_counter()
        train_sae(folder, dataset, layer=args.layer, width=width, d_sae=args.expansion * width,
                  tokens=args.tokens, l1=args.l1, out=out / f"step{step}")
        seconds = time.perf_counter() - start
        saes[step] = SAE.load_from_disk(str(out / f"step{step}" / "sae"), device="cpu")  # loaded back
        results[step] = {**measure(saes[step], residuals(folder, heldout, args.layer)), "seconds": seconds}
    a, b = (saes[s].W_dec.detach() for s in args.steps)
    cos = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    print(f"{args.model} seed {args.seed}, hook model.layers.{args.layer}, d_sae {a.shape[0]}, "
          f"{args.tokens:,} training tokens from the run's own batches; SAEs in {out}")
    for step, r in results.items():
        print(f"  step {step}: variance explained {r['variance explained']:.3f}, L0 {r['L0']:.1f} "
              f"(held-out batches), trained in {r['seconds']:.0f} s")
    best = cos.max(dim=1).values
    print(f"  mean max cosine of step {args.steps[0]}'s decoder directions against step "
          f"{args.steps[1]}'s: {best.mean():.3f} (median {best.median():.2f}; {int((best >= 0.9).sum())} "
          f"of {len(best)} have a match with cosine >= 0.9)")


if __name__ == "__main__":
    main()
