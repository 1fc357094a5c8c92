"""Model Zoo: reproducible families of small transformers, served as stock `transformers` models.

    import zoo
    zoo.list_models()                                   # families, sizes, seeds, steps available
    zoo.steps("tiny-2l128", seed=1)                     # stored steps, ascending integers
    model, tokenizer = zoo.load("tiny-2l128", seed=1, step=256)
    path = zoo.snapshot("tiny-2l128", seed=1, step=256) # local Hugging Face folder
    report = zoo.replay("tiny-2l128", seed=1, step=250) # report.exact, report.max_abs_diff, ...
    batch = zoo.batch("tiny-2l128", seed=1, step=257)   # LongTensor [batch, seq]
    zoo.steps_of("tiny-2l128", seed=1, sample=1234)     # steps whose batch held that sample
    zoo.train("tiny")                                   # every size x seed of a family
    zoo.branch("tiny-2l128", seed=1, from_step=200, label="nodup", drop_samples=ids)
    zoo.load("tiny-2l128", seed=1, step=256, branch="nodup")   # every read takes branch=
    loader = zoo.training_data("tiny-2l128", seed=1, step=200, n_steps=8)  # the exact batches
    zoo.tensor_history("tiny-2l128", seed=1, tensor="gpt_neox.layers.0.attention.dense.weight")
    zoo.metrics("tiny")                                 # training + eval metrics, (size, seed, step)
    zoo.per_example("tiny-2l128", step=300)             # [seeds, examples] held-out loss matrix
    zoo.stats.seed_interval(values)                     # statistics across seeds (zoo.stats)

Every function takes `store=` (a folder or fsspec URL); the default is $ZOO_STORE, else ./zoo-store.
The interpretability architecture ("zoo-toy": SoLU / attention-only) is registered with
transformers' Auto classes by the calls that need it (zoo.snapshot, zoo.load, evaluation). Its
snapshots also carry their modeling code (config.json's auto_map), so a process without zoo
opens one with `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`.
"""
from importlib import import_module

from zoo_common.openmp import prefer_short_spinning

prefer_short_spinning()  # before torch loads: two trainings on one machine share its cores

from zoo_common.errors import (  # noqa: E402
    ArgumentError,
    BranchNotFoundError,
    IntegrityError,
    InvalidInputError,
    ManifestError,
    ModelNotFoundError,
    NotFoundError,
    SeedNotFoundError,
    StepNotFoundError,
    StoreNotFoundError,
    ZooError,
)

# Public name -> (module, attribute), imported on first use: `import zoo` stays cheap (no torch)
# until a function is called, so `zoo --help` and the lightweight commands start at once.
_PUBLIC = {
    "batch": ("zoo.registry.batches", "batch"),
    "batch_ids": ("zoo.registry.batches", "batch_ids"),
    "steps_of": ("zoo.registry.batches", "steps_of"),
    "tensor_history": ("zoo.registry.history", "tensor_history"),
    "train_dict": ("zoo.dictionaries.dictionary_runs", "train_dict"),
    "load_dict": ("zoo.dictionaries.dictionary_runs", "load_dict"),
    "training_data": ("zoo.registry.trained_batches", "training_data"),
    "list_models": ("zoo.store.catalog", "list_models"),
    "load": ("zoo.registry.loading", "load"),
    "load_transformer_lens": ("zoo.interp.transformer_lens_loading", "load_transformer_lens"),
    "transformer_lens_sweep": ("zoo.interp.transformer_lens_loading", "transformer_lens_sweep"),
    "snapshot": ("zoo.registry.snapshots", "snapshot"),
    "steps": ("zoo.store.catalog", "steps"),
    "open_run": ("zoo.store.catalog", "open_run"),
    "replay": ("zoo.registry.reachable", "replay"),
    "attribute": ("zoo.attribution.attribution", "attribute"),
    "metrics": ("zoo.eval.tables", "metrics_table"),
    "per_example": ("zoo.eval.example_scores", "per_example"),
    "stats": ("zoo.stats", None),
}

# The write side (training/, the layer above zoo), reached lazily through zoo/write_side.py's
# table of routes up: a read never imports training.
_WRITE_SIDE = ("train", "branch")

__all__ = [
    "ArgumentError", "BranchNotFoundError", "IntegrityError", "InvalidInputError", "ManifestError",
    "ModelNotFoundError", "NotFoundError", "SeedNotFoundError", "StepNotFoundError",
    "StoreNotFoundError", "ZooError", "attribute", "batch", "batch_ids", "branch", "list_models", "load", "load_transformer_lens", "metrics",
    "open_run", "per_example", "replay", "snapshot",
    "stats", "steps", "steps_of", "tensor_history", "train", "train_dict", "load_dict",
    "training_data",
    "transformer_lens_sweep",
]


def __getattr__(name: str):
    if name in _WRITE_SIDE:
        from zoo.write_side import reach

        globals()[name] = value = reach(name)
        return value
    if name not in _PUBLIC:  # a submodule, as `zoo.batches` is once imported (eagerly or not)
        try:
            return import_module(f"zoo.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"zoo.{name}":
                raise
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    module_name, attribute = _PUBLIC[name]
    module = import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | set(_WRITE_SIDE))
