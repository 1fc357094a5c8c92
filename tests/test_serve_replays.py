"""`zoo serve` replays a step that was not stored once, however many ask, off the request: the
page answers at once with the replay's progress, stored pages answer meanwhile, and the replay's
training steps are reported as they are done. The replays here are real; a test only holds one
at a chosen point (an Event it releases) and counts them, so nothing depends on timing."""
from __future__ import annotations

import http.client
import threading
import time

import pytest
import torch
from micro_family import write_manifest

pytest.importorskip("starlette", reason="zoo serve needs the serve extra: pip install 'model-zoo[serve]'")
pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")

from served_store import Server  # noqa: E402
from training.sweep import train_family  # noqa: E402
from zoo.registry import reachable  # noqa: E402
from zoo.store.catalog import open_run  # noqa: E402
from zoo.store.store import Store  # noqa: E402
from zoo_common.errors import IntegrityError  # noqa: E402

# stored: 0 1 2 6 12; keyframes 0 6 12. Steps 7..11 are replayed from keyframe 6.
CHECKPOINTS = {"log_spaced_until": 2, "every": 6, "keyframe_every": 6}
HELD = 60  # seconds a held replay waits for its Event at most: a failing test never hangs


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_replays")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, seeds=[1], steps=12, checkpoints=CHECKPOINTS),
                     store=store, threads=2, progress=False)
        server = Server(store)
        yield store, server
        server.stop()


def _replays(server):
    return server.server.config.app.state.replays


def _get(server, path: str) -> tuple[int, str, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read().decode(errors="replace"), dict(response.getheaders())


def _all_at_once(server, path: str, n: int = 4) -> list[tuple[int, str, dict]]:
    """n requests for `path` from n threads, released together."""
    start, answers = threading.Barrier(n), [None] * n

    def ask(k: int) -> None:
        start.wait()
        answers[k] = _get(server, path)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * HELD)
    return answers


class HeldReplay:
    """Wraps the real replay's restore: counts the replays, and holds each until released."""

    def __init__(self, monkeypatch) -> None:
        self.calls, self.entered, self.release = 0, threading.Event(), threading.Event()
        real = reachable.restore

        def restore(*args, **kwargs):
            self.calls += 1
            self.entered.set()
            assert self.release.wait(HELD), "the test never released the replay"
            return real(*args, **kwargs)

        monkeypatch.setattr(reachable, "restore", restore)


def test_concurrent_requests_share_one_replay_and_stored_pages_answer_meanwhile(served, monkeypatch):
    _, server = served
    held = HeldReplay(monkeypatch)
    path = "/attention/micro-1l32/1?step=10"
    waiting = _all_at_once(server, path)
    assert [status for status, _, _ in waiting] == [202] * 4
    assert all("replaying step 10 from keyframe 6" in body for _, body, _ in waiting)
    assert held.entered.wait(HELD) and held.calls == 1
    [replay] = _replays(server).running()

    # the replay is held mid-way: the stored step's page, and pages without weights, answer
    status, body, _ = _get(server, "/attention/micro-1l32/1?step=6")
    assert status == 200 and "step 6 (stored)" in body and body.count('class="pattern"') == 2
    assert _get(server, "/run/micro-1l32/1/10")[0] == 200
    assert _get(server, "/model/micro-1l32")[0] == 200
    status, body, _ = _get(server, path)  # a fifth visitor joins the same replay
    assert status == 202 and "replaying step 10 from keyframe 6" in body

    held.release.set()
    replay.future.result(timeout=HELD)
    ready = _all_at_once(server, path)
    assert [status for status, _, _ in ready] == [200] * 4
    assert all("step 10 (not stored: replayed exactly" in body for _, body, _ in ready)
    assert all(body.count('class="pattern"') == 2 for _, body, _ in ready)
    assert held.calls == 1  # one replay for nine requests
    assert _replays(server).running() == []


def test_the_waiting_page_shows_the_replays_progress_and_reloads_itself(served, monkeypatch):
    _, server = served
    reached, release, real = threading.Event(), threading.Event(), reachable.step_to
    steps_done = []

    def step_to(state, step, **kwargs):  # holds the replay after its first training step
        if steps_done:
            reached.set()
            assert release.wait(HELD), "the test never released the replay"
        real(state, step, **kwargs)
        steps_done.append(step)

    monkeypatch.setattr(reachable, "step_to", step_to)
    path = "/superposition/micro-1l32/1"  # not a superposition model: the error comes first
    assert _get(server, path + "?step=9")[0] == 400 and not steps_done
    path = "/attention/micro-1l32/1?step=9"
    assert _get(server, path)[0] == 202
    assert reached.wait(HELD)
    status, body, headers = _get(server, path)
    assert status == 202 and headers["retry-after"] == "2"
    assert "replaying step 9 from keyframe 6:" in body and "1 of 3 training steps done" in body
    assert '<meta http-equiv="refresh" content="2">' in body
    assert '<progress value="1" max="3">' in body
    release.set()
    [replay] = _replays(server).running()
    replay.future.result(timeout=HELD)
    assert steps_done == [7, 8, 9]
    assert _get(server, path)[0] == 200


def test_a_failed_replay_is_its_error_page_once_and_then_tried_again(served, monkeypatch):
    _, server = served
    real, calls = reachable.restore, []

    def restore(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("blob 1234 is damaged (test)")
        return real(*args, **kwargs)

    monkeypatch.setattr(reachable, "restore", restore)
    path = "/run/micro-1l32/1/8/snapshot.zip"
    status, body, _ = _get(server, path)
    if status == 202:  # the server's short wait ran out before the worker failed
        for replay in _replays(server).running():
            replay.future.exception(timeout=HELD)
        status, body, _ = _get(server, path)
    assert status == 500 and "blob 1234 is damaged (test)" in body
    status, _, headers = _wait_for(server, path)
    assert status == 200 and headers["content-type"] == "application/zip"
    assert len(calls) == 2


def test_a_step_no_replay_reaches_is_a_404_at_once(served):
    _, server = served
    status, body, _ = _get(server, "/attention/micro-1l32/1?step=99")
    assert status == 404 and "no step 99" in body and _replays(server).running() == []


def test_the_step_slider_loads_a_step_when_released_not_while_it_moves(served):
    _, server = served
    _, body, _ = _get(server, "/attention/micro-1l32/1?step=6")
    slider = body[body.index('<input id="step"'):]
    slider = slider[:slider.index(">")]
    assert 'onchange="this.form.submit()"' in slider
    assert "submit" not in slider[slider.index("oninput"):slider.index("onchange")]


def test_replay_reports_each_training_step_and_gives_the_stored_weights(served, tmp_path,
                                                                       monkeypatch):
    store, _ = served
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    run = open_run("micro-1l32", seed=1, store=store)
    reported = []
    folder = reachable.materialize_step(run, 6, on_step=lambda done, total:
                                        reported.append((done, total)))  # stored: 6 from 0
    assert reported == [(k, 6) for k in range(1, 7)]
    from safetensors.torch import load_file

    replayed, stored = load_file(folder / "model.safetensors"), run.read_checkpoint(6).tensors
    assert replayed.keys() == stored.keys()
    assert all(torch.equal(replayed[k], stored[k]) for k in stored)


def _wait_for(server, path: str) -> tuple[int, str, dict]:
    """The answer once the step's replay is done (a page answers 202 while it runs)."""
    deadline = time.monotonic() + HELD
    while True:
        status, body, headers = _get(server, path)
        if status != 202:
            return status, body, headers
        assert time.monotonic() < deadline, f"{path} was still replaying after {HELD} s"
        time.sleep(0.1)
