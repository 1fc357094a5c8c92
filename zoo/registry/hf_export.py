"""Export a run in Pythia's Hugging Face convention, so people without our package can use it.

Locally (`export_run`): one folder per run, `<to>/<model_name>-seed<S>/`, holding one complete HF
model folder per step (`step<N>/`: config.json, model.safetensors, tokenizer files, README.md) and
`main/` = the run's final step — exactly what each Hub branch will hold. On the Hub (`push_run`):
one repo per run, branch `main` and a branch per `step<N>`, so

    AutoModelForCausalLM.from_pretrained("org/tiny-2l128-seed1", revision="step256")

works with nothing but transformers. Pythia once served its final weights on most step branches
(pythia#205); `push_run` therefore checks every branch's model.safetensors sha256 after upload.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path


from zoo_common.progress import progress as progress_bar
from zoo_common.errors import ZooError
from zoo_common.location import sha256_file
from zoo.store.store import Store
from zoo.store.records import format_steps

EXPORT_RECORD = "zoo_export.json"
WEIGHTS = "model.safetensors"


def export_folder_name(name: str, seed: int) -> str:
    return f"{name}-seed{seed}"


def export_run(name: str, *, seed: int, to: str | os.PathLike, steps: list[int] | None = None,
               store: str | Store | None = None, progress: bool = True) -> Path:
    """Write `<to>/<name>-seed<S>/{step<N>/, main/, README.md}`; returns that folder.

    `steps` defaults to every stored checkpoint; the final step is always included (it is `main`).
    The folder is built beside its destination and renamed into place: never half an export.
    """
    from zoo.store.catalog import open_run, open_store
    from zoo.registry.snapshots import check_step, snapshot

    store = open_store(store)
    run = open_run(name, seed=seed, store=store)
    stored = run.checkpoint_steps()
    final = stored[-1]
    for step in steps or []:
        check_step(run, step, stored)
    wanted = sorted(set(stored if steps is None else steps) | {final})
    to = Path(to)
    if to.exists() and not to.is_dir():
        raise ZooError(f"export destination {to} is a file; give a folder")
    target = to / export_folder_name(name, seed)
    _check_replaceable(target)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    record = run.read_json("run.json")
    card = model_card(name, seed=seed, record=record, steps=wanted, final=final,
                      family_card=_family_card(store, name.rsplit("-", 1)[0]))
    for step in progress_bar(wanted, desc=f"export {name} seed {seed}", unit="step",
                             enabled=progress):
        _copy_snapshot(snapshot(name, seed=seed, step=step, store=store), staging / f"step{step}",
                       card)
    _copy_snapshot(staging / f"step{final}", staging / "main", card)
    (staging / "README.md").write_text(card)
    (staging / EXPORT_RECORD).write_text(json.dumps({
        "format": 1, "run": run.run_id.key, "model_name": name, "seed": seed, "steps": wanted,
        "main": final, "config_hash": record["config_hash"],
        "corpus_fingerprint": record["corpus_fingerprint"],
        "sha256": {f"step{s}": sha256_file(staging / f"step{s}" / WEIGHTS) for s in wanted},
    }, indent=1))
    previous = target.with_name(f".{target.name}.old")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return target


def push_run(name: str, *, seed: int, repo_id: str, to: str | os.PathLike | None = None,
             steps: list[int] | None = None, store: str | Store | None = None,
             private: bool | None = None, token: str | None = None, progress: bool = True) -> str:
    """Export (into `to`, else a temporary folder) and upload: `main` + one branch per `step<N>`.

    Needs network access and a write token (`huggingface-cli login` or `token=`). Safe to re-run:
    the repo and branches are created with exist_ok, each branch's files are replaced, and every
    branch's weights are checked by sha256 against the export afterwards. Returns the repo URL.
    """
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_run(name, seed=seed, to=to or tmp, steps=steps, store=store,
                            progress=progress)
        exported = json.loads((folder / EXPORT_RECORD).read_text())
        api = HfApi(token=token)
        url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        branches = ["main"] + [f"step{s}" for s in exported["steps"]]
        for branch in progress_bar(branches, desc=f"push {repo_id}", unit="branch",
                                   enabled=progress):
            if branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id, folder_path=folder / branch, revision=branch,
                commit_message=f"{name} seed {seed} {branch}", delete_patterns="*",
            )
        expected = {**exported["sha256"], "main": exported["sha256"][f"step{exported['main']}"]}
        for branch in branches:
            [info] = api.get_paths_info(repo_id, [WEIGHTS], revision=branch)
            remote = info.lfs.sha256 if info.lfs else None
            if remote != expected[branch]:
                raise ZooError(f"{repo_id}@{branch}: {WEIGHTS} has sha256 {remote}, the export has "
                               f"{expected[branch]}; the branch holds the wrong weights, re-run push")
    return url


def _family_card(store, family: str) -> str:
    """The family's card with the numbers `zoo card` measured in this store, if it has one."""
    from zoo.store.cards import builtin_card_path, render_card, stored_card

    if stored_card(family, store) is None and not builtin_card_path(family).is_file():
        return ""
    return render_card(family, store=store)


def model_card(name: str, *, seed: int, record: dict, steps: list[int], final: int,
               family_card: str = "") -> str:
    """README.md for the repo and every branch: what the run is and how to load any step, then
    the family's card (what the family is for and its phenomenon measured over its seeds)."""
    config = record.get("config", {})
    size = config.get("size", {})
    family, size_name = name.rsplit("-", 1)
    example = steps[len(steps) // 2]
    repo = f"<org>/{export_folder_name(name, seed)}"
    model_type = record.get("hf_config", {}).get("model_type")
    toy = model_type == "zoo-toy"
    features = model_type == "zoo-superposition"
    trust = ", trust_remote_code=True" if toy or features else ""
    remote_note = ("\nThe toy architecture's modeling code ships in each folder (`modeling_zoo_toy.py`, named "
                   "by config.json's `auto_map`): `trust_remote_code=True` runs that file, which "
                   "imports only torch and transformers. Beside it, `transformer_lens_zoo_toy.py` is our "
                   "TransformerLens 4 adapter, imported only where TransformerLens is loaded, so "
                   "`TransformerBridge.boot_transformers(path, trust_remote_code=True)` opens a step "
                   "too. Read them first if you like.\n") if toy else ""
    return f"""---
library_name: transformers
tags: [model-zoo, interpretability, {family}]
---
# {name}, seed {seed}

A member of the Model Zoo family **{family}** (size **{size_name}**: {_shape(size, features)},
architecture {config.get("architecture")}),
trained for {final} steps. Every checkpoint is a branch, in Pythia's convention.

| field | value |
|---|---|
| family | {family} |
| size | {size_name} |
| seed | {seed} |
| init_seed (weights) | {record.get("init_seed")} |
| data_seed (data order) | {record.get("data_seed")} |
| steps (branches `step<N>`) | {", ".join(map(str, steps))} |
| `main` | step {final} (final) |
| corpus fingerprint | `{record.get("corpus_fingerprint")}` |
| config hash | `{record.get("config_hash")}` |

## Load a step

{_load_example(repo, example, trust, features)}
{remote_note}
From a local export, each step is a folder: `from_pretrained("{export_folder_name(name, seed)}/step{example}")`.
With Model Zoo installed, any step (not only these) can be replayed exactly:
`zoo.load("{name}", seed={seed}, step={example})`. Stored steps: {format_steps(steps)}.
""" + (f"\n## The family\n\n{_demote_headings(family_card)}" if family_card else "")


def _shape(size: dict, features: bool) -> str:
    if features:
        return f"hidden size {size.get('width')}, data {size.get('source') or 'the family source'}"
    return f"{size.get('layers')} layers, width {size.get('width')}, {size.get('heads')} heads"


def _load_example(repo: str, example: int, trust: str, features: bool) -> str:
    """How to open a step: a causal LM and its tokenizer, or the superposition model (no tokens)."""
    if features:
        return f"""```python
from transformers import AutoModel

model = AutoModel.from_pretrained("{repo}", revision="step{example}"{trust})
model.W, model.b            # [hidden, features], [features]: Elhage et al.'s notation
out = model(features=x)     # x: [batch, features]; out.loss, out.hidden, out.reconstruction
```

The model's code ships in each folder (`modeling_zoo_superposition.py`, named by config.json's
`auto_map`); it imports only torch and transformers."""
    return f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{repo}", revision="step{example}"{trust})
tokenizer = AutoTokenizer.from_pretrained("{repo}", revision="step{example}")
```"""


def _demote_headings(markdown: str) -> str:
    """The family card's headings one level down, under the model card's own."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


def _check_replaceable(target: Path) -> None:
    """An earlier export is replaced whole; a folder holding anything else is refused, so that a
    re-export never deletes files a person put there (notes, a git checkout of the Hub repo)."""
    if not target.exists():
        return
    if not target.is_dir() or not (target / EXPORT_RECORD).is_file():
        raise ZooError(f"{target} exists and is not a Model Zoo export (no {EXPORT_RECORD}); "
                       f"move it away or export with another --to")
    ours = {"README.md", EXPORT_RECORD, "main"}
    foreign = sorted(p.name for p in target.iterdir()
                     if p.name not in ours and not re.fullmatch(r"step\d+", p.name))
    if foreign:
        raise ZooError(f"{target} holds files an export did not write ({', '.join(foreign[:5])}); "
                       f"a re-export replaces the folder whole: move them away first")


def _copy_snapshot(source: Path, destination: Path, card: str) -> None:
    """A step folder: the snapshot's HF files (copied, not hard-linked: an edit to the export must
    not reach the cache `zoo.load` reads) and the model card."""
    destination.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if file.name == "zoo_snapshot.json":  # names a local store path: not for publication
            continue
        shutil.copyfile(file, destination / file.name)
    (destination / "README.md").write_text(card)


