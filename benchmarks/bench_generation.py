"""Generation speed: the old worker's way (baseline) and the project's, side by side.

    python benchmarks/bench_generation.py --model DIR --stems 3 --duration 10 [--json FILE]

Baseline: transformers fp32, one ``generate`` call per stem, as the old worker did.
Project: ``generation.musicgen.generate_audio``, all stems in one batched call.
Each path runs in its own child process so its peak memory (max RSS) is its own.
Without ``--model`` the random-weight musicgen-small checkpoint is built once into
``.checkpoints/musicgen-small-random`` (speed does not depend on weight values).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEMS = ["guitar", "bass", "drums", "piano", "synth", "strings", "brass", "pads"]
logger = logging.getLogger("bench")


def _measure(path: str, model_dir: str, stems: int, duration: float, seed: int) -> dict:
    """Run one path in this process; returns its figures."""
    import torch

    from generation.model_loader import load_model
    from generation.musicgen import SamplingParams, generate_audio, plan_length
    from generation.prompts import build_stem_prompt
    from generation.settings import GenerationSettings

    loaded = load_model(GenerationSettings(musicgen_model=model_dir))
    prompts = [build_stem_prompt(s, style="rock", target_bpm=120) for s in STEMS[:stems]]
    plan = plan_length(
        duration,
        sample_rate=loaded.sample_rate,
        frame_rate=loaded.frame_rate,
        num_codebooks=loaded.num_codebooks,
    )
    started = time.perf_counter()
    if path == "baseline":
        steps = 0
        with torch.inference_mode():
            for prompt in prompts:
                torch.manual_seed(seed)
                inputs = loaded.processor(text=[prompt], padding=True, return_tensors="pt")
                loaded.model.generate(
                    **inputs, max_new_tokens=plan.steps, do_sample=True, guidance_scale=3.0
                )
                steps += plan.steps
    else:
        generate_audio(loaded, prompts, duration, seed=seed, sampling=SamplingParams())
        steps = plan.steps
    wall = time.perf_counter() - started
    return {
        "path": path,
        "wall_s": wall,
        "steps": steps,
        "ms_per_step": 1000 * wall / steps,
        "realtime_factor": wall / (duration * stems),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def _child(path: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        path,
        "--model",
        args.model,
        "--stems",
        str(args.stems),
        "--duration",
        str(args.duration),
        "--seed",
        str(args.seed),
    ]
    logger.info("running %s ...", path)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ensure_model(model: str | None) -> str:
    if model:
        return model
    target = ROOT / ".checkpoints" / "musicgen-small-random"
    if not (target / "config.json").is_file():
        from generation.checkpoints import build_checkpoint

        logger.info("building the random musicgen-small checkpoint into %s", target)
        build_checkpoint("musicgen-small-random", target)
    return str(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint directory or hub id")
    parser.add_argument("--stems", type=int, default=3, choices=range(1, len(STEMS) + 1))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per stem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", choices=["baseline", "project"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    if args.child:
        print(json.dumps(_measure(args.child, args.model, args.stems, args.duration, args.seed)))
        return 0

    args.model = _ensure_model(args.model)
    baseline = _child("baseline", args)
    project = _child("project", args)
    speedup = baseline["wall_s"] / project["wall_s"]
    header = f"{'path':<10} {'wall s':>8} {'ms/step':>8} {'RTF':>6} {'peak MB':>8}"
    lines = [
        f"model {args.model}; {args.stems} stems x {args.duration:g} s; "
        f"{platform.processor() or platform.machine()}, torch threads {project['torch_threads']}",
        header,
    ]
    for row in (baseline, project):
        lines.append(
            f"{row['path']:<10} {row['wall_s']:>8.1f} {row['ms_per_step']:>8.1f} "
            f"{row['realtime_factor']:>6.2f} {row['peak_rss_mb']:>8.0f}"
        )
    lines.append(f"speedup (baseline wall / project wall): {speedup:.2f}x")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": "cpu",
                    "baseline_wall_s": baseline["wall_s"],
                    "project_wall_s": project["wall_s"],
                    "speedup": speedup,
                    "peak_rss_mb": project["peak_rss_mb"],
                    "baseline": baseline,
                    "project": project,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
