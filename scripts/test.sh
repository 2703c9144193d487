#!/usr/bin/env bash
# Set up everything and run the test suite: venv + packages, Azurite, the tiny checkpoint,
# ruff, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The studio's browser tests drive Debian's headless Chromium; install it when missing
# (CI runs on a fresh machine as root). The tests fail, never skip, without it.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo=""; if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
fi
azurite_pid="$(bash scripts/azurite.sh)"
if [ -n "$azurite_pid" ]; then trap 'kill "$azurite_pid" 2>/dev/null || true' EXIT; fi
if [ ! -f .checkpoints/tiny/config.json ]; then
  .venv/bin/python -m generation.checkpoints tiny .checkpoints/tiny
fi
export MUSICGEN_TEST_CHECKPOINT="$PWD/.checkpoints/tiny"
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
