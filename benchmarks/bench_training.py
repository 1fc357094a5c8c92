"""Training benchmark (issue 4): what the harness's bookkeeping costs, and how fast it trains.

Three measurements, side by side in one process, 2 threads for everything:

1. harness vs bare loop, interleaved step by step (the headline) — one `train_run` into a fresh
   temporary store, whose every update is followed (odd steps: preceded) by one step of a bare
   loop on its own copy of the model, so both loops see the same machine at the same moments:
   on this project's VMs the speed of the cores drifts by 5-10 % between runs of 20 s, which
   separate runs cannot tell from a 3 % cost. Harness time = the run's wall time minus the bare
   steps inside it; bare time = its setup (model, optimizer) + its steps. A bare step waits while
   the harness's writer thread is committing (it is owed, and runs at the next idle moment; those
   still owed when the run ends run after it): the commits overlap only the harness's own
   updates, as in a real run, and charge the bare loop nothing. The writer's CPU time during
   bare steps is reported as the check of that (~0). Then, as a cross-check, separate runs:
   `train_run` into a fresh temporary store (checkpoints, keyframes, data
   index, metrics, on the tiny family's schedule) against a bare PyTorch loop on the same model
   (zoo.models.build_model from the same RunConfig), the same batches (global_batch +
   corpus.samples) and the same optimizer (make_optimizer / make_scheduler), writing nothing. Both are timed
   end to end (model build included) over the first STEPS steps; repetitions alternate
   A B B A ... because the machine is noisy, and the table reports medians. Process CPU time
   (all threads) is reported beside: time the VM's host takes the cores away does not count in
   it. The model is nanoGPT's published CPU shape (shakespeare-char on CPU: n_layer=4, n_head=4, n_embd=128,
   block_size=64, batch_size=12) as a GPT-NeoX, through a manifest written here.
2. tokens/s and model-FLOP utilization: 6 x matmul params x tokens/s over this machine's fp32
   matmul rate, measured here with torch.mm 1024x1024 (2 threads, median of several).
3. checkpoint + keyframe write time as a share of training time over full runs of the `tiny`
   schedule (manifests/tiny.yaml: 300 steps, checkpoints 0,1,2,4,..,256 + every 50, keyframes
   every 50), measured two ways: the time training waits for them, by wrapping
   RunStore.write_checkpoint / write_keyframe and the loop's _write_step (which also gathers
   state_dicts and RNG states) with timers; and their whole cost, commits on the writer thread
   included, as 1 - (interleaved ratio with the schedule) / (interleaved ratio with only step 0's
   and the last step's writes). Measurement 1 reports the same pair for the nanoGPT shape: the
   second variant is the harness's bookkeeping alone (data index, metrics, run records).

    python benchmarks/bench_training.py --steps 300 --reps 3   # ~6-7 min on the 2-core machine
    python benchmarks/bench_training.py --steps 20 --reps 2 --sizes 1l64   # quicker
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from markdown_table import table  # (benchmarks/, beside this file)

import training.loop as loop_module
from data_index import global_batch
from training.background_writer import WRITER_THREAD
from training.loop import train_run
from zoo.config.checkpoint_policy import checkpoint_steps
from zoo.config.run_config import CheckpointConfig
from zoo.store.corpora import ensure_corpus, publish_corpus
from zoo.config.manifest import load_manifest
from zoo.models.build import build_model
from zoo.store.run_store import RunStore
from zoo.store.store import Store
import zoo.engine.training_state as state_module
from zoo.engine.train_step import make_optimizer, make_scheduler

THREADS = 2
TINY = ROOT / "manifests" / "tiny.yaml"
# nanoGPT README, "I only have a MacBook" CPU recipe for shakespeare-char:
#   python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
#     --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
#     --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
NANOGPT_SIZE = {"name": "4l128", "layers": 4, "width": 128, "heads": 4}
NANOGPT_BATCH = 12  # block_size 64 = tiny's seq_len, so the tiny corpus serves as is


# --- timers around the store writes ----------------------------------------------------------
class WriteTimers:
    """Wall time spent in the store's write calls, installed by wrapping methods in this process."""

    def __init__(self) -> None:
        self.seconds = {"write_checkpoint": 0.0, "write_keyframe": 0.0, "_write_step": 0.0,
                        "training_step": 0.0}
        self.calls = dict.fromkeys(self.seconds, 0)

    def install(self) -> None:
        for owner, name in ((RunStore, "write_checkpoint"), (RunStore, "write_keyframe"),
                            (loop_module, "_write_step"), (state_module, "training_step")):
            setattr(owner, name, self._timed(name, getattr(owner, name)))

    def reset(self) -> None:
        for name in self.seconds:
            self.seconds[name], self.calls[name] = 0.0, 0

    def _timed(self, name, fn):
        def wrapper(*args, **kwargs):
            tic = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - tic
                self.calls[name] += 1
        return wrapper


class Interleaved:
    """Runs the bare loop's steps between the updates of a harness run (see the module docstring).

    Installed around the training state's `training_step`, outside the timers, which then time the
    harness's updates alone. One bare step is owed per harness update; owed steps run beside it
    (odd updates: before, even: after) only while the harness's writer thread is idle, so no
    commit runs during a bare step: the writer overlaps the harness's own updates, as in a real
    run, and the bare loop's time is its own. Steps still owed when the run ends (its last
    commit) run after it. `writer_cpu`, the writer's CPU time during bare steps, checks that (~0: only
    the training thread submits writes, and it is busy with the bare step). `deferred`: how many
    times owed bare steps had to wait for a commit."""

    def __init__(self) -> None:
        self.state = None  # (cfg, corpus, model, optimizer, scheduler) of the bare loop, when active
        self.writers: list = []  # the harness's BackgroundWriter(s), newest last
        self.steps_seconds = self.update_seconds = self.writer_cpu = 0.0
        self.count = self.owed = self.bare_done = self.deferred = 0
        self.last_loss = None

    def install(self) -> None:
        harness_step = state_module.training_step
        writers = self.writers

        class RecordedWriter(loop_module.BackgroundWriter):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                writers.append(self)

        def training_step(*args, **kwargs):
            if self.state is None:
                return harness_step(*args, **kwargs)
            self.count += 1
            self.owed += 1
            if self.count % 2:  # alternate which of the two runs first
                self._bare_steps()
            stats = harness_step(*args, **kwargs)
            if not self.count % 2:
                self._bare_steps()
            return stats

        loop_module.BackgroundWriter = RecordedWriter
        state_module.training_step = training_step

    def start(self, cfg, corpus) -> float:
        """Build the bare loop's state; returns the seconds that took (its share of the setup)."""
        self.steps_seconds = self.update_seconds = self.writer_cpu = 0.0
        self.count = self.owed = self.bare_done = self.deferred = 0
        self.last_loss = None
        tic = time.perf_counter()
        model = build_model(cfg, vocab_size=corpus.vocab_size, eos_token_id=corpus.eos_id)
        optimizer = make_optimizer(model, cfg.optimizer)
        scheduler = make_scheduler(optimizer, cfg.schedule, total_steps=cfg.steps)
        model.train()
        self.state = (cfg, corpus, model, optimizer, scheduler)
        return time.perf_counter() - tic

    def finish(self) -> None:
        """After the harness run: the bare steps still owed (its writer has closed)."""
        self._bare_steps(final=True)
        self.state = None

    def _bare_steps(self, final: bool = False) -> None:
        """The owed steps of the bare loop (run_bare's loop body, bare_step), if the writer is idle."""
        if not self.owed:
            return
        if not final and self.writers and not self.writers[-1].idle:
            self.deferred += 1
            return
        cfg, corpus, model, optimizer, scheduler = self.state
        while self.owed:
            self.owed -= 1
            self.bare_done += 1
            writer_cpu = _writer_cpu()
            tic = time.perf_counter()
            loss, in_update = bare_step(cfg, corpus, model, optimizer, scheduler, self.bare_done)
            self.update_seconds += in_update
            self.steps_seconds += time.perf_counter() - tic
            self.writer_cpu += _writer_cpu() - writer_cpu
            self.last_loss = loss


def _writer_cpu() -> float:
    """CPU seconds used so far by the background writer's thread(s) of this process."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith(WRITER_THREAD) and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, ProcessLookupError):  # the thread ended in between
                pass
    return total


# --- helpers ---------------------------------------------------------------------------------
def matmul_gflops(n: int = 1024, repeat: int = 7) -> float:
    """Median fp32 GFLOP/s of torch.mm n x n x n with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    rates = []
    for _ in range(repeat):
        tic = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        rates.append(4 * 2 * n**3 / (time.perf_counter() - tic) / 1e9)
    return statistics.median(rates)


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: all but the input embedding (a lookup, no FLOPs)."""
    embed = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embed)


def write_nanogpt_manifest(folder: Path) -> str:
    doc = yaml.safe_load(TINY.read_text())
    doc.update(family="nanogpt-cpu", sizes=[NANOGPT_SIZE], seeds=[1], batch_size=NANOGPT_BATCH)
    path = folder / "nanogpt-cpu.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def fresh_store(root: Path, corpus) -> Store:
    store = Store.open(tempfile.mkdtemp(dir=root))
    publish_corpus(store, corpus)  # one-time per store, outside the timed region
    return store


def run_harness(cfg, corpus, root: Path, steps: int,
                cpu_seconds: list | None = None) -> tuple[float, float]:
    """Appends the process CPU time of the run (all threads) to cpu_seconds."""
    store = fresh_store(root, corpus)
    tic, cpu = time.perf_counter(), time.process_time()
    outcome = train_run(cfg, store=store, corpus=corpus, threads=THREADS, progress=False,
                        stop_after_step=steps)
    if cpu_seconds is not None:
        cpu_seconds.append(time.process_time() - cpu)
    return time.perf_counter() - tic, outcome.final_loss


def bare_step(cfg, corpus, model, optimizer, scheduler, step: int):
    """One step of the bare loop: its batch, then the update; returns (loss, seconds in the
    update itself, zero_grad .. scheduler.step)."""
    ids = global_batch(step, data_seed=cfg.seed.data_seed, batch_size=cfg.batch_size,
                       n_samples=corpus.n_samples)
    batch = torch.from_numpy(corpus.samples(ids))
    tic = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.clip)
    optimizer.step()
    scheduler.step()
    return loss, time.perf_counter() - tic


def run_bare(cfg, corpus, steps: int, step_seconds: list | None = None,
             cpu_seconds: list | None = None) -> tuple[float, float]:
    """The same model, batches and optimizer in a plain PyTorch loop that writes nothing.
    Appends the time spent in the update itself (zero_grad .. scheduler.step) to step_seconds
    and the process CPU time to cpu_seconds."""
    tic, cpu = time.perf_counter(), time.process_time()
    in_step = 0.0
    model = build_model(cfg, vocab_size=corpus.vocab_size, eos_token_id=corpus.eos_id)
    optimizer = make_optimizer(model, cfg.optimizer)
    scheduler = make_scheduler(optimizer, cfg.schedule, total_steps=cfg.steps)
    model.train()
    loss = None
    for step in range(1, steps + 1):
        loss, in_update = bare_step(cfg, corpus, model, optimizer, scheduler, step)
        in_step += in_update
    if step_seconds is not None:
        step_seconds.append(in_step)
    if cpu_seconds is not None:
        cpu_seconds.append(time.process_time() - cpu)
    return time.perf_counter() - tic, float(loss.detach())


def run_interleaved(cfg, corpus, root: Path, steps: int, interleaved: Interleaved,
                    timers: WriteTimers) -> dict:
    """One harness run with the bare loop interleaved (see the module docstring)."""
    store = fresh_store(root, corpus)
    timers.reset()
    bare_setup = interleaved.start(cfg, corpus)
    tic = time.perf_counter()
    try:
        outcome = train_run(cfg, store=store, corpus=corpus, threads=THREADS, progress=False,
                            stop_after_step=steps)
        total = time.perf_counter() - tic
        inside = interleaved.steps_seconds  # bare steps inside the run's wall time
    finally:
        interleaved.finish()
    harness = total - inside
    bare = bare_setup + interleaved.steps_seconds
    writer = interleaved.writer_cpu
    return {
        "harness": harness, "bare": bare, "ratio": bare / harness,
        "writer_cpu": writer,
        "harness_update": timers.seconds["training_step"], "bare_update": interleaved.update_seconds,
        "same_loss": outcome.final_loss == float(interleaved.last_loss.detach()),
        "deferred": interleaved.deferred, "bare_steps": interleaved.bare_done,
        "writes": len(set(checkpoint_steps(cfg.checkpoints, cfg.steps)) & set(range(steps + 1))),
    }


def interleaved_variants(cfg, corpus, root: Path, steps: int, reps: int,
                         interleaved: Interleaved, timers: WriteTimers) -> dict[str, list[dict]]:
    """run_interleaved with cfg's checkpoint schedule and with only the writes every run makes
    (step 0's keyframe, the last step's), which leaves the bookkeeping: data index, metrics, run
    records. Repetitions alternate the order of the two."""
    sparse = dataclasses.replace(cfg, checkpoints=CheckpointConfig(  # the last step measured
        log_spaced_until=0, every=steps, keyframe_every=steps))
    variants = {"tiny schedule": cfg, "step 0 and last only": sparse}
    mixed = {name: [] for name in variants}
    for rep in range(reps):
        for name in (list(variants) if rep % 2 == 0 else list(variants)[::-1]):
            mixed[name].append(run_interleaved(variants[name], corpus, root, steps, interleaved,
                                               timers))
            m = mixed[name][-1]
            print(f"  {cfg.model_name} rep {rep + 1} interleaved, {name}: harness "
                  f"{m['harness']:.2f} s, bare {m['bare']:.2f} s, ratio {m['ratio']:.3f} (writer CPU in bare "
                  f"steps {m['writer_cpu']:.3f} s), same loss: {m['same_loss']}, bare steps {m['bare_steps']} "
                  f"(waited for a commit {m['deferred']} times), stored steps {m['writes']}",
                  file=sys.stderr)
    return mixed


# --- the benchmark ---------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300,
                        help="steps per harness/bare repetition (300: the tiny schedule's whole run)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each (alternating)")
    parser.add_argument("--sizes", default="1l64", help="tiny sizes for the write share, comma-separated")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads for both loops (2 = the machine's cores)")
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(THREADS)
    timers = WriteTimers()
    timers.install()
    interleaved = Interleaved()
    interleaved.install()  # after the timers: they time the harness's updates alone

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        root = Path(tmp)
        family = load_manifest(write_nanogpt_manifest(root))
        cfg = family.runs()[0]
        corpus = ensure_corpus(Store.open(root / "prep"), family.data, progress=False)
        model = build_model(cfg, vocab_size=corpus.vocab_size, eos_token_id=corpus.eos_id)
        n_total = sum(p.numel() for p in model.parameters())
        n_matmul = matmul_params(model)
        tokens = args.steps * cfg.batch_size * cfg.data.seq_len
        gflops = [matmul_gflops()]

        # 1. harness vs bare, interleaved step by step
        run_bare(cfg, corpus, 2)  # warm-up: first-call costs of torch/transformers
        mixed = interleaved_variants(cfg, corpus, root, args.steps, args.reps, interleaved, timers)

        # then separate runs, alternating A B B A A B ...
        harness, bare, losses, write_share = [], [], set(), []
        harness_step, bare_step = [], []  # seconds inside the update itself, per repetition
        harness_cpu, bare_cpu = [], []  # process CPU seconds (all threads), per repetition
        for rep in range(args.reps):
            order = ("harness", "bare") if rep % 2 == 0 else ("bare", "harness")
            for which in order:
                if which == "harness":
                    timers.reset()
                    seconds, loss = run_harness(cfg, corpus, root, args.steps, harness_cpu)
                    harness.append(seconds)
                    harness_step.append(timers.seconds["training_step"])
                    write_share.append(timers.seconds["_write_step"] / seconds)
                else:
                    seconds, loss = run_bare(cfg, corpus, args.steps, bare_step, bare_cpu)
                    bare.append(seconds)
                losses.add(loss)
                print(f"  rep {rep + 1} {which:7s} {tokens / seconds:8.0f} tok/s  loss {loss:.6f}",
                      file=sys.stderr)
        gflops.append(matmul_gflops())
        h_tps, b_tps = tokens / statistics.median(harness), tokens / statistics.median(bare)
        rate = statistics.median(gflops)
        mfu = lambda tps: 6 * n_matmul * tps / (rate * 1e9)

        # 3. write share over full runs of the tiny schedule: the time training waits in
        # _write_step (timers), and the whole cost with the writer's commits (interleaved pair)
        tiny = load_manifest(str(TINY))
        tiny_corpus = ensure_corpus(Store.open(root / "prep"), tiny.data, progress=False)
        share_rows = []
        for size in args.sizes.split(","):
            run_cfg = tiny.run(size, tiny.seeds[0].seed)
            store = fresh_store(root, tiny_corpus)
            timers.reset()
            tic = time.perf_counter()
            train_run(run_cfg, store=store, corpus=tiny_corpus, threads=THREADS, progress=False)
            total = time.perf_counter() - tic
            store_s = timers.seconds["write_checkpoint"] + timers.seconds["write_keyframe"]
            write_s, waited = timers.seconds["_write_step"], timers.seconds["_write_step"] / total
            calls = f"{timers.calls['write_checkpoint']} / {timers.calls['write_keyframe']}"
            pair = interleaved_variants(run_cfg, tiny_corpus, root, run_cfg.steps, args.reps,
                                        interleaved, timers)
            whole = 1 - (statistics.median(m["ratio"] for m in pair["tiny schedule"])
                         / statistics.median(m["ratio"] for m in pair["step 0 and last only"]))
            share_rows.append((
                run_cfg.model_name, run_cfg.steps, f"{total:.1f}", calls, f"{store_s:.2f}",
                f"{write_s:.2f}", f"{waited:.1%}",
                f"{whole:.1%}", "met" if max(waited, whole) <= 0.05 else "MISSED",
            ))
            print(f"  {run_cfg.model_name}: {total:.1f}s, writes {write_s:.2f}s", file=sys.stderr)
        gflops.append(matmul_gflops())

    # headline: the interleaved runs
    print(f"\nModel: GPT-NeoX {NANOGPT_SIZE['layers']}x{NANOGPT_SIZE['width']}, "
          f"{NANOGPT_SIZE['heads']} heads, batch {cfg.batch_size} x {cfg.data.seq_len} tokens, "
          f"vocab {corpus.vocab_size}; params {n_total:,} (matmul params {n_matmul:,}); "
          f"{args.steps} steps x {args.reps} reps, {THREADS} threads; final losses identical: "
          f"{len(losses) == 1 and all(m['same_loss'] for ms in mixed.values() for m in ms)}")
    print(f"Matmul fp32 1024^3, {THREADS} threads: {rate:.1f} GFLOP/s "
          f"(start/middle/end: {', '.join(f'{g:.1f}' for g in gflops)})\n")
    print("Harness vs bare loop, interleaved step by step in one process (medians):\n")
    rows, ratios = [], {}
    for name, runs in mixed.items():
        med = lambda key: statistics.median(m[key] for m in runs)
        ratios[name] = med("ratio")
        ih_tps, ib_tps = tokens / med("harness"), tokens / med("bare")
        rows.append((f"harness, {name} ({runs[0]['writes']} stored steps)", f"{ih_tps:,.0f}",
                     f"{mfu(ih_tps):.1%}", f"{med('harness'):.2f}", f"{med('harness_update'):.2f}",
                     f"{med('harness') - med('harness_update'):.2f}", f"{med('ratio'):.3f}",
                     ", ".join(format(m["ratio"], ".3f") for m in runs), f"{med('writer_cpu'):.3f}"))
        rows.append(("  bare PyTorch loop beside it", f"{ib_tps:,.0f}", f"{mfu(ib_tps):.1%}",
                     f"{med('bare'):.2f}", f"{med('bare_update'):.2f}",
                     f"{med('bare') - med('bare_update'):.2f}", "1.000", "", ""))
    print(table(rows, ("loop", "tokens/s", "MFU", "median s", "in the update s", "outside s",
                       "ratio vs bare", "per repetition", "writer CPU in bare steps s")))
    book, full = ratios["step 0 and last only"], ratios["tiny schedule"]
    print(f"\nbookkeeping (data index, metrics, run records, step 0's and the last step's "
          f"keyframes): harness/bare {book:.3f} (target >= 0.97: {'met' if book >= 0.97 else 'MISSED'}); "
          f"with the tiny schedule's checkpoints and keyframes: {full:.3f}, so those writes cost "
          f"{1 - full / book:.1%} of the training time (commits included: they run on the writer "
          f"thread, beside the harness's updates)")

    # cross-check: separate runs
    ratio = h_tps / b_tps
    # time outside the update is what bookkeeping adds; the update itself is the same computation
    # in both loops, so estimate the ratio with the harness's own step time
    h_other = statistics.median(h - s for h, s in zip(harness, harness_step))
    b_other = statistics.median(b - s for b, s in zip(bare, bare_step))
    h_in = statistics.median(harness_step)
    ratio_decomposed = (h_in + b_other) / (h_in + h_other)
    print("\nCross-check, separate runs alternating A B B A ... (medians):\n")
    print(table([
        ("harness (ckpt+keyframes+index+metrics)", f"{h_tps:,.0f}", f"{mfu(h_tps):.1%}",
         f"{statistics.median(harness):.2f}", f"{ratio:.3f}"),
        ("bare PyTorch loop (writes nothing)", f"{b_tps:,.0f}", f"{mfu(b_tps):.1%}",
         f"{statistics.median(bare):.2f}", "1.000"),
    ], ("loop", "tokens/s", "MFU", "median s", "ratio vs bare")))
    print(f"\nharness/bare tokens/s, separate runs: {ratio:.3f}; "
          f"harness runs: {', '.join(f'{s:.2f}' for s in harness)} s; bare: "
          f"{', '.join(f'{s:.2f}' for s in bare)} s; write share inside these harness runs "
          f"(first {args.steps} steps: dense log-spaced checkpoints): "
          f"{statistics.median(write_share):.1%}")
    cpu_ratio = statistics.median(bare_cpu) / statistics.median(harness_cpu)
    print(f"process CPU seconds per run (median, all threads): harness "
          f"{statistics.median(harness_cpu):.2f}, bare {statistics.median(bare_cpu):.2f}; ratio "
          f"bare/harness {cpu_ratio:.3f}")
    print(f"time outside the update per run (median): harness {h_other:.2f} s, bare {b_other:.2f} s; "
          f"inside the update: harness {h_in:.2f} s, bare {statistics.median(bare_step):.2f} s; "
          f"ratio from this decomposition {ratio_decomposed:.3f}\n")
    print(table(share_rows, ("run (full tiny schedule)", "steps", "train_run s",
                             "ckpt / keyframe writes", "store write s", "write s (incl. state_dict)",
                             "share waited", "share with commits (interleaved)", "target <= 5%")))


if __name__ == "__main__":
    main()
