"""How much worker memory MusicGen work takes, in MB: the one memory model of the engine.

A request's stems run at once on one worker (the orchestrator fans them out; the batcher
puts them into one batch), so what a request needs beyond the loaded model is

    need = decode_peak_mb                          one EnCodec decode at a time
         + attention cache of its batch            min(sum per stem, the batch KV budget)
         + stems * (clip_fixed_mb                  each stem's audio and post-processing
                    + clip_mb_per_s * generation_s)

``generation_s`` is what the model generates per stem (with a tempo lock, 12 % and a bar or
two more than the output). The constants are measured on the exact musicgen-small
architecture (random weights: memory does not depend on their values) with
``benchmarks/bench_memory.py``; musicgen-medium and -large share its codec and
post-processing, and only their attention cache is larger (``kv_bytes_per_position``).
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.engines.musicgen.generate import LengthPlan, plan_length
from generation.settings import DEFAULT_EXTEND_STRIDE_SECONDS, DEFAULT_WINDOW_SECONDS

MB = 1 << 20


@dataclass(frozen=True)
class MemoryProfile:
    """Memory constants of one engine and checkpoint family, MB unless stated."""

    name: str
    decode_peak_mb: float  # one chunked EnCodec decode, whatever the clip's length
    clip_fixed_mb: float  # per stem: finishing and encoding, whatever its length
    clip_mb_per_s: float  # per stem and generated second: raw clip, finishing, encoding
    kv_bytes_per_position: int  # attention cache per decoder position and batch row, bytes
    sample_rate: int = 32_000
    frame_rate: float = 50.0
    num_codebooks: int = 4


# musicgen-small (24 decoder layers, hidden 1024; EnCodec 32 kHz, 64 filters), measured with
# ``python benchmarks/bench_memory.py --components`` (RSS peaks over the process before):
# decode_peak_mb: one chunked decode (500-frame chunks, 110 frames of context: 12.2 s of
#   audio per decoder call) peaked 740 MB at 40 s; it does not grow with the clip beyond
#   its float32 output (0.125 MB/s).
# clip_fixed_mb, clip_mb_per_s: finishing a tempo-locked stem (beat tracking, Rubber Band
#   stretch, loudness, 4x-oversampled true-peak limiter) and encoding it to WAV, raw clip
#   included, peaked 414 MB at 58 s generated and 1,388 MB at 338 s: 3.48 MB per second
#   and 211 MB besides, rounded up.
# kv_bytes_per_position: 24 layers * K and V * 1024 * 4 bytes (float32, the largest cache
#   any precision setting uses; the int8 path's fp16 cache needs half).
MUSICGEN_SMALL = MemoryProfile(
    name="musicgen-small",
    decode_peak_mb=750.0,
    clip_fixed_mb=215.0,
    clip_mb_per_s=3.5,
    kv_bytes_per_position=24 * 2 * 1024 * 4,
)


def kv_positions(plan: LengthPlan) -> int:
    """Decoder positions a clip's attention cache holds at most: its longest window, the
    context carried into a continuation window, and the 4 delay steps (a conditioning
    prefix comes on top)."""
    return max(plan.windows) + plan.prompt_frames * (len(plan.windows) > 1) + 4


def clip_kv_bytes(
    profile: MemoryProfile,
    generation_s: float,
    *,
    guided: bool,
    prefix_positions: int = 0,
    kv_bytes_per_position: int | None = None,
    window_s: float = DEFAULT_WINDOW_SECONDS,
    stride_s: float = DEFAULT_EXTEND_STRIDE_SECONDS,
) -> int:
    """Self-attention cache one clip of ``generation_s`` seconds needs, bytes: its longest
    window's positions, the carried context, a conditioning prefix (MusicGen-melody), the
    4 delay steps, twice with classifier-free guidance. ``kv_bytes_per_position``
    overrides the profile's (a loaded model knows its own)."""
    plan = plan_length(
        generation_s,
        sample_rate=profile.sample_rate,
        frame_rate=profile.frame_rate,
        num_codebooks=profile.num_codebooks,
        window_s=window_s,
        stride_s=stride_s,
    )
    positions = kv_positions(plan) + prefix_positions
    per_position = kv_bytes_per_position or profile.kv_bytes_per_position
    return positions * (2 if guided else 1) * per_position


def clip_work_bytes(profile: MemoryProfile, generation_s: float) -> int:
    """Memory one clip holds from its decode until its stem is written, bytes."""
    return round((profile.clip_fixed_mb + profile.clip_mb_per_s * generation_s) * MB)


def request_memory_mb(
    stems: int,
    generation_s: float,
    *,
    guided: bool,
    kv_budget_mb: float,
    profile: MemoryProfile = MUSICGEN_SMALL,
    window_s: float = DEFAULT_WINDOW_SECONDS,
    stride_s: float = DEFAULT_EXTEND_STRIDE_SECONDS,
) -> float:
    """Worker memory beyond the loaded model that ``stems`` stems of ``generation_s``
    generated seconds each need at once, MB (see module docstring). The attention cache
    counts at most ``kv_budget_mb`` (the batcher splits a larger batch), but never less
    than one clip's."""
    kv = clip_kv_bytes(profile, generation_s, guided=guided, window_s=window_s, stride_s=stride_s)
    kv_mb = min(stems * kv / MB, max(kv_budget_mb, kv / MB))
    work_mb = stems * clip_work_bytes(profile, generation_s) / MB
    return profile.decode_peak_mb + kv_mb + work_mb
