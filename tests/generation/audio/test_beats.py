"""Beat phase, downbeat and tempo on synthetic and rendered music with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from generation.audio.beats import LOW_CONFIDENCE, analyze_beats, metrical_levels, parse_meter

SR = 22050


def _hit(kind: str, rng: np.random.Generator) -> np.ndarray:
    n = int(0.15 * SR)
    t = np.arange(n) / SR
    if kind == "kick":  # a falling 90->45 Hz sine
        return np.sin(2 * np.pi * (45 + 45 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.08)
    noise = rng.standard_normal(n)
    if kind == "snare":
        return 0.5 * noise * np.exp(-t / 0.05)
    hat = np.diff(noise, prepend=0.0)  # high-passed: no low band
    return 0.6 * hat * np.exp(-t / 0.06)


def offbeat_hat_loop(bpm: float, first_downbeat_s: float, bars: int = 8) -> np.ndarray:
    """Kick on 1 and 3, snare on 2 and 4, open hi-hats on every off-beat louder than
    both, a bass note on 1 and 3; silence before ``first_downbeat_s``. Mono float32."""
    rng = np.random.default_rng(1)
    beat = 60.0 / bpm
    audio = np.zeros(int((first_downbeat_s + bars * 4 * beat + 1.0) * SR))

    def put(sound: np.ndarray, at_s: float, gain: float) -> None:
        start = round(at_s * SR)
        audio[start : start + sound.size] += gain * sound[: audio.size - start]

    for bar in range(bars):
        for b in range(4):
            t = first_downbeat_s + (bar * 4 + b) * beat
            put(_hit("kick" if b % 2 == 0 else "snare", rng), t, 0.5)
            put(_hit("hat", rng), t + beat / 2, 1.0)
            if b % 2 == 0:
                n = int(beat * SR)
                tone = np.sin(2 * np.pi * 55.0 * np.arange(n) / SR) * np.exp(
                    -np.arange(n) / (0.3 * SR)
                )
                put(tone, t, 0.3)
    return (0.3 * audio / np.abs(audio).max()).astype(np.float32)


def test_offbeat_hihats_do_not_move_the_beat_phase() -> None:
    audio = offbeat_hat_loop(118.0, first_downbeat_s=0.25)
    result = analyze_beats(audio, SR, time_signature="4/4")
    assert abs(result.bpm - 118.0) <= 0.5
    assert abs(result.first_downbeat_s - 0.25) <= 0.02
    # every reported beat sits on a kick or a snare, not on a hi-hat
    beat = 60.0 / 118.0
    offsets = (result.beat_times_s - 0.25) / beat
    assert np.all(np.abs(offsets - np.round(offsets)) < 0.1)


def test_target_tempo_chooses_the_metrical_level() -> None:
    audio = offbeat_hat_loop(118.0, first_downbeat_s=0.0)
    assert abs(analyze_beats(audio, SR, target_bpm=59.0).bpm - 59.0) <= 0.5
    assert abs(analyze_beats(audio, SR, target_bpm=120.0).bpm - 118.0) <= 0.5


def test_a_pulse_without_accents_is_reported_not_guessed() -> None:
    rng = np.random.default_rng(0)
    beat = 0.5
    audio = np.zeros(int(12 * SR))
    for i in range(22):
        start = round((0.1 + i * beat) * SR)
        click = _hit("snare", rng)
        audio[start : start + click.size] += click
    result = analyze_beats(audio.astype(np.float32), SR)
    assert abs(result.bpm - 120.0) <= 0.5
    assert result.downbeat_confidence < 0.35
    assert any("downbeat uncertain" in w for w in result.warnings)


def test_silence_and_short_audio_raise() -> None:
    with pytest.raises(ValueError, match="silence"):
        analyze_beats(np.zeros(SR * 4, np.float32), SR)
    with pytest.raises(ValueError, match="too short"):
        analyze_beats(offbeat_hat_loop(120.0, 0.0, bars=1)[:SR], SR)


def test_meters() -> None:
    assert parse_meter("6/8") == (6, 8)
    with pytest.raises(ValueError):
        parse_meter("4-4")
    assert (1.5, 1.0) in metrical_levels(6, 8)  # dotted quarters
    assert (3.0, 1.0) in metrical_levels(3, 4)  # the bar


@pytest.mark.parametrize(
    ("style", "seed", "seconds"),
    [
        ("offbeat_hats", 8, 10.0),  # loud off-beat open hats, a half-beat pickup, 1.6 s lead-in
        ("pop", 2, 10.0),  # a one-beat pickup
        ("funk", 3, 10.0),  # syncopated kick and bass, the music starts on the one
        ("waltz", 11, 10.0),  # 3/4 with a one-beat pickup
        ("six_eight", 13, 22.0),  # 6/8, as long as in the dev set (see below for 10 s)
        ("halftime", 6, 10.0),  # half-time hip-hop, snare on 3, two-beat pickup
    ],
)
def test_rendered_music(render_piece, style: str, seed: int, seconds: float) -> None:
    audio, sr, piece = render_piece(style, seed, seconds)
    result = analyze_beats(audio, sr, time_signature=piece.meter)
    assert abs(result.bpm - piece.bpm) <= 0.5, (result.bpm, piece.bpm)
    assert abs(result.first_downbeat_s - piece.first_downbeat_s) <= 0.02, result
    assert 0.0 <= result.tempo_confidence <= 1.0


def test_a_downbeat_few_bars_cannot_decide_is_reported_not_guessed(render_piece) -> None:
    # Ten seconds of the same 6/8 piece: five bars leave its bar line in doubt, and said so.
    audio, sr, piece = render_piece("six_eight", 13, 10.0)
    result = analyze_beats(audio, sr, time_signature=piece.meter)
    assert abs(result.bpm - piece.bpm) <= 0.5
    if abs(result.first_downbeat_s - piece.first_downbeat_s) > 0.02:
        assert result.downbeat_confidence < LOW_CONFIDENCE
        assert any(w.startswith("downbeat uncertain") for w in result.warnings), result


def test_rendered_fast_rock_follows_the_target(render_piece) -> None:
    audio, sr, piece = render_piece("rock", 17)
    free = analyze_beats(audio, sr, time_signature=piece.meter)
    assert abs(free.bpm - piece.bpm) <= 0.5
    # 166 or 83 BPM are both plausible readings of this loop: said so...
    assert any("could also be heard as 83" in w for w in free.warnings), free.warnings
    # ...and a request's target picks the level.
    slow = analyze_beats(audio, sr, time_signature=piece.meter, target_bpm=80.0)
    assert abs(slow.bpm * 2 - piece.bpm) <= 0.5
    aimed = analyze_beats(audio, sr, time_signature=piece.meter, target_bpm=160.0)
    assert abs(aimed.bpm - piece.bpm) <= 0.5
    assert abs(aimed.first_downbeat_s - piece.first_downbeat_s) <= 0.02


def test_rendered_fast_ska_is_heard_at_its_tempo(render_piece) -> None:
    """Ska at 169 BPM: kick and snare alternate on the beats, so the strongest periodicity
    is the half note (85 BPM); the skanks and bass between those take it to its tempo."""
    audio, sr, piece = render_piece("ska", 218, 22.0)
    result = analyze_beats(audio, sr, time_signature=piece.meter)
    assert abs(result.bpm - piece.bpm) <= 0.5, result
    assert abs(result.first_downbeat_s - piece.first_downbeat_s) <= 0.02, result
    assert any("faster pulse was taken" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize(
    ("style", "seed"),
    [
        ("funk", 205),  # syncopated kick: kick onsets alone point half a bar off
        ("house", 208),  # four-on-the-floor kick, a three-beat pickup after a 1.1 s lead-in
    ],
)
def test_rendered_bar_line_from_bass_and_harmony(render_piece, style: str, seed: int) -> None:
    audio, sr, piece = render_piece(style, seed, 22.0)
    result = analyze_beats(audio, sr, time_signature=piece.meter)
    assert abs(result.first_downbeat_s - piece.first_downbeat_s) <= 0.02, result
    assert 0.0 <= result.downbeat_confidence <= 1.0


@pytest.mark.parametrize(
    ("path", "seed"),
    [
        ("bach/bwv244.37", 2509),  # strings: one attack's start was read 48 ms late
        ("bach/bwv187.7", 2506),  # organ in 3/4: 28 ms late
    ],
)
def test_rendered_slow_attacks_put_the_bar_line_where_the_notes_start(
    render_chorale, path: str, seed: int
) -> None:
    """The bar line is placed by the median, over every beat, of where its attack starts
    (as in the evaluation's dev3 set); one slowly swelling attack read alone was late."""
    audio, sr, piece = render_chorale(path, seed)
    result = analyze_beats(audio, sr, time_signature=piece.meter)
    assert abs(result.first_downbeat_s - piece.first_downbeat_s) <= 0.02, result
