"""Beat, downbeat, tempo and key analysis on rendered multi-instrument music, side by side.

    .venv/bin/python -m benchmarks.musical_eval [--set dev|dev2|dev3|held-out|both|all]
        [--pieces YOURS.json] [--peers PYTHON] [--analysers project,librosa]

Builds (and caches under ``benchmarks/.cache/musical``) the pieces of
``benchmarks/musical_pieces.py``: multi-instrument arrangements and Bach chorales rendered
by FluidSynth with known tempo, first downbeat, meter and key. Then, per set, prints one
column per analyser:

- ``project (before)``: ``benchmarks/musical_baseline.py``, the project's analysis before
  issue 12 kept verbatim, given the meter as a request gives it;
- ``project``: ``generation.audio.beats.analyze_beats`` / ``generation.audio.key``;
- ``librosa``: ``beat_track`` tempo, its first beat as the downbeat, and chroma summed and
  correlated with Temperley's key profiles;
- ``essentia`` (RhythmExtractor2013, KeyExtractor) and ``madmom`` (RNN+DBN beats and
  downbeats given the meter, tempo fitted through its beats, CNN key) when ``--peers`` names
  a Python that has them: a separate environment, never the product's (essentia is AGPL,
  madmom's models are non-commercial).

Rows: tempo within 0.5 BPM of the truth (quarter notes per minute); tempo right up to
metrical errors (x2, x3, x1/2, x1/3, x3/2, x2/3 within 4 %); the first downbeat within
20 ms; some downbeat within 20 ms (the bar phase); key, MIREX weighted score (1 right,
0.5 a fifth above, 0.3 relative, 0.2 parallel; pieces with a key truth); how many wrong
and right keys the project reported uncertain (its warning); chords per bar
(the project's ``estimate_chords`` on the true bar lines, right when root and major/minor
third match the score's chord, and again when root and quality, sevenths included, match;
the mean share of bars over the arrangements); and conform: the
piece stretched by ``generation.audio.conform.conform`` to 8 % off its tempo with the analyser's
tempo and downbeat, then checked in the output (exact length, and every bar line within
20 ms of where it belongs, found from click markers carried through the stretch in an
extra channel). ``truth`` runs the same conform with the true tempo and downbeat.

``--pieces`` runs all of this on a set of your own instead (audio files and their truth
listed in a JSON file, ``load_pieces``), so a set made elsewhere is measured the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf

from benchmarks.musical_pieces import PITCH_CLASSES, SETS, Piece, build_set
from generation.audio.harmony import QUALITIES, note_pitch_class, parse_chord, parse_key
from generation.request import bar_seconds

logger = logging.getLogger("musical_eval")

CACHE = Path(__file__).resolve().parent / ".cache" / "musical"
TEMPO_TOLERANCE_BPM = 0.5
DOWNBEAT_TOLERANCE_S = 0.02
METRICAL_FACTORS = (1.0, 2.0, 0.5, 3.0, 1 / 3, 1.5, 2 / 3)
CONFORM_RATIO = 1.08  # target tempo = truth x this (alternately / this)
MARKER_S = 0.004  # click length: a 2 kHz Hann-windowed burst, centred MARKER_S / 2 late

# Temperley (1999, "What's key for key?") major and minor profiles, tonic first.
TEMPERLEY_MAJOR = np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0])
TEMPERLEY_MINOR = np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])

Result = dict[str, Any]  # {"bpm": float|None, "first_downbeat_s": float|None, "key": str|None}

_ENHARMONIC = {
    "Db": "C#",
    "Eb": "D#",
    "Gb": "F#",
    "Ab": "G#",
    "Bb": "A#",
    "Cb": "B",
    "Fb": "E",
    "E#": "F",
    "B#": "C",
}


def _parse_key(label: str | None) -> tuple[int, str] | None:
    if not label:
        return None
    tonic, mode = label.split()[:2]
    tonic = _ENHARMONIC.get(tonic, tonic)
    return PITCH_CLASSES.index(tonic), mode.lower()


def mirex_key_score(reference: str, estimate: str | None) -> float:
    """MIREX weighted key score (as ``mir_eval.key.weighted_score``)."""
    ref, est = _parse_key(reference), _parse_key(estimate)
    if ref is None or est is None:
        return 0.0
    (rt, rm), (et, em) = ref, est
    if (rt, rm) == (et, em):
        return 1.0
    if rm == em and (et - rt) % 12 == 7:
        return 0.5
    if rm != em:
        relative = (rt + 3) % 12 if rm == "minor" else (rt - 3) % 12
        if et == relative:
            return 0.3
        if et == rt:
            return 0.2
    return 0.0


def _load(path: Path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.T, int(sr)


# --- analysers in this environment -------------------------------------------------------


def run_project_before(audio: np.ndarray, sr: int, piece: Piece) -> Result:
    from benchmarks import musical_baseline as musical

    result: Result = {"bpm": None, "first_downbeat_s": None, "key": None}
    try:
        est = musical.estimate_tempo(audio, sr, beats_per_bar=piece.beats_per_bar)
        result["bpm"] = est.bpm * 4.0 / piece.beat_unit
        result["first_downbeat_s"] = est.first_downbeat_s
    except ValueError as error:
        logger.warning("%s: %s", piece.name, error)
    result["key"] = str(musical.estimate_key(audio, sr))
    return result


def run_project(audio: np.ndarray, sr: int, piece: Piece) -> Result:
    from generation.audio import beats, key
    from generation.audio.chords import estimate_chords
    from generation.stems.track import MAX_ANALYSIS_SECONDS

    audio = audio[:, : int(MAX_ANALYSIS_SECONDS * sr)]  # what the service reads of an upload

    result: Result = {"bpm": None, "first_downbeat_s": None, "key": None}
    try:
        est = beats.analyze_beats(audio, sr, time_signature=piece.meter)
        result["bpm"] = est.bpm
        result["first_downbeat_s"] = est.first_downbeat_s
        result["warnings"] = list(est.warnings)
    except ValueError as error:
        logger.warning("%s: %s", piece.name, error)
    harmony = key.harmonic_chroma(audio, sr)
    found = key.estimate_key(audio, sr, chroma=harmony)
    result["key"] = str(found)
    result["key_uncertain"] = bool(found.warnings)
    result["warnings"] = [*result.get("warnings", []), *found.warnings]
    if piece.chords:  # on the true bar lines: the chord reading apart from the downbeat
        result["chords"] = estimate_chords(
            audio, sr, piece.downbeats_s, piece.bar_s, chroma=harmony
        )
    return result


def run_librosa(audio: np.ndarray, sr: int, piece: Piece) -> Result:
    mono = librosa.resample(audio.mean(axis=0), orig_sr=sr, target_sr=22050)
    tempo, beat_frames = librosa.beat.beat_track(y=mono, sr=22050)
    beat_times = librosa.frames_to_time(beat_frames, sr=22050)
    chroma = librosa.feature.chroma_cqt(y=mono, sr=22050).sum(axis=1)
    scores = [
        (float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]), tonic, mode)
        for mode, profile in (("major", TEMPERLEY_MAJOR), ("minor", TEMPERLEY_MINOR))
        for tonic in range(12)
    ]
    _, tonic, mode = max(scores)
    return {
        "bpm": float(np.atleast_1d(tempo)[0]),
        "first_downbeat_s": float(beat_times[0]) if beat_times.size else None,
        "key": f"{PITCH_CLASSES[tonic]} {mode}",
    }


def run_truth(audio: np.ndarray, sr: int, piece: Piece) -> Result:
    return {
        "bpm": piece.bpm,
        "first_downbeat_s": piece.first_downbeat_s,
        "key": piece.key,
        "chords": list(piece.chords),
    }


LOCAL: dict[str, Callable[[np.ndarray, int, Piece], Result]] = {
    "project (before)": run_project_before,
    "project": run_project,
    "librosa": run_librosa,
    "truth": run_truth,
}
CONFORMED = ("project (before)", "project", "truth")


def _peer_cache(piece: Piece, wav: Path) -> Path:
    """Where a piece's peer results are kept: beside a rendering (its name holds a digest
    of its notes and truth), or, for audio of a ``--pieces`` set, under ``CACHE`` by a digest
    of the file and the meter the peers were given."""
    if wav.parent == CACHE:
        return wav.with_suffix(".peers.json")
    digest = hashlib.sha1(wav.read_bytes() + piece.meter.encode()).hexdigest()[:16]
    return CACHE / "external" / f"{digest}.peers.json"


def run_peers(python: str, jobs: list[tuple[Piece, Path]]) -> list[dict[str, Result]]:
    """Peer results per piece, cached (``_peer_cache``: peers take ~15 s a piece)."""
    cached = [_peer_cache(piece, wav) for piece, wav in jobs]
    missing = [(job, path) for job, path in zip(jobs, cached, strict=True) if not path.exists()]
    if missing:
        results = _run_peers(python, [job for job, _ in missing])
        for (_, path), result in zip(missing, results, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result))
    return [json.loads(path.read_text()) for path in cached]


def _run_peers(python: str, jobs: list[tuple[Piece, Path]]) -> list[dict[str, Result]]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "jobs.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps([{"wav": str(w), "meter": p.meter} for p, w in jobs]))
        proc = subprocess.run(
            [python, str(Path(__file__).with_name("musical_peers.py")), str(spec), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"peers failed: {proc.stderr[-2000:]}")
        for line in proc.stderr.splitlines():
            if "unavailable" in line:
                logger.warning(line)
        return json.loads(out.read_text())


def _truth_key(label: str | None) -> str | None:
    """A key truth in the analysers' spelling ("Eb major" -> "D# major"); ``ValueError``
    when it is not one of the 24 keys."""
    if label is None:
        return None
    tonic, mode = parse_key(str(label)).split()
    return f"{PITCH_CLASSES[note_pitch_class(tonic)]} {mode}"


MIN_BARS = 3  # a piece of your own needs this many whole bars (the conform check cuts 1 to 8)


def _piece_from_entry(entry: dict[str, Any], base: Path) -> tuple[Piece, Path]:
    """One entry of ``load_pieces``'s list as a ``Piece`` and its audio file; ``ValueError``
    (or ``KeyError``/``TypeError``) saying what is wrong."""
    wav = (base / entry["audio"]).resolve()
    meter = str(entry["meter"])
    bpm, first = float(entry["bpm"]), float(entry["first_downbeat_s"])
    if not (math.isfinite(bpm) and bpm > 0):
        raise ValueError(f"bpm must be a positive number of quarter notes a minute, got {bpm}")
    chords = entry.get("chords") or []
    if not isinstance(chords, list):
        raise TypeError(f"chords must be a list of symbols, one per bar, got {chords!r}")
    for symbol in chords:
        parse_chord(str(symbol))
    duration = sf.info(str(wav)).duration  # seconds
    if not 0.0 <= first < duration:
        raise ValueError(f"first_downbeat_s {first} is not within the audio (0-{duration:.2f} s)")
    bar_s = bar_seconds(bpm, meter)  # a meter a request could carry, else ValueError
    whole_bars = int((duration - first) / bar_s)
    if whole_bars < MIN_BARS:
        raise ValueError(f"{whole_bars} whole bars after the first downbeat; at least {MIN_BARS}")
    piece = Piece(
        name=str(entry.get("name") or Path(entry["audio"]).stem),
        style="yours",
        bpm=bpm,
        meter=meter,
        key=_truth_key(entry.get("key")),
        first_downbeat_s=first,
        downbeats_s=tuple(first + k * bar_s for k in range(whole_bars)),
        lead_in_s=0.0,
        pickup_beats=0.0,
        chords=tuple(str(c) for c in chords),
    )
    return piece, wav


def load_pieces(spec: Path) -> list[tuple[Piece, Path]]:
    """A set of your own, from the JSON file ``spec``: a list of objects with ``audio`` (a
    file soundfile reads, relative to ``spec``), ``bpm`` (quarter notes per minute),
    ``meter`` (a request's time signature: "4/4", "3/4", "6/8", ...; ``bpm`` still counts
    quarter notes in 6/8),
    ``first_downbeat_s`` (seconds into the audio), optionally ``key`` ("A minor", "Eb major";
    absent or null: no key truth), ``chords`` (a list, one symbol per bar from the first
    downbeat) and ``name``. Bar lines are the starts of the whole bars from the first
    downbeat to the end of the audio (at least ``MIN_BARS``). Raises ``ValueError`` naming
    the entry that is not usable."""
    entries = json.loads(spec.read_text())
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{spec}: expected a non-empty JSON list of pieces")
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(_piece_from_entry(entry, spec.parent))
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{spec} piece {i}: {type(error).__name__}: {error}") from error
    return out


# --- conform check -------------------------------------------------------------------------


def _markers(piece: Piece, length: int, sr: int) -> np.ndarray:
    channel = np.zeros(length, np.float32)
    t = np.arange(round(MARKER_S * sr)) / sr
    burst = (np.sin(2 * np.pi * 2000 * t) * np.hanning(t.size)).astype(np.float32)
    for downbeat in piece.downbeats_s:
        start = round(downbeat * sr)
        if start + burst.size <= length:
            channel[start : start + burst.size] = burst
    return channel


def conform_ok(audio: np.ndarray, sr: int, piece: Piece, result: Result, ratio: float) -> bool:
    """Stretch with the analyser's tempo and downbeat; check length and every bar line."""
    from generation.audio.conform import bar_length_samples, conform

    if result.get("bpm") is None or result.get("first_downbeat_s") is None:
        return False
    target = piece.bpm * ratio
    pulse = 4.0 / piece.beat_unit  # quarter-note tempo -> the meter's pulse
    bars = min(8, len(piece.downbeats_s) - 2)
    with_markers = np.vstack([audio, _markers(piece, audio.shape[1], sr)[np.newaxis]])
    out = conform(
        with_markers,
        sr,
        target_bpm=target / pulse,
        bars=bars,
        beats_per_bar=piece.beats_per_bar,
        source_bpm=float(result["bpm"]) / pulse,
        downbeat_s=float(result["first_downbeat_s"]),
        refine_downbeat=False,
    )
    expected = bar_length_samples(target / pulse, bars, piece.beats_per_bar, sr)
    if out.shape[1] != expected:
        return False
    bar_out = piece.bar_s / ratio
    envelope = np.convolve(np.abs(out[-1]), np.ones(round(MARKER_S * sr)), mode="same")
    window = round(0.1 * sr)
    for k in range(bars):
        centre = round((k * bar_out + MARKER_S / 2) * sr)
        lo, hi = max(centre - window, 0), min(centre + window, envelope.size)
        if hi <= lo or envelope[lo:hi].max() < 0.05 * envelope.max():
            return False
        found = (lo + int(np.argmax(envelope[lo:hi]))) / sr - MARKER_S / 2
        if abs(found - k * bar_out) > DOWNBEAT_TOLERANCE_S:
            return False
    return True


# --- scoring -------------------------------------------------------------------------------


def _triad(symbol: str) -> tuple[int, bool]:
    """A chord symbol's root pitch class and whether its third is minor."""
    chord = parse_chord(symbol)
    return chord.root, 3 in QUALITIES[chord.quality]


def _quality(symbol: str) -> tuple[int, str]:
    """A chord symbol's root pitch class and quality (its bass left aside)."""
    chord = parse_chord(symbol)
    return chord.root, chord.quality


def chord_score(piece: Piece, found: list[str] | None, *, exact: bool = False) -> float | None:
    """The share of ``piece``'s bars whose chord ``found`` names by root and major/minor
    (``exact``: by root and quality, sevenths included)."""
    if not piece.chords or found is None:
        return None
    same = _quality if exact else _triad
    right = sum(same(t) == same(f) for t, f in zip(piece.chords, found, strict=False))
    return right / len(piece.chords)


SCORES = (
    "tempo",
    "metrical",
    "downbeat",
    "phase",
    "key",
    "chords",
    "chords_exact",
    "uncertain_wrong",
    "uncertain_right",
)


def score(piece: Piece, result: Result | None) -> dict[str, float | None]:
    """Each of ``SCORES`` for one analyser's ``result`` on ``piece`` (None: not scored)."""
    if result is None or "error" in result:
        return dict.fromkeys(SCORES)
    bpm, first = result.get("bpm"), result.get("first_downbeat_s")
    tempo = metrical = downbeat = phase = None
    if bpm is not None:
        tempo = float(abs(bpm - piece.bpm) <= TEMPO_TOLERANCE_BPM)
        metrical = float(
            any(abs(bpm - piece.bpm * f) <= 0.04 * piece.bpm * f for f in METRICAL_FACTORS)
        )
    else:
        tempo = metrical = 0.0
    if "first_downbeat_s" in result and (first is not None or bpm is not None):
        downbeat = float(
            first is not None and abs(first - piece.first_downbeat_s) <= DOWNBEAT_TOLERANCE_S
        )
        phase = float(
            first is not None
            and min(abs(first - d) for d in piece.downbeats_s) <= DOWNBEAT_TOLERANCE_S
        )
    key = mirex_key_score(piece.key, result.get("key")) if piece.key else None
    # Whether a key reported uncertain was wrong or right (analysers that report it only).
    flagged = result.get("key_uncertain")
    return {
        "tempo": tempo,
        "metrical": metrical,
        "downbeat": downbeat,
        "phase": phase,
        "key": key,
        "chords": chord_score(piece, result.get("chords")),
        "chords_exact": chord_score(piece, result.get("chords"), exact=True),
        "uncertain_wrong": float(flagged)
        if flagged is not None and key is not None and key < 1
        else None,
        "uncertain_right": float(flagged) if flagged is not None and key == 1 else None,
    }


def evaluate(
    which: str,
    pieces: list[tuple[Piece, Path]],
    peers_python: str | None,
    verbose: bool,
    analysers: tuple[str, ...] = tuple(LOCAL),
) -> dict[str, Any]:
    """Every analyser on ``pieces`` (named ``which`` in the table), scored."""
    names = [n for n in LOCAL if n in analysers or n == "truth"]
    rows: dict[str, list[dict[str, float | None]]] = {n: [] for n in names}
    conform: dict[str, list[bool]] = {n: [] for n in CONFORMED if n in names}
    seconds: dict[str, float] = {n: 0.0 for n in names}
    peer_results = run_peers(peers_python, pieces) if peers_python else [{} for _ in pieces]
    peer_names = sorted({k for r in peer_results for k in r})
    for n in peer_names:
        rows[n] = []
    for i, ((piece, wav), peer_row) in enumerate(zip(pieces, peer_results, strict=True)):
        audio, sr = _load(wav)
        results: dict[str, Result] = {}
        for name in names:
            fn = LOCAL[name]
            started = time.perf_counter()
            results[name] = fn(audio, sr, piece)
            seconds[name] += time.perf_counter() - started
            rows[name].append(score(piece, results[name]))
        for name in peer_names:
            results[name] = peer_row.get(name, {"error": "absent"})
            rows[name].append(score(piece, results[name]))
        ratio = CONFORM_RATIO if i % 2 == 0 else 1 / CONFORM_RATIO
        for name in (n for n in CONFORMED if n in names):
            conform[name].append(conform_ok(audio, sr, piece, results[name], ratio))
        if verbose:
            detail = "  ".join(
                f"{n}: {_fmt(results[n].get('bpm'))} {_fmt(results[n].get('first_downbeat_s'), 3)} "
                f"{results[n].get('key')}"
                for n in [*(n for n in names if n != "truth"), *peer_names]
            )
            logger.info(
                "%-22s %s %s truth %.1f %.3f %s | %s",
                piece.name,
                piece.meter,
                piece.style,
                piece.bpm,
                piece.first_downbeat_s,
                piece.key,
                detail,
            )
            warnings = results.get("project", {}).get("warnings")
            if warnings:
                logger.info("%22s warnings: %s", "", "; ".join(warnings))
    return {
        "which": which,
        "count": len(pieces),
        "rows": rows,
        "conform": conform,
        "seconds": seconds,
        "keyed": sum(p.key is not None for p, _ in pieces),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _total(values: list[float | None], mean: bool = False) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    return f"{np.mean(present):.3f}" if mean else f"{int(sum(present))}"


def _flagged(rows: list[dict[str, float | None]]) -> str:
    """ "a of b, c of d": keys reported uncertain among the wrong and the right ones."""
    counts = []
    for field in ("uncertain_wrong", "uncertain_right"):
        present = [r[field] for r in rows if r.get(field) is not None]
        counts.append((int(sum(present)), len(present)))
    if not any(total for _, total in counts):
        return "-"
    return ", ".join(f"{flagged} of {total}" for flagged, total in counts)


def table(report: dict[str, Any]) -> str:
    rows, conform = report["rows"], report["conform"]
    names = [n for n in rows if n != "truth"] + ["truth"]
    header = f"| {report['which']}: {report['count']} pieces | " + " | ".join(names) + " |"
    lines = [header, "|" + " --- |" * (len(names) + 1)]
    labels = (
        ("tempo", "tempo within 0.5 BPM", False),
        ("metrical", "tempo right up to metrical errors", False),
        ("downbeat", "first downbeat within 20 ms", False),
        ("phase", "a downbeat within 20 ms (bar phase)", False),
        ("key", f"key, MIREX weighted ({report['keyed']} pieces)", True),
        ("chords", "chords per bar, root and major/minor, true bar lines (mean)", True),
        (
            "chords_exact",
            "chords per bar, root and quality (sevenths too), true bar lines (mean)",
            True,
        ),
    )
    for field, label, mean in labels:
        cells = [_total([r[field] for r in rows[n]], mean) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [_flagged(rows[n]) for n in names]
    lines.append(
        "| keys reported uncertain: of the wrong ones, of the right ones | "
        + " | ".join(cells)
        + " |"
    )
    cells = [str(sum(conform[n])) if n in conform else "-" for n in names]
    lines.append("| conform: length + tempo + every bar line | " + " | ".join(cells) + " |")
    cells = [f"{report['seconds'][n]:.1f}" if n in report["seconds"] else "-" for n in names]
    lines.append("| seconds (this process, all pieces) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--set",
        choices=(*SETS, "both", "all"),
        default="both",
        help="both: dev and held-out; all: dev, dev2, dev3 and held-out",
    )
    parser.add_argument(
        "--analysers",
        default=",".join(n for n in LOCAL if n != "truth"),
        help="comma-separated local analysers to run (truth always runs)",
    )
    which.add_argument(
        "--pieces",
        type=Path,
        help="a JSON file listing audio of your own with its truth (bpm in quarter notes a "
        "minute; see load_pieces), evaluated instead of a built-in set",
    )
    parser.add_argument("--peers", help="a Python with essentia and/or madmom installed")
    parser.add_argument("--verbose", action="store_true", help="one line per piece")
    parser.add_argument("--json", type=Path, help="write the raw scores here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sets = {"both": ("dev", "held-out"), "all": tuple(SETS)}.get(args.set, (args.set,))
    analysers = tuple(a.strip() for a in args.analysers.split(",") if a.strip())
    unknown = [a for a in analysers if a not in LOCAL]
    if unknown:
        parser.error(f"unknown analysers {unknown}; known: {list(LOCAL)}")
    if args.pieces is not None:
        try:
            named = [(args.pieces.stem, load_pieces(args.pieces))]
        except (OSError, ValueError) as error:
            parser.error(str(error))
    else:
        named = [(which, build_set(which, CACHE)) for which in sets]
    reports = [
        evaluate(which, pieces, args.peers, args.verbose, analysers) for which, pieces in named
    ]
    for report in reports:
        sys.stdout.write(table(report) + "\n\n")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, default=float))


if __name__ == "__main__":
    main()
