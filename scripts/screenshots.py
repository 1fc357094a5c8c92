"""Screenshots of `zoo serve`'s pages for docs/screenshots/, taken with headless Chromium.

    python scripts/screenshots.py --store STORE --model induction-attn2l --step 1500 \\
        --branch norepeats --attention-step 1250
    python scripts/screenshots.py --store STORE \\
        --page superposition-n6m2s0.9-step1234=/superposition/superposition-n6m2s0.9/1?step=1234

Serves STORE on a free loopback port, opens each page in Chromium, saves PNGs, stops: the model
pages of --model, or each --page LABEL=PATH (saved as LABEL.png).
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import uvicorn

from zoo.serve.app import make_app
from zoo.store.store import Store

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--step", type=int, default=None, help="the step page's step")
    parser.add_argument("--attention-step", type=int, default=None)
    parser.add_argument("--page", action="append", default=[], metavar="LABEL=PATH",
                        help="another page to take (repeatable)")
    parser.add_argument("--branch", default=None, help="a branch label for the compare page")
    parser.add_argument("--metric", default="induction.max")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(Store.open(args.store)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base, name = f"http://127.0.0.1:{port}", quote(args.model or "")
    pages = {} if args.model is None else {
        "store": "/", "model": f"/model/{name}", "step": f"/run/{name}/{args.seed}/{args.step}",
        "attention": f"/attention/{name}/{args.seed}?step={args.attention_step}"}
    pages.update(dict(spec.split("=", 1) for spec in args.page))
    if args.branch:
        pages["compare"] = f"/compare?a={name}&b={name}&branch={args.branch}&metric={args.metric}"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    OUT.mkdir(parents=True, exist_ok=True)
    for label, path in pages.items():
        target = OUT / f"{label}.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--window-size=1200,1500", "--virtual-time-budget=20000",
                        f"--screenshot={target}", base + path], check=True, capture_output=True,
                       timeout=600)
        print(f"{target}  <- {path}")
    server.should_exit = True


if __name__ == "__main__":
    main()
