"""Peer analysers (essentia, madmom), run in their own virtual environment, never the
product's: essentia is AGPL and madmom's models are for non-commercial use, so they are
comparison only. ``benchmarks/musical_eval.py`` starts this with that environment's Python:

    python benchmarks/musical_peers.py JOBS.json OUT.json

JOBS.json: ``[{"wav": path, "meter": "4/4"}, ...]``. OUT.json: one dict per job with
``{"essentia": {...}, "madmom": {...}}``, each ``{"bpm", "first_downbeat_s", "key"}`` (None
where the peer does not give it) or ``{"error": "..."}``; a peer that does not import is
left out. Times in seconds, tempo in beats per minute as the peer reports it.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def _fit_bpm(beats: np.ndarray) -> float | None:
    """Least-squares tempo through beat times (s), as the project fits its own beats."""
    if beats.size < 3:
        return None
    slope = np.polyfit(np.arange(beats.size), beats, 1)[0]
    return float(60.0 / slope)


def run_essentia(wav: str, meter: str) -> dict:
    import essentia.standard as es

    audio = es.MonoLoader(filename=wav, sampleRate=44100)()
    bpm, _beats, *_ = es.RhythmExtractor2013(method="multifeature")(audio)
    key, scale, _strength = es.KeyExtractor()(audio)
    return {"bpm": float(bpm), "first_downbeat_s": None, "key": f"{key} {scale}"}


def run_madmom(wav: str, meter: str) -> dict:
    # madmom 0.16.1 (the last release) still uses aliases numpy removed; its compiled
    # parts cannot be patched, so the aliases are put back for it.
    for alias, builtin in (("int", int), ("float", float), ("bool", bool), ("complex", complex)):
        if alias not in np.__dict__:
            setattr(np, alias, builtin)
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor
    from madmom.features.key import CNNKeyRecognitionProcessor, key_prediction_to_label

    beats = DBNBeatTrackingProcessor(fps=100)(RNNBeatProcessor()(wav))
    num = int(meter.split("/", maxsplit=1)[0])
    per_bar = [2, 6] if meter == "6/8" else [num]
    downbeats = DBNDownBeatTrackingProcessor(beats_per_bar=per_bar, fps=100)(
        RNNDownBeatProcessor()(wav)
    )
    ones = downbeats[downbeats[:, 1] == 1, 0]
    label = key_prediction_to_label(CNNKeyRecognitionProcessor()(wav))
    tonic, mode = label.split()
    return {
        "bpm": _fit_bpm(np.asarray(beats)),
        "first_downbeat_s": float(ones[0]) if ones.size else None,
        "key": f"{tonic} {mode}",
    }


def main() -> None:
    with open(sys.argv[1]) as spec:
        jobs = json.load(spec)
    peers = {}
    for name, fn, module in (
        ("essentia", run_essentia, "essentia"),
        ("madmom", run_madmom, "madmom"),
    ):
        try:
            __import__(module)
            peers[name] = fn
        except Exception as error:  # noqa: BLE001 (a peer that will not import is absent)
            print(f"{name} unavailable: {error}", file=sys.stderr)
    results = []
    for job in jobs:
        row = {}
        for name, fn in peers.items():
            try:
                row[name] = fn(job["wav"], job["meter"])
            except Exception as error:  # noqa: BLE001 (a peer's failure is its result)
                row[name] = {"error": repr(error)}
        results.append(row)
    with open(sys.argv[2], "w") as out:
        json.dump(results, out)


if __name__ == "__main__":
    main()
