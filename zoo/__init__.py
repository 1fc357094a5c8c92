"""Model Zoo: reproducible families of small transformers, served as stock `transformers` models.

    import zoo
    zoo.list_models()                                   # families, sizes, seeds, steps available
    zoo.steps("tiny-2l128", seed=1)                     # stored steps, ascending integers
    model, tokenizer = zoo.load("tiny-2l128", seed=1, step=256)
    path = zoo.snapshot("tiny-2l128", seed=1, step=256) # local Hugging Face folder
    report = zoo.replay("tiny-2l128", seed=1, step=257) # report.exact, report.max_abs_diff, ...
    batch = zoo.batch("tiny-2l128", seed=1, step=257)   # LongTensor [batch, seq]
    zoo.steps_of("tiny-2l128", seed=1, sample=1234)     # steps whose batch held that sample
    zoo.tensor_history("tiny-2l128", seed=1, tensor="gpt_neox.layers.0.attention.dense.weight")
    zoo.metrics("tiny")                                 # training + eval metrics, (size, seed, step)
    zoo.stats.seed_interval(values)                     # statistics across seeds (zoo.stats)

Every function takes `store=` (a folder or fsspec URL); the default is $ZOO_STORE, else ./zoo-store.
Importing zoo registers the interpretability architecture ("zoo-toy": SoLU / attention-only) with
transformers' Auto classes, so its checkpoints load with AutoModelForCausalLM like any other.
"""
from data_index.errors import IntegrityError, ZooError
from zoo import stats
from zoo.batches import batch, steps_of
from zoo.history import tensor_history
from zoo.registry import list_models, load, snapshot, steps
from zoo.step_replay import replay
from zoo.tables import metrics_table as metrics
from zoo.toy_model import register_toy_model

register_toy_model()

__all__ = [
    "IntegrityError", "ZooError", "batch", "list_models", "load", "metrics", "replay", "snapshot",
    "stats", "steps", "steps_of", "tensor_history",
]
