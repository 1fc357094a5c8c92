#!/usr/bin/env bash
# One entry point for a fresh machine: builds .venv (pinned CPU torch first, so no multi-GB CUDA
# build is pulled in), installs the package with its dev extras, then runs the asked-for job.
#   bash scripts/dev.sh test   -> the test suite
#   bash scripts/dev.sh demo   -> train the tiny family, load a model, replay a step, print a summary
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-test}"; shift || true
venv=".venv"
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "torch==2.13.0"
    "$venv/bin/python" -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
# SAELens 6 pins transformer-lens < 4, so it gets an environment of its own: the tests that
# check a dictionary export opens in SAELens run it there (skipped, and said so, if it cannot build)
sae_venv=".venv-sae"
sae_stamp="$sae_venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$job" = test ] && [ ! -f "$sae_stamp" ]; then
    { python3 -m venv "$sae_venv" \
        && "$sae_venv/bin/python" -m pip install -q --upgrade pip \
        && "$sae_venv/bin/python" -m pip install -q "torch==2.13.0" \
        && "$sae_venv/bin/python" -m pip install -q -e ".[sae]" \
        && touch "$sae_stamp"; } \
        || echo "dev.sh: could not build $sae_venv (SAELens); its tests will be skipped" >&2
fi
export PATH="$PWD/$venv/bin:$PATH"
case "$job" in
    test)
        # the browser test of `zoo serve` needs headless Chromium: a Debian package
        if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
                && [ "$(id -u)" = 0 ]; then
            apt-get install -y -q chromium >/dev/null 2>&1 \
                || echo "dev.sh: could not install chromium; the browser test will be skipped" >&2
        fi
        exec python -m pytest "$@" ;;
    demo) exec python -m training.demo "$@" ;;
    *) echo "usage: bash scripts/dev.sh test|demo [args]" >&2; exit 2 ;;
esac
