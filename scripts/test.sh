#!/usr/bin/env bash
# Set up everything and run the test suite: venv + packages, Azurite, the tiny checkpoint,
# ruff, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# FluidSynth and a GM soundfont render the analysis tests' music (tests fail without them).
if ! command -v fluidsynth >/dev/null || [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq fluidsynth fluid-soundfont-gm
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
