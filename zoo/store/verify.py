"""`zoo verify`: re-hash every blob and check every manifest of a store (or some runs).

Suites have shipped wrong checkpoints that nobody noticed for months: Pythia served final weights on
86 step branches, OLMo has byte-identical steps, Stanford's `main` pointed at the wrong step because
branches sorted as strings. So besides hashes we flag, per run: two different steps with
byte-identical weights, steps whose tokens_seen does not increase with the step, a keyframe whose
weights differ from the checkpoint of the same step, manifests that name another run or step, and
missing blobs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


from zoo_common.progress import progress as progress_bar
from zoo_common.errors import IntegrityError, ZooError
from zoo.store import state_tree
from zoo.store.blobs import inline_raw, is_inline
from zoo.config.names import RunId
from zoo.store.run_store import CHECKPOINTS, KEYFRAMES
from zoo.store.store import Store
from zoo_common.location import reaching


@dataclass(frozen=True)
class Problem:
    run: str
    step: int | None
    message: str

    def __str__(self) -> str:
        where = self.run + (f" step {self.step}" if self.step is not None else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    runs: int
    manifests: int
    blobs: int
    raw_bytes: int
    problems: list[Problem] = field(default_factory=list)
    inline_tensors: int = 0  # tensors stored in their manifests, checked there

    @property
    def ok(self) -> bool:
        return not self.problems


def _status_beyond_manifests(run, label: str, by_kind: dict) -> list[Problem]:
    """A writer lands status.json after the keyframe it describes, so a status that claims a step
    beyond every stored manifest means an interrupted copy (records go first) or lost files."""
    try:
        last = int(run.status().get("last_step", -1))
    except (ZooError, TypeError, ValueError) as exc:
        return [Problem(label, None, f"status.json is damaged ({exc})")]
    stored = [*by_kind[CHECKPOINTS], *by_kind[KEYFRAMES]]
    if last > max(stored, default=-1):
        latest = f"the latest stored is step {max(stored)}" if stored else "no manifest is stored"
        return [Problem(label, None, f"status.json says training reached step {last} but {latest} "
                                     f"(an interrupted push/pull? run it again)")]
    return []


def manifest_refs(manifest: dict) -> dict[str, dict]:
    """Every tensor reference of a checkpoint or keyframe manifest, by a readable name; ZooError
    naming the first malformed one (a damaged or hand-edited manifest), so that verify reports it
    and gc and push stop before they act on it."""
    key = "tensors" if manifest.get("kind") in ("checkpoint", "dictionary") else "model"
    tensors = manifest.get(key, {})
    if not isinstance(tensors, dict):
        raise IntegrityError(f"the manifest's {key!r} is a {type(tensors).__name__}, not a mapping of "
                       f"tensor names to references (the manifest is damaged)")
    refs = {f"tensor {k!r}": v for k, v in tensors.items()}
    if key == "model":
        for part in ("optimizer", "scheduler", "rng"):
            for i, ref in enumerate(state_tree.tensor_refs(manifest.get(part))):
                refs[f"{part} tensor #{i}"] = ref
    for what, ref in refs.items():
        if not (isinstance(ref, dict) and isinstance(ref.get("blob"), str)
                and isinstance(ref.get("nbytes"), int) and not isinstance(ref.get("nbytes"), bool)):
            raise IntegrityError(f"{what} has a malformed reference {str(ref)[:80]!r} (it needs 'blob' "
                           f"and 'nbytes'; the manifest is damaged)")
    return refs


def verify_store(
    store: Store, run_ids: list[RunId] | None = None, *, progress: bool = False
) -> VerifyReport:
    """Check the given runs (default: all). Never raises for damaged data: it reports it."""
    run_ids = store.runs() if run_ids is None else run_ids
    problems: list[Problem] = []
    referrers: dict[str, tuple[str, int, str, int]] = {}  # sha -> (run, step, what, nbytes)
    manifests = inline = 0
    for run_id in run_ids:
        run = store.run(run_id)
        label = str(run_id)
        by_kind: dict[str, dict[int, dict]] = {CHECKPOINTS: {}, KEYFRAMES: {}}
        for folder in (CHECKPOINTS, KEYFRAMES):
            for step in run._steps(folder):
                try:
                    manifest = run._manifest(folder, step)
                except ZooError as exc:
                    problems.append(Problem(label, step, str(exc)))
                    continue
                manifests += 1
                try:
                    refs = manifest_refs(manifest)
                except ZooError as exc:
                    problems.append(Problem(label, step, f"{folder[:-1]} manifest: {exc}"))
                    continue
                by_kind[folder][step] = manifest
                if manifest.get("run") != run_id.key:
                    problems.append(
                        Problem(
                            label,
                            step,
                            f"{folder[:-1]} manifest says it belongs to {manifest.get('run')!r}",
                        )
                    )
                for what, ref in refs.items():
                    if is_inline(ref):  # the bytes are in the manifest: checked right here
                        inline += 1
                        try:
                            inline_raw(ref, f"{folder[:-1]} {what}")
                        except ZooError as exc:
                            problems.append(Problem(label, step, str(exc)))
                        continue
                    referrers.setdefault(
                        ref["blob"], (label, step, f"{folder[:-1]} {what}", ref["nbytes"])
                    )
        for name in run.dictionary_names():
            try:
                refs = manifest_refs(run.dictionary_record(name))
            except ZooError as exc:
                problems.append(Problem(label, None, f"dictionary {name}: {exc}"))
                continue
            manifests += 1
            for what, ref in refs.items():
                if is_inline(ref):
                    inline += 1
                    try:
                        inline_raw(ref, f"dictionary {name} {what}")
                    except ZooError as exc:
                        problems.append(Problem(label, None, str(exc)))
                    continue
                referrers.setdefault(ref["blob"], (label, None, f"dictionary {name} {what}",
                                                   ref["nbytes"]))
        problems += _order_and_duplicates(label, by_kind[CHECKPOINTS])
        for step, frame in by_kind[KEYFRAMES].items():
            checkpoint = by_kind[CHECKPOINTS].get(step)
            if checkpoint and _weights(checkpoint["tensors"]) != _weights(frame["model"]):
                problems.append(
                    Problem(
                        label, step, "keyframe weights differ from the checkpoint of the same step"
                    )
                )
        problems += _status_beyond_manifests(run, label, by_kind)
    raw_bytes = sum(r[3] for r in referrers.values())

    def check(item: tuple[str, tuple[str, int, str, int]]) -> Problem | None:
        sha, (label, step, what, nbytes) = item
        try:
            with reaching(store.url):
                where = label if step is None else f"{label} step {step}"
                store.blobs.get_raw(sha, nbytes=nbytes, what=f"{where} {what}")
        except ZooError as exc:
            return Problem(label, step, str(exc))
        return None

    with ThreadPoolExecutor(4) as pool:
        results = pool.map(check, referrers.items())
        for result in progress_bar(results, total=len(referrers), desc="verifying blobs",
                                   unit="blob", enabled=progress):
            if result:
                problems.append(result)
    return VerifyReport(len(run_ids), manifests, len(referrers), raw_bytes, problems, inline)


def _weights(refs: dict[str, dict]) -> tuple:
    return tuple(sorted((name, ref["blob"]) for name, ref in refs.items()))


def _order_and_duplicates(label: str, checkpoints: dict[int, dict]) -> list[Problem]:
    problems = []
    seen: dict[tuple, int] = {}
    previous: tuple[int, int] | None = None
    for step in sorted(checkpoints):
        manifest = checkpoints[step]
        weights = _weights(manifest.get("tensors", {}))
        if weights and weights in seen:
            problems.append(
                Problem(
                    label,
                    step,
                    f"byte-identical weights to step {seen[weights]} "
                    f"(a duplicated or mislabelled checkpoint)",
                )
            )
        seen.setdefault(weights, step)
        tokens = manifest.get("tokens_seen")
        if previous is not None and isinstance(tokens, int) and tokens <= previous[1]:
            problems.append(
                Problem(
                    label,
                    step,
                    f"steps out of order: tokens_seen {tokens} is not more "
                    f"than step {previous[0]}'s {previous[1]}",
                )
            )
        if isinstance(tokens, int):
            previous = (step, tokens)
    return problems
