"""Peak memory of the largest request the API accepts: EnCodec decoding and post-processing.

    python benchmarks/bench_memory.py [--model DIR] [--seconds 300] [--bpm 120]
        [--stems N] [--modes chunked,one-call] [--decode-once] [--json FILE]
    python benchmarks/bench_memory.py --components [--model DIR]

Default: the largest accepted request, ``--seconds`` long and tempo-locked at ``--bpm``
(so the model generates about 12 % and two bars more), with the most stems the default
``WORKER_MEMORY_BUDGET_MB`` admits (``generation.stems.admission``). Each mode runs in its
own child process, so each peak RSS is its own: random codes (memory does not depend on
their values) decoded clip after clip as the batcher does, with the chunked decode
(``decode_frames``) or in one ``codec.decode`` call each, then every stem finished
(``finish_stem``: beat tracking, Rubber Band stretch, loudness, true-peak limiter) and
encoded to WAV in its own thread, all at once, as concurrent ``generate_stem`` activities
do. The decoded audio is mixed with a 112 BPM click track so the tempo lock really
stretches. ``--decode-once`` decodes one clip and copies it for every stem (same peak, a
fraction of the time). Only the codec's weights are loaded (``audio_encoder.*``), so the
figures are what the request adds on top of a loaded model.

``--components`` measures the memory model's constants (``MUSICGEN_SMALL`` in
``generation/engines/musicgen/memory.py``): one chunked decode's peak (40 s, several
chunks), and one stem's finishing + encoding, tempo-locked, 50 s and 300 s of output
without a decode (the slope per generated second is ``clip_mb_per_s``).

Without ``--model`` the random-weight musicgen-small checkpoint in
``.checkpoints/musicgen-small-random`` is used (build it with
``python -m generation.checkpoints musicgen-small-random .checkpoints/musicgen-small-random``).
The one-call decode of a 300 s stem needs about 13 GB: run this on a machine with room.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEMS = ["guitar", "bass", "drums", "piano", "synth", "strings", "brass", "pads"]
CLICK_BPM = 112.0
logger = logging.getLogger("bench_memory")


def _rss_mb() -> tuple[float, float]:
    """Current and peak RSS of this process since the last ``_reset_peak``, MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # Linux: restart VmHWM from the current RSS
        Path("/proc/self/clear_refs").write_text("5")


def load_codec(model_dir: Path):
    """The checkpoint's EnCodec alone (``audio_encoder.*`` weights), in eval mode."""
    from safetensors import safe_open
    from transformers import EncodecConfig, EncodecModel

    config = json.loads((model_dir / "config.json").read_text())["audio_encoder"]
    codec = EncodecModel(EncodecConfig(**config)).eval()
    state = {}
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            if key.startswith("audio_encoder."):
                state[key.removeprefix("audio_encoder.")] = f.get_tensor(key)
    codec.load_state_dict(state)
    return codec


def _clicks(samples: int, sr: int):
    import numpy as np

    audio = np.zeros(samples, np.float32)
    hit = np.exp(-np.arange(int(0.03 * sr)) / (0.005 * sr)).astype(np.float32)
    step = 60.0 / CLICK_BPM * sr
    for i in range(int(samples / step)):
        start = round(i * step)
        gain = 0.6 if i % 4 == 0 else 0.2
        audio[start : start + hit.size] += gain * hit[: samples - start]
    return audio[np.newaxis, :]


def _decode(codec, seconds: float, seed: int, chunked: bool):
    import torch

    from generation.engines.musicgen.generate import decode_frames

    frames = round(seconds * 50)
    codes = torch.randint(0, 2048, (1, 4, frames), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        if chunked:
            audio = decode_frames(codec, codes)
        else:
            audio = codec.decode(codes[None], audio_scales=[None]).audio_values
    return audio[0].float().numpy()


def _finish(raw, sr: int, stem: str, plan) -> int:
    from generation.audio.codecs import encode_audio
    from generation.request import OutputFormat, Stem
    from generation.stems.finish import finish_stem

    audio = raw + _clicks(raw.shape[-1], sr)
    finished = finish_stem(audio, sr, Stem(stem), plan)
    return len(encode_audio(finished.audio, sr, OutputFormat.WAV))


def child(args: argparse.Namespace) -> dict:
    """One measurement in this process: decode ``args.stems`` clips (``args.mode``
    chunked, one-call, or none: no decode), then finish them."""
    import numpy as np
    import torch

    from generation.request import GenerationParameters
    from generation.stems.grid import plan_grid

    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    tempo = {"target_bpm": args.bpm} if args.bpm > 0 else {}
    # A seed gives the plan a key, so finishing runs the harmony check as the service does.
    plan = plan_grid(GenerationParameters(duration_seconds=args.seconds, **tempo), seed=0)
    seconds = plan.generation_s
    sr = 32_000
    base, _ = _rss_mb()
    _reset_peak()
    started = time.perf_counter()
    raws = []
    for i in range(args.stems):
        if args.mode == "none":  # finishing alone: quiet noise under the clicks
            noise = np.random.default_rng(i).standard_normal((1, round(seconds * sr)))
            raws.append((0.01 * noise).astype(np.float32))
        elif args.decode_once and raws:
            raws.append(raws[0].copy())
        else:
            raws.append(_decode(codec, seconds, i, args.mode == "chunked"))
    decoded = time.perf_counter()
    after_decode, decode_peak = _rss_mb()
    _reset_peak()
    if args.finish:
        with ThreadPoolExecutor(max_workers=args.stems) as pool:
            sizes = list(pool.map(_finish, raws, [sr] * args.stems, STEMS, [plan] * args.stems))
    else:
        sizes = []
    _, finish_peak = _rss_mb()
    peak = max(decode_peak, finish_peak)
    return {
        "mode": args.mode,
        "stems": args.stems,
        "output_s": round(plan.duration_s, 3),
        "generation_s": seconds,
        "baseline_rss_mb": round(base, 1),
        "decode_peak_over_baseline_mb": round(decode_peak - base, 1),
        "rss_after_decode_mb": round(after_decode, 1),
        "finish_peak_over_baseline_mb": round(finish_peak - base, 1),
        "peak_over_baseline_mb": round(peak - base, 1),
        "peak_rss_mb": round(peak, 1),
        "decode_s": round(decoded - started, 1),
        "finish_s": round(time.perf_counter() - decoded, 1),
        "wav_bytes": sizes,
    }


def _run_child(args: argparse.Namespace, **overrides) -> dict:
    options = {**vars(args), **overrides}
    command = [sys.executable, __file__, "--child", "--model", str(options["model"])]
    for key in ("mode", "stems", "seconds", "bpm", "threads"):
        command += [f"--{key}", str(options[key])]
    command += ["--decode-once"] if options["decode_once"] else []
    command += [] if options["finish"] else ["--no-finish"]
    logger.info("running %s", " ".join(command[2:]))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    logger.info("%s", result)
    return result


def largest_accepted_stems(seconds: float, bpm: float) -> tuple[int, float]:
    """The most stems of ``seconds`` at ``bpm`` the default budget admits, and its MB."""
    from generation.errors import InvalidRequestError
    from generation.request import parse_request
    from generation.settings import GenerationSettings
    from generation.stems.admission import check_fits

    settings = GenerationSettings()
    best = 0
    for n in range(1, len(STEMS) + 1):
        parameters = {"duration_seconds": seconds, **({"target_bpm": bpm} if bpm > 0 else {})}
        body = {"generation_request_id": "bench", "target_stems": STEMS[:n]}
        try:
            check_fits(parse_request({**body, "parameters": parameters}), settings)
        except InvalidRequestError:
            break
        best = n
    return best, float(settings.worker_memory_budget_mb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / ".checkpoints/musicgen-small-random")
    parser.add_argument("--seconds", type=float, default=300.0, help="output length, s")
    parser.add_argument("--bpm", type=float, default=120.0, help="tempo lock; 0: none")
    parser.add_argument("--stems", type=int, default=0, help="0: the most the budget admits")
    parser.add_argument("--modes", default="chunked,one-call")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--decode-once", action="store_true")
    parser.add_argument("--components", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="chunked", help=argparse.SUPPRESS)
    parser.add_argument("--no-finish", dest="finish", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    report: dict = {"model": str(args.model)}
    if args.components:
        # A chunked decode's peak does not grow with the clip beyond its output (0.125 MB/s):
        # 40 s already runs several chunks.
        report["decode"] = _run_child(
            args, mode="chunked", stems=1, seconds=40, bpm=0, finish=False
        )
        short = _run_child(args, mode="none", stems=1, seconds=50, bpm=120)
        long = _run_child(args, mode="none", stems=1, seconds=300, bpm=120)
        report["finish_short"], report["finish_long"] = short, long
        slope = (long["finish_peak_over_baseline_mb"] - short["finish_peak_over_baseline_mb"]) / (
            long["generation_s"] - short["generation_s"]
        )
        report["clip_mb_per_s"] = round(slope, 2)
        report["decode_peak_mb"] = report["decode"]["decode_peak_over_baseline_mb"]
    else:
        stems, budget = largest_accepted_stems(args.seconds, args.bpm)
        report["worker_memory_budget_mb"] = budget
        report["stems_admitted"] = stems
        stems = args.stems or stems
        if stems < 1:
            raise SystemExit("the default budget admits no stem of this length")
        for mode in args.modes.split(","):
            report[mode] = _run_child(args, mode=mode, stems=stems)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
