"""Pictures of the superposition family: `zoo serve`'s superposition page shows a replayed step's
weights (W^T W, the norms by interference, the plane for m = 2) in a real browser, with each
feature's dimensionality over steps read from zoo eval or computed from the stored W alike; and
`zoo plot FAMILY --by sparsity` draws a measure against the data's sparsity, with one clear error
for an unknown parameter or a measure not evaluated."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml

import zoo
from training.sweep import train_family
from zoo.cli import main
from zoo.store.store import Store

pytest.importorskip("starlette", reason="zoo serve needs the serve extra: pip install 'model-zoo[serve]'")
pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")

from served_store import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NAME = "sppic-n6m2s0.9"
REPLAYED = 123  # stored: 0 1 2 4 8 16 50 100 150 ...; keyframes every 100
MICRO = {
    "family": "sppic",
    "architecture": "superposition",
    "sizes": [
        {"name": "n6m2s0", "width": 2, "source": "builtin:sparse_features?n=6&sparsity=0&importance=1"},
        {"name": "n6m2s0.9", "width": 2, "source": "builtin:sparse_features?n=6&sparsity=0.9&importance=1"},
    ],
    "seeds": [1, 2],
    "data": {"source": "builtin:sparse_features?n=6&sparsity=0.9&importance=1"},
    "optimizer": {"lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0, "clip": 0},
    "schedule": {"kind": "constant", "warmup_steps": 0},
    "batch_size": 256,
    "steps": 300,
    "checkpoints": {"log_spaced_until": 16, "every": 50, "keyframe_every": 100},
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(trained, evaluated): the micro family as trained, and a copy with `zoo eval --metric
    superposition` run on it."""
    from zoo.eval.evaluate import evaluate_family

    folder = tmp_path_factory.mktemp("superposition_pictures")
    manifest = folder / "sppic.yaml"
    manifest.write_text(yaml.safe_dump(MICRO, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        trained = Store.open(str(folder / "trained"))
        train_family(str(manifest), store=trained, threads=1, progress=False)
        shutil.copytree(folder / "trained", folder / "evaluated")
        evaluated = Store.open(str(folder / "evaluated"))
        evaluate_family("sppic", ["superposition"], store=evaluated, progress=False)
        yield trained, evaluated


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))


def _dom(url: str) -> str:
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--window-size=1200,1500",
                           "--virtual-time-budget=5000", "--dump-dom", url],
                          check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install "
                                              "chromium; scripts/dev.sh test installs it)")
def test_the_page_draws_a_replayed_steps_weights_in_a_real_browser(stores):
    trained, _ = stores
    assert REPLAYED not in zoo.steps(NAME, seed=1, store=trained)
    server = Server(trained)
    try:
        page = _dom(f"{server.url}superposition/{NAME}/1?step={REPLAYED}")
        model_page = server.raw("GET", f"/model/{NAME}")[1].decode()
    finally:
        server.stop()
    assert "not stored: replayed exactly" in page
    heat = page[page.index('class="gram"'):]
    heat = heat[:heat.index("</svg>")]
    assert heat.count("<rect") >= 6 * 6 + 6  # W^T W's cells and b's
    W = zoo.load(NAME, seed=1, step=REPLAYED, store=trained)[0].W.detach().double().numpy()
    gram = W.T @ W
    for i, j in ((0, 0), (2, 5), (5, 1)):  # the cells hold the replayed model's own W^T W
        assert f"W_{i} . W_{j} = {gram[i, j]:.3f}" in heat
    assert page.count('class="bar"') == 6 and 'class="plane"' in page  # m = 2: the k-gon
    assert page.count('class="feature"') == 6
    chart = page[page.index('id="dimensionality"'):]
    assert chart.count('class="series"') == 6 and "computed from the stored W" in chart
    slider = re.search(r'<input id="step"[^>]*>', page)[0]
    assert 'onchange="this.form.submit()"' in slider and "submit" not in slider.split("onchange")[0]
    assert f'href="/superposition/{NAME}/1?step=300"' in model_page  # linked from the model page


def test_dimensionality_from_zoo_eval_is_the_one_computed_from_w(stores):
    from zoo.serve.superposition_page import _dimensionality

    trained, evaluated = stores
    computed = _dimensionality(trained, NAME, [1, 2], 6)
    measured = _dimensionality(evaluated, NAME, [1, 2], 6)
    for seed in (1, 2):
        steps, dims, from_eval, from_w = computed[seed]
        assert (from_eval, from_w) == (0, len(steps))
        assert measured[seed][0] == steps and measured[seed][2] == len(steps)
        assert np.allclose(measured[seed][1], dims, atol=1e-12)


def test_pages_without_tokens_point_to_the_superposition_page(stores):
    trained, _ = stores
    server = Server(trained)
    try:
        for path in (f"/run/{NAME}/1/5", f"/attention/{NAME}/1?step=5"):
            status, body = server.raw("GET", path)
            assert status == 400 and f"/superposition/{NAME}/1?step=5".encode() in body
        status, body = server.raw("GET", f"/superposition/{NAME}/1?dims=every")
        assert status == 400 and b"dims must be one of seed, all" in body
        status, body = server.raw("GET", f"/superposition/{NAME}/1?step=301")
        assert status == 404 and b"no step 301" in body
        status, body = server.raw("GET", f"/superposition/{NAME}/2?step=50&dims=all")
        assert status == 200 and body.count(b'class="chart"') == 2  # a chart per seed
    finally:
        server.stop()


def test_zoo_plot_by_sparsity_draws_each_seeds_last_value(stores, tmp_path, capsys):
    from zoo.eval.parameter_plot import parameter_points
    from zoo.stats import seed_interval

    _, evaluated = stores
    out = tmp_path / "rep.png"
    argv = ["plot", "sppic", "--metric", "superposition.represented", "--by", "sparsity",
            "--store", evaluated.url]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    printed = capsys.readouterr().out
    assert "sppic-n6m2s0.9 (n=6, m=2, importance=1): sparsity=0.9" in printed
    points = parameter_points("sppic", "superposition.represented", "sparsity", store=evaluated)
    assert sorted(p.parameters["sparsity"] for p in points.points) == [0.0, 0.9]
    assert len(points.groups()) == 1  # the same n, m and importance: one line
    table = zoo.metrics("sppic", store=evaluated).to_pandas()
    for p in points.points:
        rows = table[(table["size"] == p.size) & table["superposition.represented"].notna()]
        last = rows.sort_values("step").groupby("seed").tail(1).sort_values("seed")
        assert p.seeds == (1, 2) and p.steps == (300, 300)
        assert p.values == tuple(last["superposition.represented"])
        assert p.interval == seed_interval(list(p.values), seeds=[1, 2])


@pytest.mark.parametrize("extra, words", [
    (["--by", "density"], "unknown --by 'density': choose one of sparsity"),
    (["--by", "sparsity", "--metric", "superposition"], ("superposition has one value per field; "
                                                        "choose one column: ")),
])
def test_zoo_plot_by_refuses_with_one_line(stores, tmp_path, capsys, extra, words):
    _, evaluated = stores
    out = tmp_path / "p.png"
    metric = [] if "--metric" in extra else ["--metric", "superposition.represented"]
    argv = ["plot", "sppic", *metric, *extra, "--store",
            evaluated.url, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.count("\n") == 0 and not out.exists()


def test_zoo_plot_by_a_measure_not_evaluated_says_how(stores, tmp_path, capsys):
    trained, _ = stores
    out = tmp_path / "p.png"
    assert main(["plot", "sppic", "--metric", "superposition.represented", "--by", "sparsity",
                 "--store", trained.url, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no column 'superposition.represented'" in err
    assert "run `zoo eval sppic --metric superposition` first" in err and err.count("\n") == 0
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    assert "--by sparsity --out rep.png" in capsys.readouterr().out
