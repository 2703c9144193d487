"""Peak memory of reading a hostile upload: the old way (decode the whole file, then analyse
its first 180 s; a melody stem then resampled the whole track with a gcd-sized polyphase
filter) against the project's (``decode_excerpt``, as ``read_track`` calls it: the first 180 s only,
block by block, downmixed, refused when not usable; then the stems' 32 kHz copy by soxr).

    .venv/bin/python benchmarks/bench_upload_memory.py [--json FILE]

Each case runs in its own child process; the figure is the child's peak RSS above what it
held after imports (MB). Tempo and key analysis are left out of both paths (the same work
on the same 180 s): this measures what reading the file costs.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

logger = logging.getLogger("bench_upload_memory")


def _silent(
    path: Path, fmt: str, subtype: str, *, rate: int, channels: int, seconds: float
) -> None:
    with sf.SoundFile(path, "w", rate, channels, subtype, format=fmt) as f:
        block = np.zeros((rate * 10, channels), dtype=np.float32)
        for _ in range(int(seconds // 10)):
            f.write(block)


def _odd_rate(path: Path, rate: int) -> None:
    sf.write(path, np.zeros(1000, np.float32), rate, format="WAV", subtype="PCM_16")


CASES = {
    "flac-8ch-10min": lambda p: _silent(p, "FLAC", "PCM_16", rate=44_100, channels=8, seconds=600),
    "flac-8ch-20min": lambda p: _silent(p, "FLAC", "PCM_16", rate=44_100, channels=8, seconds=1200),
    "wav-1000003Hz": lambda p: _odd_rate(p, 1_000_003),
    "mp3-1h-stereo": lambda p: _silent(
        p, "MP3", "MPEG_LAYER_III", rate=44_100, channels=2, seconds=3600
    ),
}


def _child(path: str, way: str) -> dict:
    from generation.audio.codecs import decode_excerpt  # imports first
    from generation.stems.track import MAX_ANALYSIS_SECONDS, excerpt_for_stems

    data = Path(path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = "ok"
    try:
        if way == "old":
            from scipy.signal import resample_poly

            from generation.audio.codecs import decode_audio

            audio, rate = decode_audio(data)
            excerpt = np.atleast_2d(audio)[:, : 180 * rate].copy()  # what was analysed
            mono = audio.mean(axis=0)  # what a melody stem resampled, whole
            common = np.gcd(32_000, rate)
            resample_poly(mono[: 30 * rate], 32_000 // common, rate // common)
            del excerpt
        else:
            excerpt = decode_excerpt(data, max_seconds=MAX_ANALYSIS_SECONDS, what="upload")
            excerpt_for_stems(excerpt)
    except (ValueError, MemoryError) as error:
        outcome = f"refused: {str(error)[:60]}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": round((peak - before) / 1024, 1), "outcome": outcome}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in CASES.items():
            path = Path(tmp) / name
            make(path)
            row = {"case": name, "file_kb": round(path.stat().st_size / 1024, 1)}
            for way in ("old", "project"):
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), way],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                try:
                    row[way] = json.loads(done.stdout.strip().splitlines()[-1])
                except (IndexError, ValueError):
                    row[way] = {"peak_mb": None, "outcome": f"crashed ({done.returncode})"}
            rows.append(row)
            logger.info(
                "%-16s %9.1f KB   old %8s MB %-28s project %6s MB %s",
                name,
                row["file_kb"],
                row["old"]["peak_mb"],
                row["old"]["outcome"][:28],
                row["project"]["peak_mb"],
                row["project"]["outcome"],
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
