"""Command-line face of the generation core, for musicians working locally.

    python -m generation generate --stems guitar bass drums --duration 10 --bpm 120 \\
        --style rock --prompt "energetic rock" --seed 7 --out OUT_DIR [--model ID_OR_DIR] \\
        [--bars 8] [--time-signature 4/4] [--loop] [--follow TRACK.wav]
        [--engine musicgen|ace_step] [--ace-step-model ID_OR_DIR]

writes ``OUT_DIR/<stem>.wav``, the preview ``OUT_DIR/mix.wav`` and ``OUT_DIR/manifest.json``
(with ``--engine ace_step`` and no ``--follow``, also the guide the stems came from,
``OUT_DIR/guide.flac``).
With a tempo (``--bpm`` or the ``--follow`` track's) the stems are tempo-locked and cut to
whole bars, as the service does. Exit codes: 0 done, 2 bad input, 1 the model could not be
loaded or generation failed; errors are one line on stderr.

    python -m generation conform INPUT --bpm 120 --bars 8 [--time-signature 4/4] --out OUTPUT

locks an audio file to a tempo and cuts it to whole bars (``generation.audio.conform``);
OUTPUT's format follows its extension. Exit 2 on an unreadable input or bad option.

    python -m generation studio OUT_DIR [--port 8765] [--host 127.0.0.1]

serves the studio page over a folder ``generate`` wrote, read-only, until Ctrl-C
(``generation.studio.local``). Exit 2 when the folder has no manifest or the address is
taken.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm
from transformers.utils import logging as transformers_logging

from generation.audio.codecs import Excerpt, decode_audio
from generation.audio.conform import conform
from generation.engines.ace_step.engine import AceStepEngine
from generation.engines.musicgen.loader import model_holder
from generation.errors import GenerationError, InvalidRequestError, SettingsError
from generation.request import (
    Engine,
    GenerationRequest,
    OutputFormat,
    parse_request,
    parse_time_signature,
    quarter_notes_per_beat,
)
from generation.settings import GenerationSettings, load_generation_settings
from generation.stems.context import (
    context_audio,
    finish_guide,
    guide_batch,
    render_parts,
    write_guide,
)
from generation.stems.grid import GridPlan, plan_grid
from generation.stems.output import LocalFolder, finish_set, write_stem
from generation.stems.prompts import known_stems
from generation.stems.record import RenderedStem
from generation.stems.render import render_stems, stem_melody
from generation.stems.track import as_set_warnings, excerpt_for_stems, read_track
from generation.studio import local as studio_local

logger = logging.getLogger("generation")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generation", description=__doc__.split("\n")[0]
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    gen = verbs.add_parser("generate", help="generate stems into a folder")
    gen.add_argument(
        "--stems",
        nargs="+",
        required=True,
        metavar="STEM",
        help=f"one or more of: {', '.join(known_stems())}",
    )
    gen.add_argument("--duration", type=float, default=None, help="seconds per stem (default 10)")
    gen.add_argument(
        "--bpm", type=float, default=None, help="tempo the stems are locked to (quarter notes)"
    )
    gen.add_argument("--bars", type=int, default=None, help="length in bars (needs a tempo)")
    gen.add_argument("--time-signature", default="4/4", help="e.g. 4/4, 3/4, 6/8")
    gen.add_argument("--loop", action="store_true", help="seamless loops (crossfaded seam)")
    gen.add_argument(
        "--follow",
        type=Path,
        default=None,
        metavar="TRACK",
        help="an audio file to follow: its tempo, downbeat, key (and chords, melody models)",
    )
    gen.add_argument(
        "--key",
        default=None,
        help="the key of every stem, e.g. 'A minor' (default: the followed track's, else "
        "one chosen from the seed)",
    )
    gen.add_argument(
        "--chords",
        default=None,
        help="one chord per bar, repeating, e.g. 'Am F C G' (default: the followed track's); "
        "with a tempo a melody model also follows them as a guide",
    )
    gen.add_argument("--style", default="", help="e.g. rock, jazz, lofi")
    gen.add_argument("--prompt", default="", help="free words added to every stem's prompt")
    gen.add_argument(
        "--seed", type=int, default=None, help="same seed -> same audio (default random)"
    )
    gen.add_argument(
        "--format",
        dest="output_format",
        default="wav",
        choices=[f.value for f in OutputFormat],
        help="wav = 16-bit PCM",
    )
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--guidance-scale", type=float, default=None)
    gen.add_argument("--out", type=Path, required=True, help="output folder (created)")
    gen.add_argument(
        "--engine",
        default="musicgen",
        choices=[e.value for e in Engine],
        help="musicgen (default), or ace_step: stems over --follow's track (lego), else "
        "extracted from one guide performance (guide.flac)",
    )
    gen.add_argument("--model", default=None, help="hub id or local directory (MUSICGEN_MODEL)")
    gen.add_argument(
        "--ace-step-model", default=None, help="ACE-Step base checkpoint (ACE_STEP_MODEL)"
    )
    gen.add_argument("--cache-dir", default=None, help="model cache directory (MODEL_CACHE_DIR)")
    gen.add_argument("--gpu", action="store_true", help="use CUDA when present (USE_GPU)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    con = verbs.add_parser("conform", help="lock an audio file to a tempo and cut it to bars")
    con.add_argument("input", type=Path, help="any file libsndfile reads (wav, flac, ogg, ...)")
    con.add_argument("--bpm", type=float, required=True, help="target tempo")
    con.add_argument("--bars", type=int, required=True, help="length of the result in bars")
    con.add_argument("--time-signature", default="4/4", help="beats per bar / note value")
    con.add_argument(
        "--source-bpm", type=float, default=None, help="tempo of INPUT (default: estimated)"
    )
    con.add_argument(
        "--downbeat", type=float, default=None, help="INPUT's first downbeat, s (estimated)"
    )
    con.add_argument("--out", type=Path, required=True, help="output file; format from extension")

    stu = verbs.add_parser("studio", help="hear a generated folder in the browser (read-only)")
    stu.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="a folder 'generate' wrote")
    stu.add_argument(
        "--port", type=int, default=studio_local.DEFAULT_PORT, help="port (0: any free one)"
    )
    stu.add_argument(
        "--host",
        default=studio_local.DEFAULT_HOST,
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    return parser


def _studio(args: argparse.Namespace) -> int:
    try:
        studio_local.serve(args.out_dir, args.host, args.port)
    except studio_local.FolderError as error:
        raise InvalidRequestError(str(error)) from None
    except OSError as error:
        where = f"{args.host}:{args.port}"
        raise InvalidRequestError(f"cannot listen on {where}: {error.strerror}") from None
    return 0


def _time_signature(text: str) -> tuple[int, int]:
    try:
        return parse_time_signature(text)
    except ValueError:
        raise InvalidRequestError(
            f"--time-signature must look like 4/4, 3/4 or 6/8, got {text!r}"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidRequestError(f"cannot read {path}: {error.strerror}") from None


def _read_audio(path: Path) -> tuple[np.ndarray, int]:
    """``path`` as float32 ``[channels, samples]`` and its rate; one clear error if not."""
    try:
        return decode_audio(_read_bytes(path), what=str(path))
    except ValueError as error:
        raise InvalidRequestError(str(error)) from None


def _conform(args: argparse.Namespace) -> int:
    beats_per_bar, _ = _time_signature(args.time_signature)
    if not args.bpm > 0 or args.bars < 1:
        raise InvalidRequestError("--bpm must be > 0 and --bars >= 1")
    audio, sample_rate = _read_audio(args.input)
    # --bpm counts quarter notes, as in a DAW and the service; conform counts beat units.
    pulse = quarter_notes_per_beat(args.time_signature)
    try:
        audio = conform(
            audio,
            sample_rate,
            target_bpm=args.bpm / pulse,
            bars=args.bars,
            beats_per_bar=beats_per_bar,
            source_bpm=None if args.source_bpm is None else args.source_bpm / pulse,
            downbeat_s=args.downbeat,
        )
    except ValueError as error:
        raise InvalidRequestError(str(error)) from error
    try:
        sf.write(args.out, np.ascontiguousarray(audio.T), sample_rate)
    except (sf.LibsndfileError, TypeError, ValueError) as error:
        raise InvalidRequestError(f"cannot write {args.out}: {error}") from error
    logger.info("wrote %s: %d bars at %g BPM", args.out, args.bars, args.bpm)
    return 0


def _generate(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC).isoformat()
    overrides = {
        "musicgen_model": args.model,
        "ace_step_model": args.ace_step_model,
        "model_cache_dir": Path(args.cache_dir) if args.cache_dir else None,
        "use_gpu": True if args.gpu else None,
    }
    settings = load_generation_settings().model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    parameters = {
        "duration_seconds": args.duration
        if args.duration is not None
        else settings.default_duration_seconds,
        "target_bpm": args.bpm,
        "bars": args.bars,
        "time_signature": args.time_signature,
        "loop": args.loop or None,
        "key": args.key,
        "chords": args.chords,
        "style": args.style,
        "prompt": args.prompt,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "temperature": args.temperature,
        "guidance_scale": args.guidance_scale,
        "engine": args.engine,
    }
    request = parse_request(
        {
            "generation_request_id": f"cli-{uuid.uuid4().hex[:12]}",
            "target_stems": [s.lower() for s in args.stems],
            "parameters": {k: v for k, v in parameters.items() if v is not None},
            "seed": args.seed,
            "output_format": args.output_format,
            # The request model's rule "bars need a tempo" counts a followed track.
            "audio_file_id": "local-track" if args.follow is not None else None,
        }
    ).with_seed()
    excerpt = None
    upload = None
    if args.follow is not None:
        # As the service does: read what the analysis uses (bounded memory, downmixed).
        try:
            upload, excerpt = read_track(
                _read_bytes(args.follow), time_signature=args.time_signature, what=str(args.follow)
            )
        except ValueError as error:
            raise InvalidRequestError(str(error)) from None
        logger.info("%s: %s BPM, %s", args.follow, upload.bpm, upload.key)
        for warning in upload.warnings:  # what the analysis could not decide, as the service
            logger.warning("%s: %s", args.follow, warning)
    try:
        plan = plan_grid(request.parameters, upload, seed=request.seed)
    except ValueError as error:
        raise InvalidRequestError(str(error)) from None
    sink = LocalFolder(args.out)
    render = _RENDERERS[request.parameters.engine]
    rendered, model_id, guide = render(
        args, settings, request=request, plan=plan, excerpt=excerpt, sink=sink
    )
    records = [write_stem(sink, item, request) for item in rendered]
    finish_set(
        sink,
        request,
        records,
        plan=plan,
        upload=upload,
        warnings=as_set_warnings(upload.warnings) if upload is not None else (),
        audio=[item.audio for item in rendered],
        model_id=model_id,
        started_at=started_at,
        guide=guide,
    )
    logger.info(
        "wrote %d stem(s) and manifest.json to %s (seed %d)", len(rendered), args.out, request.seed
    )
    return 0


Rendered = tuple[list[RenderedStem], str, dict[str, Any] | None]


def _render_musicgen(
    args: argparse.Namespace,
    settings: GenerationSettings,
    *,
    request: GenerationRequest,
    plan: GridPlan,
    excerpt: Excerpt | None,
    sink: LocalFolder,
) -> Rendered:
    """MusicGen: every stem from its caption (and a melody model, the track's or the
    request's chords: ``stem_melody``)."""
    del sink
    loaded = model_holder(settings).get()
    melody, melody_source = stem_melody(
        plan,
        supports_melody=loaded.supports_melody,
        upload_audio=None if excerpt is None else lambda: excerpt_for_stems(excerpt),
    )
    bar = tqdm(total=None, unit="step", desc="decoding", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        rendered = render_stems(
            loaded,
            request,
            settings,
            plan=plan,
            melody=melody,
            melody_source=melody_source,
            progress=progress,
        )
    finally:
        bar.close()
    return rendered, loaded.model_id, None


def _render_ace_step(
    args: argparse.Namespace,
    settings: GenerationSettings,
    *,
    request: GenerationRequest,
    plan: GridPlan,
    excerpt: Excerpt | None,
    sink: LocalFolder,
) -> Rendered:
    """ACE-Step: lego over the followed track (its downmixed start, as read for the
    analysis), or extract from a guide written first."""
    del args
    engine = AceStepEngine.from_settings(settings)
    rate = engine.sample_rate  # loads the engine (a load failure names model and cache)
    guide = None
    if excerpt is not None:
        task, context = "lego", context_audio(excerpt.mono, excerpt.sample_rate, plan, rate)
    else:
        started = time.perf_counter()
        [raw] = engine.generate(guide_batch(request, plan))
        context, warnings = finish_guide(raw, rate, plan)
        guide = write_guide(
            sink,
            request,
            context,
            rate,
            model_id=engine.checkpoint_for("text2music"),
            generation_seconds=time.perf_counter() - started,
            warnings=warnings,
        )
        task = "extract"
    rendered = render_parts(
        engine.generate,
        request,
        plan,
        request.target_stems,
        task=task,
        context=context,
        sample_rate=rate,
        model_id=engine.checkpoint_for(task),
    )
    return rendered, engine.checkpoint_for(task), guide


_RENDERERS = {Engine.MUSICGEN: _render_musicgen, Engine.ACE_STEP: _render_ace_step}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    args = _parser().parse_args(argv)
    try:
        verb = {"conform": _conform, "studio": _studio}.get(args.verb, _generate)
        return verb(args)
    except (InvalidRequestError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write output: {error}", file=sys.stderr)
        return 1
