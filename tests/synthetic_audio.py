"""Synthetic audio with known tempo, downbeat and key, for the musical tests."""

import numpy as np

SR = 32000
SOURCE_BPM = 112.0
PICKUP_BEATS = 2  # the pattern starts on beat 3, so the first downbeat is not the first hit
FIRST_HIT_S = 0.3


def click_track(bpm=SOURCE_BPM, beats=44, sr=SR):
    """Mono drum-like clicks: a loud low hit on each "one", quiet high ticks elsewhere.

    Returns ``([1, samples] float32, first downbeat onset in seconds)``.
    """
    rng = np.random.default_rng(0)
    hit = int(0.03 * sr)
    decay = np.exp(-np.arange(hit) / (0.005 * sr))
    audio = np.zeros(int((FIRST_HIT_S + beats * 60 / bpm + 1) * sr), np.float32)
    downbeats = []
    for i in range(beats):
        start = round((FIRST_HIT_S + i * 60 / bpm) * sr)
        down = (i - PICKUP_BEATS) % 4 == 0
        if down:
            downbeats.append(start / sr)
        tone = np.sin(2 * np.pi * (150 if down else 1000) * np.arange(hit) / sr)
        audio[start : start + hit] += (
            (1.0 if down else 0.3) * decay * (tone + 0.5 * rng.standard_normal(hit))
        )
    return 0.5 * audio[np.newaxis, :], downbeats[0]


def chord_pad(chords, seconds_each=1.0, sr=SR):
    """Sustained chords of sine partials (fundamental plus three decaying harmonics)."""
    t = np.arange(int(seconds_each * sr)) / sr
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    parts = []
    for chord in chords:
        tone = np.zeros_like(t)
        for midi in chord:
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            for harmonic, gain in ((1, 1.0), (2, 0.4), (3, 0.2), (4, 0.1)):
                tone += gain * np.sin(2 * np.pi * f0 * harmonic * t)
        parts.append(tone * envelope)
    audio = np.concatenate(parts)
    return (0.2 * audio / np.max(np.abs(audio)))[np.newaxis, :].astype(np.float32)


# C5 and G5 power chords (MIDI notes, for ``chord_pad``): no third, so their key is C major
# or C minor (or G, the other root), which the notes cannot decide.
POWER_CHORDS = [(48, 55, 60, 67), (43, 50, 55, 62)]
UNDECIDED_KEYS = {"C major", "C minor", "G major", "G minor"}

DEMO_BPM = 112.0
DEMO_KEY = "A minor"


def demo_track():
    """A mono 112 BPM track in A minor: the click track over an Am - Dm - E pad, about 22 s,
    ``[1, samples]`` float32 at ``SR``. Stands in for a user's upload."""
    clicks, _ = click_track(bpm=DEMO_BPM)
    pad = chord_pad([(45, 57, 60, 64), (50, 57, 62, 65), (52, 56, 59, 64)] * 3, 1.5)
    n = min(clicks.shape[1], pad.shape[1])
    return clicks[:, :n] + pad[:, :n]
