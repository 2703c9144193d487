#!/usr/bin/env bash
# Set up everything and run the test suite: venv + packages, Azurite, the tiny checkpoints,
# ruff, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian packages the tests need (CI runs on a fresh machine as root; the tests fail, never
# skip, without them): headless Chromium and its driver for the studio's browser tests,
# FluidSynth and a GM soundfont to render the analysis tests' music.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
  || ! command -v fluidsynth >/dev/null || [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then
  sudo=""; if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fluidsynth fluid-soundfont-gm >/dev/null
fi
azurite_pid="$(bash scripts/azurite.sh)"
if [ -n "$azurite_pid" ]; then trap 'kill "$azurite_pid" 2>/dev/null || true' EXIT; fi
if [ ! -f .checkpoints/tiny/config.json ]; then
  .venv/bin/python -m generation.checkpoints tiny .checkpoints/tiny
fi
export MUSICGEN_TEST_CHECKPOINT="$PWD/.checkpoints/tiny"
if [ ! -f .checkpoints/ace-step-tiny/model_index.json ]; then
  .venv/bin/python -m generation.checkpoints ace-step-tiny .checkpoints/ace-step-tiny
fi
export ACE_STEP_TEST_CHECKPOINT="$PWD/.checkpoints/ace-step-tiny"
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
