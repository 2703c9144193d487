"""ACE-Step 1.5 speed and memory: diffusers' pipeline as documented vs the project's path.

    python benchmarks/bench_ace_step.py [--model DIR] [--stems 3] [--duration 10]
        [--steps 50] [--measure-steps N] [--guidance 7] [--device cpu|cuda]
        [--paths baseline,project] [--baseline-dtype float32|bfloat16] [--no-compile]
        [--json FILE]

The workload is the upload case: ``--stems`` stems made by the ``lego`` task over one
``--duration`` s stereo 48 kHz track, base-variant sampling (``--steps`` steps, APG
guidance ``--guidance``, so every step is a conditional + null DiT pass).

Paths, each in its own child process (so each peak memory is its own):
  baseline   ``AceStepPipeline.from_pretrained(model)`` called as its documentation shows,
             one call per stem (each call encodes its text, VAE-encodes the track, runs
             the DiT over 2 rows, decodes). fp32 on CPU (the library default; the docs' bf16
             example is for CUDA), bf16 on CUDA; ``--baseline-dtype`` overrides.
  project    ``generation.engines.ace_step``: bf16 networks with an fp32 VAE (its Snake
             activations in place), the track VAE-encoded once, all stems through the DiT
             together (2 x stems rows a step), the DiT's blocks compiled (``load_s``
             includes compiling; ``--no-compile`` leaves them eager).
Per phase: condition encoding (text + condition encoder + source VAE encode, up to the first
DiT step), ms per DiT step (median over the steps run), VAE decode; peak RSS (and CUDA peak).
Fidelity: relative L2 error of each project stem against the baseline's (same seeds).

Full runs are long on a small CPU (50 guided steps of a 1.6 B DiT). ``--measure-steps N``
runs only N denoising steps at the real shapes (every step of a run has the same shapes and
cost: same batch, same 250 latent frames, guidance on every step), and reports the totals
for ``--steps`` as   projected = condition + steps x median_step + decode,   next to the
measured figures. Fidelity then compares two N-step runs (same schedule on both sides).
Without ``--model``, the exact-architecture random checkpoint is built once into
``.checkpoints/ace-step-random`` (speed and memory do not depend on weight values).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRACKS = ["bass", "drums", "guitar", "keyboard", "synth", "strings", "brass", "percussion"]
PROMPT = "funk band, slap bass, tight drums, clean guitar"
BPM, KEY, METRE = 110, "E minor", "4"
logger = logging.getLogger("bench_ace_step")


def _peak_memory_mb(device: str) -> dict[str, float]:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _track(duration: float):
    """A deterministic stereo 48 kHz test track ``[2, samples]`` (content does not matter
    for speed): two detuned saw-ish tones with a pulse, at -6 dBFS."""
    import numpy as np

    t = np.arange(round(duration * 48_000)) / 48_000
    left = np.sin(2 * np.pi * 82.4 * t) + 0.3 * np.sign(np.sin(2 * np.pi * 1.833 * t))
    right = np.sin(2 * np.pi * 82.9 * t) + 0.3 * np.sign(np.sin(2 * np.pi * 1.833 * t))
    audio = np.stack([left, right]).astype(np.float32)
    return 0.5 * audio / np.abs(audio).max()


def _run_baseline(args: argparse.Namespace, out_dir: Path) -> dict:
    import numpy as np
    import torch
    from diffusers import AceStepPipeline

    from generation.engines.ace_step.generate import SOURCE_SEED_OFFSET

    dtype = getattr(
        torch, args.baseline_dtype or ("bfloat16" if args.device == "cuda" else "float32")
    )
    started = time.perf_counter()
    pipe = AceStepPipeline.from_pretrained(args.model, torch_dtype=dtype).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    track = torch.from_numpy(_track(args.duration))

    decode_s: list[float] = []
    first_dit: list[float] = []

    def before_dit(_module, _inputs) -> None:
        if not first_dit:
            _sync(args.device)
            first_dit.append(time.perf_counter())

    pipe.transformer.register_forward_pre_hook(before_dit)
    decode = pipe.vae.decode

    def timed_decode(*a, **k):
        _sync(args.device)
        t0 = time.perf_counter()
        result = decode(*a, **k)
        _sync(args.device)
        decode_s.append(time.perf_counter() - t0)
        return result

    pipe.vae.decode = timed_decode
    condition, steps = [], []
    for index in range(args.stems):
        first_dit.clear()
        step_ends: list[float] = []

        def on_step(_pipe, _i, _t, kwargs, step_ends=step_ends):
            _sync(args.device)
            step_ends.append(time.perf_counter())
            return kwargs

        torch.manual_seed(index + SOURCE_SEED_OFFSET)  # the track's posterior sample
        call_started = time.perf_counter()
        audio = pipe(
            prompt=PROMPT,
            task_type="lego",
            track_name=TRACKS[index % len(TRACKS)],
            src_audio=track,
            audio_duration=args.duration,
            num_inference_steps=args.run_steps,
            guidance_scale=args.guidance,
            bpm=BPM,
            keyscale=KEY,
            timesignature=METRE,
            generator=torch.Generator(device=args.device).manual_seed(index),
            callback_on_step_end=on_step,
        ).audios
        condition.append(first_dit[0] - call_started)
        previous = first_dit[0]
        for end in step_ends:
            steps.append(end - previous)
            previous = end
        np.save(out_dir / f"baseline-{index}.npy", audio[0].float().cpu().numpy())
    return {
        "load_s": load_s,
        "dtype": str(dtype).removeprefix("torch."),
        "condition_s": sum(condition),
        "step_s": steps,
        "decode_s": sum(decode_s),
        "calls": args.stems,
    }


def _run_project(args: argparse.Namespace, out_dir: Path) -> dict:
    import numpy as np
    import torch

    from generation.engines.ace_step import (
        Clip,
        Musical,
        PhaseTimes,
        Sampling,
        Task,
        generate_clips,
        load_ace_step,
    )

    started = time.perf_counter()
    # As the service loads it (ACE_STEP_COMPILE): load_s includes compiling the DiT blocks.
    loaded = load_ace_step(
        args.model, None, device=torch.device(args.device), compile_dit=not args.no_compile
    )
    load_s = time.perf_counter() - started
    clips = [
        Clip(Task.LEGO, PROMPT, seed=index, track=TRACKS[index % len(TRACKS)])
        for index in range(args.stems)
    ]
    times = PhaseTimes()
    audio = generate_clips(
        loaded.pipeline,
        clips,
        Musical(args.duration, BPM, KEY, METRE),
        source=_track(args.duration),
        sampling=Sampling(steps=args.run_steps, guidance_scale=args.guidance),
        times=times,
    )
    for index, clip_audio in enumerate(audio):
        np.save(out_dir / f"project-{index}.npy", clip_audio)
    return {
        "load_s": load_s,
        "dtype": "bfloat16 (VAE float32)",
        "condition_s": times.condition_s,
        "step_s": times.dit_step_s,
        "decode_s": times.decode_s,
        "calls": 1,
    }


def _child(args: argparse.Namespace) -> None:
    out_dir = Path(args.out_dir)
    run = _run_baseline if args.child == "baseline" else _run_project
    result = run(args, out_dir)
    result.update(_peak_memory_mb(args.device))
    (out_dir / f"{args.child}.json").write_text(json.dumps(result))


def _summarise(name: str, raw: dict, args: argparse.Namespace) -> dict:
    step_ms = 1000 * statistics.median(raw["step_s"])
    steps_per_call = len(raw["step_s"]) // raw["calls"]
    measured = raw["condition_s"] + sum(raw["step_s"]) + raw["decode_s"]
    projected = raw["condition_s"] + raw["calls"] * args.steps * step_ms / 1000 + raw["decode_s"]
    return {
        "path": name,
        "dtype": raw["dtype"],
        "load_s": round(raw["load_s"], 2),
        "condition_s": round(raw["condition_s"], 3),
        "ms_per_dit_step": round(step_ms, 1),
        "dit_steps_run_per_call": steps_per_call,
        "decode_s": round(raw["decode_s"], 3),
        "measured_total_s": round(measured, 2),
        f"projected_total_s_at_{args.steps}_steps": round(projected, 2),
        "peak_rss_mb": round(raw["peak_rss_mb"]),
        **({"cuda_peak_mb": round(raw["cuda_peak_mb"])} if "cuda_peak_mb" in raw else {}),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint directory (diffusers layout)")
    parser.add_argument("--stems", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per stem")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of a real run")
    parser.add_argument(
        "--measure-steps", type=int, default=None, help="run only this many steps; project totals"
    )
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--paths", default="baseline,project")
    parser.add_argument("--baseline-dtype", choices=["float32", "bfloat16"], default=None)
    parser.add_argument(
        "--no-compile", action="store_true", help="project path without compiled DiT blocks"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", choices=["baseline", "project"], help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.run_steps = args.measure_steps or args.steps
    return args


def _compare(rows: list[dict], tmp: Path, args: argparse.Namespace) -> None:
    """Add the project's speed-up and per-stem error against the baseline to its row."""
    import numpy as np

    by_path = {row["path"]: row for row in rows}
    if not {"baseline", "project"} <= set(by_path):
        return
    errors = []
    for index in range(args.stems):
        ref = np.load(tmp / f"baseline-{index}.npy")
        ours = np.load(tmp / f"project-{index}.npy")
        errors.append(float(np.linalg.norm(ours - ref) / np.linalg.norm(ref)))
    key = f"projected_total_s_at_{args.steps}_steps"
    by_path["project"]["speedup_vs_baseline"] = round(
        by_path["baseline"][key] / by_path["project"][key], 2
    )
    by_path["project"]["rel_l2_error_vs_baseline"] = [round(e, 5) for e in errors]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.model is None:
        args.model = str(ROOT / ".checkpoints" / "ace-step-random")
        if not (Path(args.model) / "model_index.json").is_file():
            from generation.testing.ace_step_checkpoints import build_checkpoint

            build_checkpoint("ace-step-random", Path(args.model))
    if args.child:
        _child(args)
        return 0

    forwarded = [
        *("--model", args.model, "--stems", str(args.stems), "--duration", str(args.duration)),
        *("--steps", str(args.steps), "--guidance", str(args.guidance), "--device", args.device),
        *(("--measure-steps", str(args.measure_steps)) if args.measure_steps else ()),
        *(("--baseline-dtype", args.baseline_dtype) if args.baseline_dtype else ()),
        *(("--no-compile",) if args.no_compile else ()),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.paths.split(","):
            logger.info("running %s ...", name)
            command = [sys.executable, __file__, *forwarded]
            command += ["--child", name, "--out-dir", tmp]
            subprocess.run(command, check=True)
            raw = json.loads((Path(tmp) / f"{name}.json").read_text())
            rows.append(_summarise(name, raw, args))
        _compare(rows, Path(tmp), args)
    report = {
        "workload": f"{args.stems} stems x {args.duration} s lego, {args.steps} steps, "
        f"guidance {args.guidance}, {args.device}",
        "measured_steps_per_call": args.run_steps,
        "model": args.model,
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    text = json.dumps(report, indent=2)
    logger.info("%s", text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
