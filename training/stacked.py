"""Several runs of one shape trained together: one process, one stacked computation per step
(zoo.engine.stacked_step), each run stored exactly as if it had been trained alone.

Which runs stack (`stack_groups`): runs whose configs agree on everything but the seed and the
size's name (a family's seeds of one size, and sizes of the same shape), on one process, in fp32.
Each member keeps its own init and data order, optimizer, schedule and streams; its checkpoints,
keyframes, data index and metrics are written by the same code as a lone run's (RunSteps), and
its keyframes record that it was stacked and with whom.

Resume: each member reopens as a lone run would; members left at different keyframes (a kill
between two members' writes) all go back to the latest keyframe they share, which the stacked step
reproduces bit for bit.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import ExitStack

import torch

from training.background_writer import BackgroundWriter
from training.loop import (
    GracefulStop,
    InterruptAtStepBoundary,
    RunOutcome,
    keyframe_state,
    open_or_create,
    run_id_of,
    train_steps,
)
from training.run_steps import RunSteps, StepBatches, stop_step
from training.session import Controls, Plan, Session
from zoo import environment
from zoo.config.run_config import RunConfig
from zoo.engine import rng_state
from zoo.engine.stacked_step import StackedStep
from zoo.store.store import Store
from zoo_common.errors import ZooError
from zoo_common.progress import progress as progress_bar

# where stacking was measured faster than one run at a time on this project's CPUs (the
# superposition model: 0.61x for its 45-run family; transformers: 0.94-1.23x, RESULTS.md)
STACKED_BY_DEFAULT = frozenset({"superposition"})
STEP_FUNCTION = "zoo.engine.stacked_step (torch.func.vmap over the members; bit-identical to one run's step)"


def why_not_stacked(cfg: RunConfig, controls: Controls) -> str | None:
    """Why a run trains alone; None when it stacks. `controls.stack`: True (--stack), False
    (--no-stack) or None (the default: stack where it was measured to help)."""
    if controls.stack is False:
        return "--no-stack"
    if controls.world.distributed:
        return "several processes (--nproc): a stack runs in one process"
    if controls.device != "cpu":
        return f"device {controls.device}: stacked bits are checked on CPU only"
    if cfg.micro_batch_size:
        return "world-size-invariant numerics (micro_batch_size) take their own gradient path"
    if cfg.precision != "fp32":
        return f"precision {cfg.precision}: stacking is checked in fp32 only"
    if controls.stack is None and cfg.architecture not in STACKED_BY_DEFAULT:
        return ("on CPU a transformer trains as fast one run at a time, benchmarks/RESULTS.md; "
                "--stack stacks it, same bits")
    return None


def stack_groups(runs: list[RunConfig], controls: Controls) -> list[tuple[list[RunConfig], str | None]]:
    """The runs in stacks, in order of first appearance: (members, why not stacked or None). A
    lone run is a group of one; runs that may not stack are groups of one with the reason."""
    groups: dict[str, list[RunConfig]] = {}
    order: list[tuple[str, str | None]] = []
    for k, cfg in enumerate(runs):
        reason = why_not_stacked(cfg, controls)
        key = f"alone {k}" if reason else _shape_key(cfg)
        if key not in groups:
            groups[key] = []
            order.append((key, reason))
        groups[key].append(cfg)
    return [(groups[key], reason) for key, reason in order]


def _shape_key(cfg: RunConfig) -> str:
    """Everything of a run's config but its seed and its size's name: equal keys, one stack."""
    record = cfg.to_json()
    record.pop("seed", None)
    record["size"] = {k: v for k, v in record["size"].items() if k != "name"}
    return json.dumps(record, sort_keys=True)


def train_stack(cfgs: list[RunConfig], *, store: Store, corpus, controls: Controls,
                label: str) -> list[RunOutcome] | None:
    """Train `cfgs` (one stack) together; one RunOutcome per run, in order. None when the runs
    cannot be stacked as they stand (their recorded thread counts differ, or the first-step check
    finds a stacked step that would differ): the caller then trains them one by one."""
    started = time.perf_counter()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    outcomes: dict[int, RunOutcome] = {}
    with ExitStack() as held:
        sessions = []
        for cfg in cfgs:
            run = store.run(run_id_of(cfg))
            held.enter_context(run.lock(owner))
            writer = BackgroundWriter()
            held.callback(writer.close)  # closed (every write landed) before the lease goes
            sessions.append(Session(cfg, run, corpus, Plan.of_run(cfg), controls,
                                    f"{cfg.model_name} seed {cfg.seed.seed}", writer))
        states, streams = {}, {}
        for k, session in enumerate(sessions):
            state = open_or_create(session)
            if state is None:
                last = session.run.read_json("status.json")["last_step"]
                outcomes[k] = RunOutcome(session.run.run_id, "skipped", last, last, None, 0.0)
            else:
                states[k] = state
                streams[k] = rng_state.capture()  # as seeded or restored: what a lone run keyframes
        if len(states) == 1:
            (k, state), = states.items()
            first = state.step
            last, loss = train_steps(sessions[k], state, state.model)
            outcomes[k] = RunOutcome(sessions[k].run.run_id, "resumed" if first else "trained",
                                     first, last, loss, time.perf_counter() - started)
        elif states:
            threads = {sessions[k].run.read_json("environment.json")["threads"] for k in states}
            if len(threads) > 1:
                return None
            common = _align(sessions, states, streams)
            members = sorted(states)
            threads_used = threads.pop()
            environment.apply(controls.device, threads=threads_used)
            try:
                stats = _train_together([sessions[k] for k in members],
                                        [states[k] for k in members],
                                        [streams[k] for k in members], label=label)
            except NotExact as exc:
                print(f"not stacked: {label}: a stacked step's {exc} would differ from a run "
                      f"alone here (shapes x {threads_used} threads); training one at a time",
                      file=sys.stderr)
                return None
            for k, (last, loss) in zip(members, stats):
                outcomes[k] = RunOutcome(sessions[k].run.run_id, "resumed" if common else "trained",
                                         common, last, loss, time.perf_counter() - started)
    return [outcomes[k] for k in range(len(cfgs))]


class NotExact(Exception):
    """A stacked step would not give the bits of the runs alone (says which tensor differs)."""


def _align(sessions, states, streams) -> int:
    """Put every member at the latest keyframe they all have (a kill may have left one member a
    keyframe ahead of another), with its streams as that keyframe holds them; returns that step."""
    common = min(state.step for state in states.values())
    for k, state in states.items():
        if state.step == common:
            continue
        if common not in sessions[k].run.keyframe_steps():
            raise ZooError(f"{sessions[k].run.run_id.key} has no keyframe at step {common}, where "
                           f"the other runs of its stack stand; train it with --no-stack")
        states[k] = keyframe_state(sessions[k], common)
        streams[k] = rng_state.capture()
        sessions[k].run.delete_after(common)
    return common


def _train_together(sessions: list[Session], states, streams, *, label: str):
    """The stacked loop: every member's batch, one stacked update, every member's writes."""
    controls, plan = sessions[0].controls, sessions[0].plan
    first = states[0].step
    end = stop_step(sessions[0])
    if first < end:  # the kernels depend on shapes and threads, not values: one step tells
        drawn = [StepBatches(session)(first + 1) for session in sessions]
        differs = StackedStep.differs_from_alone(states, [batch for _, batch, _ in drawn],
                                                 [mask for _, _, mask in drawn])
        if differs:
            raise NotExact(differs)
    stacked = StackedStep(states)
    note = {"step_function": STEP_FUNCTION,
            "members": [session.run.run_id.key for session in sessions]}
    recorders = []
    for session, stream in zip(sessions, streams):
        recorder = RunSteps(session, first)
        recorder.rng = stream  # no stacked step draws from them (checked at each keyframe)
        recorder.fingerprint = {**recorder.fingerprint, "stacked": note}
        recorders.append(recorder)
    unused = torch.get_rng_state()
    bar = progress_bar(total=plan.end_step, initial=first, desc=label, unit="step",
                       enabled=controls.shows_progress)
    losses = [None] * len(states)
    step, recent = first, None
    interrupt = InterruptAtStepBoundary()
    try:
        for step in range(first + 1, end + 1):
            tic = time.perf_counter()
            drawn = [recorder.batch(step) for recorder in recorders]
            stats = stacked.update([batch for _, batch, _ in drawn], [mask for _, _, mask in drawn])
            wall = time.perf_counter() - tic
            for recorder, (ids, _, _), member in zip(recorders, drawn, stats):
                recorder.record(step, ids, member, wall)
            losses = [member.loss for member in stats]
            if step == controls.hold_after_step:
                interrupt.wait(f"holding after step {step} (--hold-after-step): waiting for a signal")
            interrupted = interrupt.requested
            stopping = interrupted or step == end < plan.end_step
            if (step in plan.keyframe_steps or stopping) and not torch.equal(torch.get_rng_state(), unused):
                raise ZooError("a stacked step drew random numbers (dropout?): its members' "
                               "streams would not be a lone run's; train with --no-stack")
            for recorder, state in zip(recorders, states):
                recorder.store(step, stopping=stopping, state=state)
            recent = wall if recent is None else 0.95 * recent + 0.05 * wall
            if controls.shows_progress:
                bar.update(1)
                rate = sum(r.per_step for r in recorders) / max(recent, 1e-9)
                bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}",
                                **{recorders[0].rate: f"{rate:,.0f}"})
            if interrupted:
                raise GracefulStop(step)
    finally:
        interrupt.restore()
        try:
            for recorder in recorders:
                recorder.close()
        finally:
            bar.close()
    return [(step, loss) for loss in losses]


def describe(groups) -> str:
    """What trains together and what alone (with why), for the plan and the progress output."""
    lines, alone = [], {}
    for members, reason in groups:
        if len(members) > 1:
            runs = " + ".join(sorted({cfg.model_name for cfg in members})) + " seed " + ",".join(
                str(cfg.seed.seed) for cfg in members)
            lines.append(f"stacked: {runs} ({len(members)} runs as one computation)")
        elif reason and reason != "--no-stack":
            alone.setdefault(reason, []).append(members[0].model_name)
    for reason, names in alone.items():  # one line per reason: "tiny-1l64 (3 runs), ..."
        counted = ", ".join(f"{name} ({names.count(name)} runs)" for name in dict.fromkeys(names))
        lines.append(f"not stacked ({reason}): {counted}")
    return "\n".join(lines)


def print_description(groups) -> None:
    text = describe(groups)
    if text:
        print(text, file=sys.stderr)
