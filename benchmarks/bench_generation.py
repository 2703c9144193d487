"""Generation speed, memory and fidelity: the old worker's way and the project's, side by side.

    python benchmarks/bench_generation.py [--model DIR] [--stems 3] [--duration 10]
        [--device cpu|cuda] [--json FILE] [--no-throughput]

Paths, each in its own child process (so each peak memory is its own):
  baseline       transformers fp32 ``generate``, one call per stem (the old worker)
  hf-batched     transformers fp32 ``generate``, all stems in one call
  project-*      the project's decoding loop (``generate_clips`` of
                 ``generation.engines.musicgen.generate``), all
                 stems in one batch, decoder weights in float32 / bfloat16 / int8
Fidelity: relative error of the decoder logits of each reduced precision against fp32 on
the same teacher-forced tokens. Throughput: 4 concurrent requests of ``--stems`` stems on
one worker, through the cross-request batcher vs one request after another.
Without ``--model`` the random-weight musicgen-small checkpoint is built once into
``.checkpoints/musicgen-small-random`` (speed does not depend on weight values).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEMS = ["guitar", "bass", "drums", "piano", "synth", "strings", "brass", "pads"]
REQUESTS = 4
logger = logging.getLogger("bench")


def _memory_mb(device: str) -> dict[str, float]:
    """Peak RSS of this process (model load included) and since the last reset (serving)."""
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["serving_peak_rss_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _reset_peak(device: str) -> None:
    import torch

    with contextlib.suppress(OSError):  # Linux: restart VmHWM from the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _settings(model: str, device: str, precision: str):
    from generation.settings import GenerationSettings

    return GenerationSettings(
        musicgen_model=model, use_gpu=device == "cuda", model_precision=precision
    )


def _prompts(stems: int) -> list[str]:
    from generation.stems.prompts import build_stem_prompt

    return [build_stem_prompt(s, style="rock", target_bpm=120) for s in STEMS[:stems]]


def _measure_hf(args: argparse.Namespace, one_by_one: bool) -> dict:
    import torch

    from generation.engines.musicgen.generate import plan_length
    from generation.engines.musicgen.loader import load_model

    loaded = load_model(_settings(args.model, args.device, "float32"))
    plan = plan_length(
        args.duration,
        sample_rate=loaded.sample_rate,
        frame_rate=loaded.frame_rate,
        num_codebooks=loaded.num_codebooks,
    )
    prompts = _prompts(args.stems)
    batches = [[p] for p in prompts] if one_by_one else [prompts]
    _reset_peak(args.device)
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            torch.manual_seed(args.seed)
            inputs = loaded.processor(text=batch, padding=True, return_tensors="pt")
            loaded.model.generate(
                **inputs.to(loaded.device),
                max_new_tokens=plan.steps,
                do_sample=True,
                guidance_scale=3.0,
            )
    _sync(args.device)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "steps": plan.steps * len(batches), **_memory_mb(args.device)}


def _measure_project(args: argparse.Namespace, precision: str) -> dict:
    from generation.engines.musicgen.generate import ClipSpec, generate_clips
    from generation.engines.musicgen.loader import load_model

    loaded = load_model(_settings(args.model, args.device, precision))
    clips = [ClipSpec(p, args.duration, args.seed + i) for i, p in enumerate(_prompts(args.stems))]
    generate_clips(loaded, [ClipSpec("warm-up", 0.2, 0)])  # first-call allocations, kernels
    _reset_peak(args.device)
    steps = []
    started = time.perf_counter()
    generate_clips(loaded, clips, progress=lambda done, total: steps.append(total))
    _sync(args.device)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "steps": steps[-1],
        "weights": loaded.decoder.weights.value,
        "decoder_weight_mb": loaded.decoder.weight_bytes / 2**20,
        **_memory_mb(args.device),
    }


def _measure_fidelity(args: argparse.Namespace) -> dict:
    """Relative logit error of bf16 and int8 decoders vs fp32, teacher-forced."""
    import torch

    from generation.engines.musicgen.fast_decoder import FastDecoder, WeightFormat
    from generation.engines.musicgen.loader import load_model

    loaded = load_model(_settings(args.model, args.device, "float32"))
    text = loaded.processor(text=_prompts(args.stems), padding=True, return_tensors="pt")
    text = text.to(loaded.device)
    generator = torch.Generator().manual_seed(0)
    positions = 100
    tokens = torch.randint(
        0, 2048, (args.stems, loaded.num_codebooks, positions), generator=generator
    ).to(loaded.device)
    result = {}
    with torch.inference_mode():
        states = loaded.decoder.project_text(
            loaded.model.text_encoder(**text).last_hidden_state, text["attention_mask"]
        )
        for fmt in (WeightFormat.BFLOAT16, WeightFormat.INT8):
            packed = FastDecoder(loaded.model, fmt)
            for decoder in (loaded.decoder, packed):
                decoder.start(states, text["attention_mask"], positions)
            errors = []
            for pos in range(positions):
                exact = loaded.decoder.step(tokens[:, :, pos : pos + 1], pos)
                approx = packed.step(tokens[:, :, pos : pos + 1], pos)
                errors.append(((approx - exact).norm() / exact.norm()).item())
            result[fmt.value] = {"max": max(errors), "mean": sum(errors) / len(errors)}
    return result


def _measure_throughput(args: argparse.Namespace, batched: bool) -> dict:
    from generation.engines.musicgen.batcher import BatchPolicy, ClipBatcher
    from generation.engines.musicgen.generate import ClipSpec, generate_clips
    from generation.engines.musicgen.loader import load_model

    loaded = load_model(_settings(args.model, args.device, "auto"))
    requests = [
        [ClipSpec(p, args.duration, 100 * r + i) for i, p in enumerate(_prompts(args.stems))]
        for r in range(REQUESTS)
    ]
    generate_clips(loaded, [ClipSpec("warm-up", 0.2, 0)])
    _reset_peak(args.device)
    started = time.perf_counter()
    if batched:
        batcher = ClipBatcher(lambda: loaded, BatchPolicy(window_s=0.5, max_clips=64))
        threads = [threading.Thread(target=batcher.generate, args=(r,)) for r in requests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = batcher.batches
    else:
        for request in requests:
            generate_clips(loaded, request)
        batches = [args.stems] * REQUESTS
    _sync(args.device)
    return {"wall_s": time.perf_counter() - started, "batches": batches, **_memory_mb(args.device)}


CHILDREN = {
    "baseline": lambda a: _measure_hf(a, one_by_one=True),
    "hf-batched": lambda a: _measure_hf(a, one_by_one=False),
    "project-float32": lambda a: _measure_project(a, "float32"),
    "project-bfloat16": lambda a: _measure_project(a, "bfloat16"),
    "project-int8": lambda a: _measure_project(a, "int8"),
    "fidelity": _measure_fidelity,
    "throughput-sequential": lambda a: _measure_throughput(a, batched=False),
    "throughput-batched": lambda a: _measure_throughput(a, batched=True),
}


def _child(name: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--model",
        args.model,
        "--device",
        args.device,
        "--stems",
        str(args.stems),
        "--duration",
        str(args.duration),
        "--seed",
        str(args.seed),
    ]
    logger.info("running %s ...", name)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ensure_model(model: str | None) -> str:
    if model:
        return model
    target = ROOT / ".checkpoints" / "musicgen-small-random"
    if not (target / "config.json").is_file():
        from generation.testing.checkpoints import build_checkpoint

        logger.info("building the random musicgen-small checkpoint into %s", target)
        build_checkpoint("musicgen-small-random", target)
    return str(target)


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"{platform.machine()} CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint directory or hub id")
    parser.add_argument("--stems", type=int, default=3, choices=range(1, len(STEMS) + 1))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per stem")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-throughput", action="store_true", help="skip the 4-request run")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0

    args.model = _ensure_model(args.model)
    default = "project-int8" if args.device == "cpu" else "project-bfloat16"
    paths = ["baseline", "hf-batched", "project-float32", "project-bfloat16", "project-int8"]
    rows = {name: _child(name, args) for name in paths}
    fidelity = _child("fidelity", args)
    audio_s = args.duration * args.stems
    base = rows["baseline"]["wall_s"]
    lines = [
        f"model {args.model}; {args.stems} stems x {args.duration:g} s; "
        f"{_device_name(args.device)}",
        f"{'path':<18} {'wall s':>7} {'ms/step':>8} {'RTF':>6} {'x base':>7} "
        f"{'peak MB':>8} {'serving MB':>10} {'logit err':>9}",
    ]
    for name, row in rows.items():
        weights = row.get("weights")
        error = fidelity.get(weights, {}).get("max") if weights else None
        row["ms_per_step"] = 1000 * row["wall_s"] / row["steps"]
        row["realtime_factor"] = row["wall_s"] / audio_s
        row["speedup"] = base / row["wall_s"]
        row["logits_rel_error"] = error if error is not None else 0.0
        lines.append(
            f"{name:<18} {row['wall_s']:>7.1f} {row['ms_per_step']:>8.1f} "
            f"{row['realtime_factor']:>6.2f} {row['speedup']:>7.2f} {row['peak_rss_mb']:>8.0f} "
            f"{row.get('serving_peak_rss_mb', 0):>10.0f} "
            f"{'-' if error is None else f'{error:.1e}':>9}"
        )
    lines.append(f"project path = {default} (MODEL_PRECISION=auto on {args.device})")
    throughput = {}
    if not args.no_throughput:
        throughput = {n: _child(n, args) for n in ("throughput-sequential", "throughput-batched")}
        seq, bat = throughput["throughput-sequential"], throughput["throughput-batched"]
        lines.append(
            f"throughput, {REQUESTS} concurrent requests x {args.stems} stems: one request after "
            f"another {seq['wall_s']:.1f} s, cross-request batched {bat['wall_s']:.1f} s "
            f"(batches {bat['batches']}) -> {seq['wall_s'] / bat['wall_s']:.2f}x"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        project = rows[default]
        args.json.write_text(
            json.dumps(
                {
                    "device": args.device,
                    "device_name": _device_name(args.device),
                    "baseline_wall_s": base,
                    "project_wall_s": project["wall_s"],
                    "speedup": project["speedup"],
                    "logits_rel_error": project["logits_rel_error"],
                    "peak_rss_mb": project["peak_rss_mb"],
                    "serving_peak_rss_mb": project.get("serving_peak_rss_mb"),
                    "paths": rows,
                    "fidelity": fidelity,
                    "throughput": throughput,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
