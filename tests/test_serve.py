"""`zoo serve`: the store read over HTTP gives the same bits as the local store (load, batch,
replay, pull then verify); nothing can be written and no path leaves the store; a token is
enforced; and the pages render in a real browser (headless Chromium) with their charts."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from urllib.parse import quote

import pytest
import torch
from micro_family import write_manifest

import zoo

pytest.importorskip("starlette", reason="zoo serve needs the serve extra: pip install 'model-zoo[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")

from training.branching import branch  # noqa: E402
from training.session import Controls  # noqa: E402
from training.sweep import train_family  # noqa: E402
from zoo.cli import main  # noqa: E402
from served_store import Server  # noqa: E402
from zoo.store.store import Store  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder), store=store, threads=2, progress=False)
        branch("micro-1l32", seed="all", from_step=6, label="slow", store=store, progress=False,
               lr_scale=0.5)
        server = Server(store)
        yield store, server
        server.stop()


@pytest.fixture(autouse=True)
def _remote_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))  # a reader elsewhere: its own cache


def _when_ready(server, path: str) -> tuple[int, bytes]:
    """The answer for `path` once its step is replayed: while the server replays a step that was
    not stored, its page answers 202 with the replay's progress (tests/test_serve_replays.py)."""
    deadline = time.monotonic() + 120
    while True:
        status, body = server.raw("GET", path)
        if status != 202:
            return status, body
        assert time.monotonic() < deadline, f"{path} was still replaying after 120 s"
        time.sleep(0.1)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_over_http_is_bit_identical_to_the_local_load(served):
    store, server = served
    remote, _ = zoo.load("micro-1l32", seed=2, step=12, store=server.url)
    local, _ = zoo.load("micro-1l32", seed=2, step=12, store=store)
    assert _same(remote.state_dict(), local.state_dict())
    replayed, _ = zoo.load("micro-1l32", seed=1, step=7, store=server.url)  # not stored: replayed
    assert _same(replayed.state_dict(), zoo.load("micro-1l32", seed=1, step=7, store=store)[0].state_dict())
    assert torch.equal(zoo.batch("micro-1l32", seed=1, step=9, store=server.url, branch="slow"),
                       zoo.batch("micro-1l32", seed=1, step=9, store=store, branch="slow"))
    assert zoo.replay("micro-1l32", seed=1, step=12, store=server.url, branch="slow").exact


def test_pull_over_http_copies_runs_that_then_verify(served, tmp_path, capsys):
    _, server = served
    mine = str(tmp_path / "mine")
    assert main(["pull", server.url, "micro-1l32", "--seed", "1", "--store", mine]) == 0
    assert main(["verify", "--store", mine]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("OK:")
    assert zoo.steps("micro-1l32", seed=1, store=mine) == zoo.steps("micro-1l32", seed=1, store=served[0])


def test_nothing_can_be_written_and_no_path_leaves_the_store(served, tmp_path):
    store, server = served
    root = store.location.local_path()
    before = sorted(str(p) for p in root.rglob("*"))
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        assert server.raw(method, "/runs/micro/1l32/seed-1/status.json")[0] == 405
        assert server.raw(method, "/zoo.json")[0] == 405
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the store")
    (root / "runs" / "micro" / "escape").symlink_to(secret)
    (root / "runs" / "micro" / "escape-dir").symlink_to(tmp_path, target_is_directory=True)
    try:
        for path in ("/runs/../../secret.txt", "/runs/%2e%2e/%2e%2e/secret.txt",
                     "/runs/%2E%2E%2F%2E%2E%2Fsecret.txt", "/blobs/..%2f..%2fzoo.json",
                     "/runs/micro/escape", "/runs/micro/escape-dir/secret.txt",
                     "/runs/./micro", "/runs/micro/%00", "/corpora/..\\..\\secret.txt"):
            status, body = server.raw("GET", path)
            assert status in (403, 404), path
            assert b"outside the store" not in body, path
        status, listing = server.raw("GET", "/runs/micro/")
        assert status == 200 and b"1l32/" in listing
    finally:
        (root / "runs" / "micro" / "escape").unlink()
        (root / "runs" / "micro" / "escape-dir").unlink()
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_zoo_serve_on_a_busy_port_is_one_line_before_serving(served, capsys):
    import socket

    from zoo.cli import main

    store, _ = served
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["serve", "--store", store.url, "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"cannot serve at 127.0.0.1:{port}" in captured.err and "--port" in captured.err
    assert "serving" not in captured.out and captured.err.count("\n") == 1


def test_a_token_is_required_when_set(served):
    store, _ = served
    guarded = Server(store, token="s3cret")
    try:
        assert guarded.raw("GET", "/zoo.json")[0] == 401
        assert guarded.raw("GET", "/zoo.json", {"Authorization": "Bearer wrong"})[0] == 401
        assert guarded.raw("GET", "/zoo.json", {"Authorization": "Bearer s3cret"})[0] == 200
        options = {"headers": {"Authorization": "Bearer s3cret"}}
        assert zoo.steps("micro-1l32", seed=1, store=Store.open(guarded.url, storage_options=options))
        assert guarded.raw("GET", "/?token=s3cret")[0] == 200
    finally:
        guarded.stop()


def test_a_steps_weights_download_as_a_zip_that_opens_with_from_pretrained(served, tmp_path):
    import io
    import zipfile

    from transformers import AutoModelForCausalLM

    store, server = served
    status, body = _when_ready(server, "/run/micro-1l32/1/9/snapshot.zip")  # step 9: replayed
    assert status == 200
    zipfile.ZipFile(io.BytesIO(body)).extractall(tmp_path / "unzipped")
    opened = AutoModelForCausalLM.from_pretrained(tmp_path / "unzipped")
    assert _same(opened.state_dict(), zoo.load("micro-1l32", seed=1, step=9, store=store)[0].state_dict())


def test_a_run_still_training_shows_its_progress(served):
    store, server = served
    branch("micro-1l32", seed=1, from_step=4, label="half", store=store, lr_scale=2.0,
           controls=Controls(progress=False, stop_after_step=14))  # keyframed at its stop
    status, body = server.raw("GET", "/model/micro-1l32@half")
    assert status == 200 and b"stopped: step 14 of 24" in body
    assert b"@half" in server.raw("GET", "/")[1]


def test_unknown_names_get_a_page_listing_what_exists(served):
    _, server = served
    status, body = server.raw("GET", "/model/nope-1l32")
    assert status == 404 and b"no model &#39;nope-1l32&#39;" in body and b"micro-1l32" in body
    status, body = server.raw("GET", "/run/micro-1l32/9/4")
    assert status == 404 and b"no seed 9 for micro-1l32" in body


SCRIPT = "<script>alert(1)</script>"


def test_text_from_the_request_or_the_store_is_escaped_never_markup(served):
    """Jinja2's autoescape on every page (and markupsafe in the SVG charts): a prompt, a name in
    the URL or a query value that holds <script> is shown as text."""
    _, server = served
    quoted = quote(SCRIPT, safe="")
    assert _when_ready(server, "/attention/micro-1l32/1?step=7")[0] == 200  # step 7: replayed
    for path in (f"/attention/micro-1l32/1?step=7&prompt={quoted}",  # the prompt and its tokens
                 f"/model/{quoted}",  # a name in the URL, repeated by the 404 page
                 f"/compare?a={quoted}&b=micro-1l32&metric=loss",  # a query value, in the form
                 f"/compare?a=micro-1l32&b={quoted}&metric={quoted}&branch={quoted}"):
        status, body = server.raw("GET", path)
        assert status in (200, 400, 404), path
        assert b"<script" not in body, path
        assert b"&lt;script&gt;" in body or b"&lt;/script&gt;" in body, path
    status, body = server.raw("GET", f"/attention/micro-1l32/1?step=7&prompt={quoted}")
    assert status == 200 and b'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in body
    assert body.count(b'class="pattern"') == 2


def test_chart_labels_are_escaped_by_markupsafe():
    from markupsafe import Markup

    from zoo.serve.charts import Chart, Series, heatmap, svg

    pattern = heatmap([[1.0, 0.0], [0.5, 0.5]], labels=["<b>", SCRIPT], title="L0H0 <i>")
    chart = svg(Chart(f"title {SCRIPT}", "y <&>", [Series(SCRIPT, [0, 1], [1.0, 2.0], "#111",
                                                          width=2)], lines=[(1, SCRIPT)]))
    for drawn in (pattern, chart):
        assert isinstance(drawn, Markup)  # inserted by a template as it is, never escaped twice
        assert "<script" not in drawn and "<b>" not in drawn and "<i>" not in drawn
    assert "&lt;script&gt;alert(1)&lt;/script&gt; -> &lt;b&gt;" in pattern
    assert "y &lt;&amp;&gt;" in chart


def test_a_corrupt_blob_is_an_error_page_never_wrong_weights(served, tmp_path):
    store, server = served
    refs = store.run(zoo.open_run("micro-1l32", seed=2, store=store).run_id).checkpoint_manifest(24)["tensors"]
    sha = next(ref["blob"] for ref in refs.values() if isinstance(ref, dict) and "blob" in ref)
    blob = store.location.local_path(store.blobs.relpath(sha))
    original = blob.read_bytes()
    try:
        blob.write_bytes(original[:-8] + bytes(8))
        status, body = server.raw("GET", "/attention/micro-1l32/2?step=24")
        assert status == 500 and b"damaged" in body
        with pytest.raises(zoo.IntegrityError):
            zoo.load("micro-1l32", seed=2, step=24, store=server.url)
    finally:
        blob.write_bytes(original)


def _dom(url: str, screenshot: str | None = None) -> str:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1200,1700", "--virtual-time-budget=5000"]
    if screenshot:
        subprocess.run([*args, f"--screenshot={screenshot}", url], check=True, capture_output=True,
                       timeout=120)
    done = subprocess.run([*args, "--dump-dom", url], check=True, capture_output=True, text=True,
                          timeout=120)
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install "
                                              "chromium; scripts/dev.sh test installs it)")
def test_the_pages_render_in_a_real_browser(served, tmp_path):
    _, server = served
    home = _dom(server.url, str(tmp_path / "store.png"))
    assert "micro-1l32" in home and "@slow" in home
    assert home.count('class="series"') >= 1  # the store page's chart, drawn
    model = _dom(server.url + "model/micro-1l32", str(tmp_path / "model.png"))
    assert model.count('class="series"') >= 3 and 'class="band"' in model and 'class="mark"' in model
    assert 'class="branch" href="/model/micro-1l32%40slow"' in model  # a model links its branches
    branch_page = _dom(server.url + "model/micro-1l32@slow")
    assert "branch point" in branch_page and 'class="parent" href="/model/micro-1l32"' in branch_page
    run = _dom(server.url + "run/micro-1l32/1/9?sample=3")
    assert run.count("class=\"sample\"") == 8 and 'id="steps-of"' in run
    assert _when_ready(server, "/attention/micro-1l32/1?step=7")[0] == 200  # replayed, cached
    attention = _dom(server.url + "attention/micro-1l32/1?step=7", str(tmp_path / "attention.png"))
    assert "not stored: replayed exactly" in attention  # step 7 is between checkpoints
    assert attention.count('class="pattern"') == 2 and "<rect" in attention  # 1 layer x 2 heads
    for shot in ("store.png", "model.png", "attention.png"):
        assert (tmp_path / shot).stat().st_size > 5_000
    if os.environ.get("ZOO_SCREENSHOTS"):  # docs/: refreshed by scripts/screenshots.sh
        for shot in ("store.png", "model.png", "attention.png"):
            shutil.copy(tmp_path / shot, os.path.join(os.environ["ZOO_SCREENSHOTS"], shot))
