"""Generate clips with ACE-Step 1.5: text2music (the guide), lego and extract (the stems).

How diffusers' ``AceStepPipeline`` builds a generation (0.42), which this module follows
step for step so that one clip in fp32 comes out identical to a direct pipeline call:

1. Text. The caption goes into ACE-Step's SFT template: ``# Instruction`` (the task's
   sentence: text2music "Fill the audio semantic mask based on the given conditions:",
   lego "Generate the BASS track based on the audio context:", extract "Extract the BASS
   track from the audio:"), ``# Caption`` (the prompt) and ``# Metas`` (``bpm``,
   ``timesignature`` as the beats per bar, e.g. "4", ``keyscale`` such as "A minor", and
   ``duration`` in whole seconds; "N/A" where unknown). The Qwen3 text encoder runs over
   that text; the lyrics ("# Languages / # Lyric", empty for instrumental stems) only pass
   through its embedding table. Key, tempo and metre are therefore native inputs, not words
   the model has to read out of a prompt.
2. Conditions. ``condition_encoder`` packs text, lyrics and a timbre reference (the learned
   silence latent when there is none) into the DiT's cross-attention sequence.
3. Source. lego and extract take ``src_audio`` (48 kHz stereo): the VAE encodes it and a
   sample of its posterior becomes the context latents (25 latent frames per second); the
   clip is as long as the source. text2music uses the silence latent instead. A chunk mask
   of ones (generate everywhere) is appended.
4. Denoising. Flow matching from noise (seeded), ``num_inference_steps`` Euler steps over
   ACE-Step's shifted schedule (``shift`` 3). Base/SFT checkpoints use APG guidance against
   the learned ``null_condition_emb`` (``guidance_scale`` 7 by default, one batched DiT pass
   for conditional + null); turbo checkpoints are guidance-distilled and run one pass per
   step with guidance ignored.
5. Decode. The VAE turns latents into 48 kHz stereo; each clip is normalised to a -1 dBFS
   peak (after dividing by its peak if it exceeds 1).

Which checkpoint does which task (ACE-Step 1.5's model zoo): ``acestep-v15-base`` (50
steps, CFG) supports all six tasks, text2music/cover/repaint/extract/lego/complete; the
``sft`` (50 steps, CFG) and ``turbo`` (8 steps, no CFG) variants support text2music, cover
and repaint only. A stem service needs lego and extract, so it needs the base variant; a
turbo checkpoint can only make the guide.

What this module adds: the stems of one request go through the DiT together. Each clip's
conditions are encoded on their own (exactly as a one-clip pipeline call), then padded to a
common length with a cross-attention mask, so padding cannot change what a clip attends to;
the source is VAE-encoded once and each clip draws its own posterior sample; noise comes
from each clip's own seed. The batch is then one DiT pass per step for all clips (with
guidance, 2 x clips rows) instead of one per clip.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance
from diffusers.models.transformers.ace_step_transformer import (
    _ace_step_rotary_freqs,
    _create_4d_mask,
    _is_flash_attention_backend,
)

logger = logging.getLogger(__name__)

# The track names ACE-Step was trained with (lego/extract instructions name one of them).
TRACK_NAMES = (
    "woodwinds",
    "brass",
    "fx",
    "synth",
    "strings",
    "percussion",
    "keyboard",
    "guitar",
    "bass",
    "drums",
    "backing_vocals",
    "vocals",
)

# This service's stem names -> ACE-Step's track names.
STEM_TRACKS = {
    "guitar": "guitar",
    "bass": "bass",
    "drums": "drums",
    "piano": "keyboard",
    "keys": "keyboard",
    "synth": "synth",
    "pads": "synth",
    "strings": "strings",
    "brass": "brass",
    "vocals": "vocals",
    "percussion": "percussion",
}

# Offset between a clip's noise seed and the seed of its source-posterior sample, so the two
# draws never share a stream (nor collide with a neighbouring clip's seed).
SOURCE_SEED_OFFSET = 0x9E3779B9


class Task(StrEnum):
    """ACE-Step tasks this service uses."""

    TEXT2MUSIC = "text2music"  # a full performance from text and metadata (the guide)
    LEGO = "lego"  # one track generated over the given audio
    EXTRACT = "extract"  # one track taken out of the given audio


SOURCE_TASKS = frozenset({Task.LEGO, Task.EXTRACT})


def track_for_stem(stem: str) -> str:
    """ACE-Step's track name for one of this service's stems; raises ``ValueError``."""
    try:
        return STEM_TRACKS[stem]
    except KeyError:
        raise ValueError(f"ACE-Step has no track for stem {stem!r}") from None


@dataclass(frozen=True)
class Clip:
    """One clip to generate."""

    task: Task
    prompt: str  # the caption: style, instruments, mood
    seed: int
    track: str | None = None  # ACE-Step track name (lego/extract)
    lyrics: str = ""


@dataclass(frozen=True)
class Musical:
    """What every clip of a batch shares."""

    duration_s: float  # seconds; with a source, the source's length wins for the latents
    bpm: int | None = None  # quarter notes per minute
    keyscale: str | None = None  # e.g. "A minor"
    timesignature: str | None = None  # beats per bar, e.g. "4"


@dataclass(frozen=True)
class Sampling:
    """Denoising settings; defaults are the base variant's."""

    steps: int = 50
    guidance_scale: float = 7.0  # APG scale; ignored by turbo checkpoints
    shift: float = 3.0


@dataclass
class PhaseTimes:
    """Seconds spent per phase of one ``generate_clips`` call."""

    condition_s: float = 0.0  # text encoder + condition encoder (+ source VAE encode)
    dit_step_s: list[float] = field(default_factory=list)  # one entry per denoising step
    decode_s: float = 0.0  # VAE decode + normalisation

    @property
    def dit_s(self) -> float:
        return sum(self.dit_step_s)


def validate_clips(clips: Sequence[Clip], *, has_source: bool, is_turbo: bool) -> None:
    """Raise ``ValueError`` for a batch this engine cannot run."""
    if not clips:
        raise ValueError("no clips to generate")
    for clip in clips:
        if clip.task in SOURCE_TASKS:
            if not has_source:
                raise ValueError(f"the {clip.task.value} task needs source audio")
            if is_turbo:
                raise ValueError(
                    f"the {clip.task.value} task needs an ACE-Step base checkpoint; "
                    "turbo checkpoints support text2music, cover and repaint only"
                )
            if clip.track not in TRACK_NAMES:
                raise ValueError(f"unknown ACE-Step track {clip.track!r}; known: {TRACK_NAMES}")
        elif has_source:
            raise ValueError("text2music takes no source audio")


def _encode_clip(
    pipe: Any, clip: Clip, musical: Musical, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention sequence ``[1, L, H]`` and its mask ``[1, L]`` for one clip."""
    instruction = pipe._get_task_instruction(task_type=clip.task.value, track_name=clip.track)
    text, text_mask, lyric, lyric_mask = pipe.encode_prompt(
        prompt=clip.prompt,
        lyrics=clip.lyrics,
        device=device,
        audio_duration=musical.duration_s,
        instruction=instruction,
        bpm=musical.bpm,
        keyscale=musical.keyscale,
        timesignature=musical.timesignature,
    )
    frames = math.ceil(30 * pipe.latents_per_second)  # the timbre encoder's fixed window
    timbre = pipe.condition_encoder.silence_latent[:, :frames, :].to(device=device, dtype=dtype)
    return pipe.condition_encoder(
        text_hidden_states=text,
        text_attention_mask=text_mask,
        lyric_hidden_states=lyric,
        lyric_attention_mask=lyric_mask,
        refer_audio_acoustic_hidden_states_packed=timbre.contiguous(),
        refer_audio_order_mask=torch.zeros(1, device=device, dtype=torch.long),
    )


def _pad_conditions(
    encoded: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack per-clip sequences into ``[B, Lmax, H]`` and a key mask ``[B, Lmax]`` (None
    when every clip has the same length, so a single clip runs the unmasked code path)."""
    longest = max(states.shape[1] for states, _ in encoded)
    rows, masks = [], []
    for states, mask in encoded:
        missing = longest - states.shape[1]
        rows.append(torch.nn.functional.pad(states, (0, 0, 0, missing)))
        masks.append(torch.nn.functional.pad(mask.bool(), (0, missing), value=False))
    stacked_mask = torch.cat(masks)
    # The packed sequence puts valid tokens first, but a clip's own padding (if any) must
    # stay masked too: only an all-valid batch may drop the mask.
    return torch.cat(rows), (None if bool(stacked_mask.all()) else stacked_mask)


def dit_forward(
    transformer: Any,
    hidden_states: torch.Tensor,
    *,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    context_latents: torch.Tensor,
    encoder_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``AceStepTransformer1DModel.forward`` with a cross-attention key mask.

    diffusers' forward passes no mask to cross-attention (one clip per call has no padding);
    a batch of clips with different condition lengths needs one. Same operations, in the
    same order, as the library's forward; ``encoder_mask=None`` computes exactly what it does.
    Shapes: hidden/context ``[B, T, C]``/``[B, T, 2C]``, timestep ``[B]``, encoder states
    ``[B, L, H]``, mask ``[B, L]`` (True = attend). Returns the velocity ``[B, T, C]``.
    """
    tr = transformer
    temb_t, proj_t = tr.time_embed(timestep)
    temb_r, proj_r = tr.time_embed_r(timestep - timestep)
    temb = temb_t + temb_r
    timestep_proj = proj_t + proj_r

    hidden = torch.cat([context_latents, hidden_states], dim=-1)
    length = hidden.shape[1]
    if length % tr.patch_size:
        pad = tr.patch_size - length % tr.patch_size
        hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad), mode="constant", value=0)
    hidden = tr.proj_in_conv(hidden.transpose(1, 2)).transpose(1, 2)
    encoder = tr.condition_embedder(encoder_hidden_states)

    seq = hidden.shape[1]
    rotary = _ace_step_rotary_freqs(seq, tr.head_dim, tr.rope_theta, hidden.device, hidden.dtype)
    sliding = None
    if not _is_flash_attention_backend(tr.layers[0].self_attn.processor):
        sliding = _create_4d_mask(
            seq_len=seq,
            dtype=hidden.dtype,
            device=hidden.device,
            sliding_window=tr.config.sliding_window,
            is_sliding_window=True,
            is_causal=False,
        )
    # Batch and length vary by request: compiled blocks (ACE_STEP_COMPILE) must not
    # specialise on them. No effect in eager mode.
    dynamic = [(hidden, (0, 1)), (timestep_proj, (0,)), (encoder, (0, 1))]
    dynamic += [(sliding, (2, 3))] if sliding is not None else []
    dynamic += [(encoder_mask, (0, 1))] if encoder_mask is not None else []
    for tensor, dims in dynamic:
        for dim in dims:
            torch._dynamo.maybe_mark_dynamic(tensor, dim)
    for kind, layer in zip(tr.layer_types, tr.layers, strict=True):
        hidden = layer(
            hidden_states=hidden,
            position_embeddings=rotary,
            temb=timestep_proj,
            attention_mask=sliding if kind == "sliding_attention" else None,
            encoder_hidden_states=encoder,
            encoder_attention_mask=encoder_mask,
        )
    shift, scale = (tr.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    hidden = (tr.norm_out(hidden) * (1 + scale) + shift).type_as(hidden)
    hidden = tr.proj_out_conv(hidden.transpose(1, 2)).transpose(1, 2)
    return hidden[:, :length, :]


def _source_latents(
    pipe: Any,
    clips: Sequence[Clip],
    source: np.ndarray,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``[B, T, C]`` posterior samples of the source, one per clip (its own seed)."""
    audio = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))
    audio = audio.unsqueeze(0).to(device=device, dtype=pipe.vae.dtype)
    posterior = pipe.vae.encode(audio).latent_dist
    samples = []
    for clip in clips:
        generator = torch.Generator(device=device).manual_seed(clip.seed + SOURCE_SEED_OFFSET)
        samples.append(posterior.sample(generator=generator).transpose(1, 2).to(dtype))
    return torch.cat(samples)


def _silence_latents(
    pipe: Any, batch: int, length: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``[B, T, C]``: the learned silence latent, tiled to ``length`` frames (text2music)."""
    silence = pipe.condition_encoder.silence_latent.to(device=device, dtype=dtype)
    repeats = -(-length // silence.shape[1])
    return silence.repeat(1, repeats, 1)[:, :length, :].expand(batch, -1, -1).contiguous()


def _decode(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """Waveform ``[channels, samples]`` float32 at the VAE's rate, peak -1 dBFS, for one clip
    ``[1, T, C]`` (decoded one clip at a time to bound the VAE's activation memory)."""
    audio = pipe.vae.decode(latents.transpose(1, 2).to(pipe.vae.dtype)).sample.float()
    peak = audio.abs().amax(dim=[1, 2], keepdim=True)
    if torch.any(peak > 1.0):
        audio = audio / peak.clamp(min=1.0)
    peak = audio.abs().amax(dim=[1, 2], keepdim=True).clamp(min=1e-6)
    audio = audio * (10.0 ** (-1.0 / 20.0) / peak)
    return audio[0].cpu().numpy()


@dataclass
class _Prepared:
    """A batch ready for denoising (with guidance, conditions/mask/context are doubled:
    conditional rows first, then the null condition)."""

    noise: torch.Tensor  # [B, T, C]
    conditions: torch.Tensor  # [B or 2B, L, H]
    mask: torch.Tensor | None  # [B or 2B, L]
    context: torch.Tensor  # [B or 2B, T, 2C]


def _prepare(
    pipe: Any,
    clips: Sequence[Clip],
    musical: Musical,
    source: np.ndarray | None,
    do_cfg: bool,
) -> _Prepared:
    """Conditions, source/context latents and seeded noise, as the pipeline builds them."""
    device = pipe._execution_device
    dtype = pipe.transformer.dtype
    acoustic = pipe.transformer.config.audio_acoustic_hidden_dim
    conditions, mask = _pad_conditions(
        [_encode_clip(pipe, clip, musical, device, dtype) for clip in clips]
    )
    if source is not None:
        src_latents = _source_latents(pipe, clips, source, device, dtype)
    else:
        length = math.ceil(musical.duration_s * pipe.latents_per_second)
        src_latents = _silence_latents(pipe, len(clips), length, device, dtype)
    length = src_latents.shape[1]
    chunk_mask = torch.ones(len(clips), length, acoustic, device=device, dtype=dtype)
    context = torch.cat([src_latents, chunk_mask], dim=-1)
    noise = torch.cat(
        [
            torch.randn(
                (1, length, acoustic),
                generator=torch.Generator(device=device).manual_seed(clip.seed),
                device=device,
                dtype=dtype,
            )
            for clip in clips
        ]
    )
    if do_cfg:
        null = pipe.condition_encoder.null_condition_emb.to(device=device, dtype=conditions.dtype)
        conditions = torch.cat([conditions, null.expand_as(conditions)])
        context = torch.cat([context, context])
        mask = None if mask is None else torch.cat([mask, mask])
    return _Prepared(noise, conditions, mask, context)


def _denoise(
    pipe: Any,
    batch: _Prepared,
    *,
    sampling: Sampling,
    guidance: float,
    times: PhaseTimes,
    on_step: Callable[[int, int], None] | None,
) -> torch.Tensor:
    """Flow-matching Euler steps from ``batch.noise``; the final latents ``[B, T, C]``."""
    device = pipe._execution_device
    do_cfg = guidance > 1.0
    schedule = pipe._get_timestep_schedule(
        num_inference_steps=sampling.steps, shift=sampling.shift, device=device, dtype=torch.float32
    )
    scheduler = pipe.scheduler
    scheduler.set_timesteps(sigmas=schedule.tolist(), device=device)
    momentum = MomentumBuffer(momentum=-0.75) if do_cfg else None
    xt = batch.noise
    total = len(scheduler.timesteps)
    for step, t in enumerate(scheduler.timesteps):
        started = time.perf_counter()
        model_in = torch.cat([xt, xt]) if do_cfg else xt
        timestep = float(t) * torch.ones((model_in.shape[0],), device=device, dtype=xt.dtype)
        velocity = dit_forward(
            pipe.transformer,
            model_in,
            timestep=timestep,
            encoder_hidden_states=batch.conditions,
            encoder_mask=batch.mask,
            context_latents=batch.context,
        )
        if do_cfg:
            cond, uncond = velocity.chunk(2)
            velocity = normalized_guidance(
                pred_cond=cond,
                pred_uncond=uncond,
                guidance_scale=guidance - 1.0,
                momentum_buffer=momentum,
                eta=0.0,
                norm_threshold=2.5,
                use_original_formulation=True,
                norm_dim=(1,),
            )
        xt = scheduler.step(velocity, t, xt, return_dict=False)[0]
        times.dit_step_s.append(time.perf_counter() - started)
        if on_step is not None:
            on_step(step + 1, total)
    return xt


@torch.no_grad()
def generate_clips(
    pipe: Any,
    clips: Sequence[Clip],
    musical: Musical,
    *,
    source: np.ndarray | None = None,
    sampling: Sampling | None = None,
    times: PhaseTimes | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """Generate ``clips`` in one batch through the DiT; one array per clip.

    ``source``: 48 kHz audio ``[channels, samples]`` for lego/extract (every clip of the
    batch works over the same source; the clips are as long as it). Returns float32
    ``[channels, samples]`` at ``pipe.sample_rate`` (48 kHz stereo for the released VAE).
    ``times``, when given, is filled with the time of each phase; ``on_step(step, total)``
    is called after each denoising step.
    """
    sampling = sampling or Sampling()
    times = times if times is not None else PhaseTimes()
    validate_clips(clips, has_source=source is not None, is_turbo=pipe.is_turbo)
    if source is not None:
        duration = source.shape[-1] / pipe.sample_rate
        musical = Musical(duration, musical.bpm, musical.keyscale, musical.timesignature)
    guidance = 1.0 if pipe.is_turbo else sampling.guidance_scale

    started = time.perf_counter()
    batch = _prepare(pipe, clips, musical, source, do_cfg=guidance > 1.0)
    times.condition_s = time.perf_counter() - started
    latents = _denoise(
        pipe, batch, sampling=sampling, guidance=guidance, times=times, on_step=on_step
    )
    started = time.perf_counter()
    audio = [_decode(pipe, latents[i : i + 1]) for i in range(len(clips))]
    times.decode_s = time.perf_counter() - started
    logger.info(
        "ACE-Step: %d clip(s) x %.1f s: conditions %.2f s, DiT %.2f s (%d steps), decode %.2f s",
        len(clips),
        musical.duration_s,
        times.condition_s,
        times.dit_s,
        len(times.dit_step_s),
        times.decode_s,
    )
    return audio
