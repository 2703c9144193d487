"""The grid plan, upload analysis (track) and stem finishing, on synthetic audio with
known answers."""

import numpy as np
import pytest

from generation.audio import chords as chords_module
from generation.audio import key as key_analysis
from generation.audio.analysis import estimate_tempo
from generation.audio.loudness import integrated_loudness, true_peak_dbtp
from generation.request import GenerationParameters, Stem
from generation.stems import finish as finish_module
from generation.stems import track as track_module
from generation.stems.context import finish_part
from generation.stems.finish import (
    IN_KEY_WARNING,
    STEM_LOUDNESS_TARGETS,
    finish_stem,
    gain_stage,
    harmony_check,
    may_clash,
)
from generation.stems.grid import (
    MAX_TEMPO_CORRECTION,
    GridPlan,
    _loop_seam,
    _nearest_octave,
    lock_to_grid,
    plan_grid,
)
from generation.stems.track import TrackAnalysis, analyze_track, fold_bpm, snap_bpm
from tests.synthetic_audio import (
    POWER_CHORDS,
    SR,
    UNDECIDED_KEYS,
    chord_pad,
    click_track,
    demo_track,
)


def params(**kwargs):
    return GenerationParameters.model_validate(kwargs)


def upload(bpm=96.0, downbeat=0.25, key="A minor"):
    return TrackAnalysis(bpm, downbeat, key, duration_s=30.0, sample_rate=SR, channels=2)


def first_loud_onset_s(audio, fraction=0.5):
    envelope = np.abs(audio).max(axis=0)
    return int(np.argmax(envelope >= fraction * envelope.max())) / SR


# --- plan_grid ---------------------------------------------------------------------------


def test_without_a_tempo_there_is_no_tempo_lock():
    plan = plan_grid(params(duration_seconds=7.3))
    assert not plan.tempo_locked
    assert plan.bars is None
    assert plan.output_samples(SR) == round(7.3 * SR)
    assert plan.generation_s == 7.3


def test_a_tempo_rounds_the_duration_to_the_nearest_whole_bar():
    plan = plan_grid(params(target_bpm=120, duration_seconds=10.9))
    assert (plan.bars, plan.tempo_source, plan.time_signature) == (5, "request", "4/4")
    assert plan.output_samples(SR) == 5 * 4 * 60 * SR // 120  # 10 s exactly
    assert plan.align_to_s == 0.0


def test_bars_override_the_duration():
    plan = plan_grid(params(target_bpm=100, bars=3, duration_seconds=60))
    assert plan.bars == 3
    assert plan.output_samples(SR) == round(3 * 4 * 60 / 100 * SR)


@pytest.mark.parametrize(
    ("signature", "bpm", "bar_s"), [("3/4", 90, 2.0), ("6/8", 120, 1.5), ("2/2", 60, 4.0)]
)
def test_bpm_counts_quarter_notes_in_every_time_signature(signature, bpm, bar_s):
    plan = plan_grid(params(target_bpm=bpm, bars=4, time_signature=signature))
    assert plan.bar_s == pytest.approx(bar_s)
    assert plan.output_samples(SR) == round(4 * bar_s * SR)


def test_generation_leaves_room_to_stretch_and_align():
    plan = plan_grid(params(target_bpm=120, bars=4))
    assert plan.generation_s >= (4 + 1) * 2.0 * (1 + MAX_TEMPO_CORRECTION) - 1e-9
    looped = plan_grid(params(target_bpm=120, bars=4, loop=True))
    assert looped.generation_s > plan.generation_s


def test_the_upload_gives_tempo_key_and_bar_phase_when_the_request_has_none():
    plan = plan_grid(params(duration_seconds=10), upload(bpm=96.0, downbeat=3.0))
    assert (plan.target_bpm, plan.tempo_source, plan.key) == (96.0, "upload", "A minor")
    bar = 4 * 60 / 96  # 2.5 s
    assert plan.bars == 4
    assert plan.align_to_s == pytest.approx(3.0 - bar)  # the downbeat modulo one bar


def test_a_requested_tempo_wins_over_the_upload_but_the_key_is_kept():
    plan = plan_grid(params(target_bpm=120, bars=2), upload(bpm=96.0))
    assert (plan.target_bpm, plan.tempo_source, plan.key) == (120, "request", "A minor")


def test_an_upload_without_a_beat_leaves_the_stems_unlocked_and_says_so():
    plan = plan_grid(params(duration_seconds=5), upload(bpm=None, downbeat=None))
    assert not plan.tempo_locked
    assert plan.key == "A minor"
    assert plan.notes == ("no tempo detected in the upload: the stems are not tempo-locked",)


def test_bars_with_an_upload_whose_tempo_is_unknown_are_refused():
    with pytest.raises(ValueError, match="none was detected in the uploaded track"):
        plan_grid(params(bars=4), upload(bpm=None, downbeat=None))


def test_bars_too_long_at_the_uploads_tempo_are_refused():
    with pytest.raises(ValueError, match="at most 300 s"):
        plan_grid(params(bars=200), upload(bpm=60.0))


def test_loop_without_a_tempo_is_noted():
    plan = plan_grid(params(loop=True))
    assert not plan.loop
    assert plan.notes == ("loop needs a tempo: the stems are not looped",)


def test_summary_reports_the_grid():
    summary = plan_grid(params(target_bpm=120, bars=2), upload(downbeat=0.25)).summary()
    assert summary == {
        "tempo_locked": True,
        "target_bpm": 120,
        "tempo_source": "request",
        "bars": 2,
        "time_signature": "4/4",
        "first_downbeat_s": 0.25,
        "duration_seconds": 4.0,
        "key": "A minor",
        "key_source": "upload",
        "chords": [],
        "chords_source": None,
        "loop": False,
        "notes": [],
    }


# --- analyze_track -----------------------------------------------------------------------


def test_analyze_track_finds_tempo_downbeat_and_key():
    _, downbeat = click_track(bpm=112.0)
    analysis = analyze_track(demo_track(), SR)
    assert analysis.bpm == 112.0  # snapped: measured within 0.05 BPM
    assert analysis.first_downbeat_s == pytest.approx(downbeat, abs=0.01)
    assert analysis.key == "A minor"
    assert analysis.key_confidence >= key_analysis.LOW_CONFIDENCE
    assert analysis.warnings == ()
    assert TrackAnalysis.from_dict(analysis.to_dict()) == analysis


def test_analyze_track_reports_a_key_it_cannot_decide():
    pad = chord_pad(POWER_CHORDS * 4, 1.0)  # no third: C major or C minor
    analysis = analyze_track(pad, SR)
    assert analysis.key_confidence is not None
    assert analysis.key_confidence < key_analysis.LOW_CONFIDENCE
    uncertain = [w for w in analysis.warnings if w.startswith("key uncertain")]
    assert len(uncertain) == 1
    runner_up = uncertain[0].split(", or ")[1].split(" (")[0]
    assert analysis.key in {"C major", "C minor"}
    assert runner_up in UNDECIDED_KEYS - {analysis.key}
    assert TrackAnalysis.from_dict(analysis.to_dict()) == analysis


def test_analyze_track_computes_the_harmonic_chroma_once(monkeypatch):
    # The real chroma, counted wherever the key or the chords could compute it.
    real, calls = key_analysis.harmonic_chroma, []

    def counted(audio, sr):
        calls.append(sr)
        return real(audio, sr)

    for module in (track_module, chords_module, key_analysis):
        monkeypatch.setattr(module, "harmonic_chroma", counted)
    analysis = analyze_track(demo_track(), SR)
    assert analysis.key == "A minor" and analysis.chords  # the key and the chords found
    assert len(calls) == 1


def test_analyze_track_on_silence_says_what_it_could_not_find():
    analysis = analyze_track(np.zeros((2, SR * 3), np.float32), SR)
    assert (analysis.bpm, analysis.first_downbeat_s, analysis.key) == (None, None, None)
    assert analysis.channels == 2 and analysis.duration_s == 3.0
    assert [w.split(":")[0] for w in analysis.warnings] == [
        "tempo not detected",
        "key not detected",
    ]


def test_fold_bpm_brings_a_metrical_misreading_into_the_request_range():
    assert fold_bpm(120.0) == (120.0, None)
    assert fold_bpm(40.0) == (40.0, None)
    slow, warning = fold_bpm(34.5)
    assert slow == 69.0
    assert warning is not None and "34.5" in warning and "target_bpm" in warning
    assert fold_bpm(300.0)[0] == 150.0
    assert fold_bpm(19.0)[0] == 76.0


def test_snap_bpm():
    assert snap_bpm(119.97) == 120.0
    assert snap_bpm(119.9) == 119.9
    assert snap_bpm(87.654) == 87.65


# --- finish_stem -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted_drums():
    """A drum-like stem the model played at 116 BPM when asked for 120."""
    return click_track(bpm=116.0, beats=24)[0]


@pytest.fixture(scope="module")
def locked(drifted_drums):
    plan = plan_grid(params(target_bpm=120, bars=4))
    return finish_stem(drifted_drums, SR, Stem.DRUMS, plan)


def test_finish_stem_locks_the_tempo_and_cuts_whole_bars(locked):
    assert locked.audio.shape == (1, 4 * 4 * 60 * SR // 120)
    assert abs(estimate_tempo(locked.audio, SR).bpm - 120.0) < 0.5
    assert locked.detected_bpm == pytest.approx(116.0, abs=0.2)
    assert locked.stretch_ratio == pytest.approx(120 / 116, rel=2e-3)
    assert locked.warnings == ()


# Placement is checked before gain staging: the limiter evens out the accents that
# first_loud_onset_s looks for.
def test_lock_to_grid_puts_the_first_downbeat_on_zero(drifted_drums):
    plan = plan_grid(params(target_bpm=120, bars=4))
    locked = lock_to_grid(drifted_drums, SR, plan)
    assert first_loud_onset_s(locked.audio) == pytest.approx(0.0, abs=0.010)


@pytest.mark.parametrize(("downbeat", "align"), [(2.25, 0.25), (1.1, 1.1), (0.0, 0.0)])
def test_lock_to_grid_aligns_to_the_uploads_bar_phase(drifted_drums, downbeat, align):
    plan = plan_grid(params(bars=4), upload(bpm=120.0, downbeat=downbeat))
    assert plan.align_to_s == pytest.approx(align)
    locked = lock_to_grid(drifted_drums, SR, plan)
    assert locked.audio.shape == (1, plan.output_samples(SR))
    assert first_loud_onset_s(locked.audio) == pytest.approx(align, abs=0.010)


def test_lock_to_grid_needs_a_tempo(drifted_drums):
    with pytest.raises(ValueError, match="no tempo"):
        lock_to_grid(drifted_drums, SR, plan_grid(params()))


def test_finish_stem_gain_stages_without_clipping(locked):
    assert locked.true_peak_dbtp <= -1.0
    assert true_peak_dbtp(locked.audio, SR) <= -1.0 + 1e-6
    assert locked.loudness_lufs == pytest.approx(integrated_loudness(locked.audio, SR), abs=0.01)


def test_a_stem_far_from_the_target_tempo_is_not_stretched(drifted_drums):
    plan = plan_grid(params(target_bpm=200, bars=2))  # 116 and its multiples are all > 12% off
    finished = finish_stem(drifted_drums, SR, Stem.DRUMS, plan)
    assert finished.stretch_ratio == 1.0
    assert finished.audio.shape[1] == plan.output_samples(SR)
    assert "not stretched" in finished.warnings[0]


def test_a_stem_without_a_beat_is_cut_to_the_grid_unstretched():
    pad = chord_pad([(48, 52, 55, 60)] * 8)
    plan = plan_grid(params(target_bpm=120, bars=2))
    finished = finish_stem(pad, SR, Stem.PADS, plan)
    assert finished.audio.shape == (1, plan.output_samples(SR))
    # The pad re-attacks every second: the analysis may hear that as a 60/120 BPM pulse
    # (issue 12's analysis does), and then the stretch it applies is next to none.
    assert (
        finished.detected_bpm is None
        or finished.warnings
        or abs(finished.stretch_ratio - 1.0) < 0.01
    )
    assert finished.loudness_lufs == pytest.approx(STEM_LOUDNESS_TARGETS[Stem.PADS], abs=0.5)


@pytest.mark.parametrize(("detected", "expected"), [(232.0, 116.0), (58.0, 116.0), (80.0, 120.0)])
def test_beat_tracker_octave_errors_are_undone(detected, expected):
    assert _nearest_octave(detected, 120.0) == pytest.approx(expected)


def test_unlocked_stems_keep_their_length_and_are_gain_staged():
    pad = chord_pad([(48, 52, 55, 60)] * 5)
    plan = plan_grid(params(duration_seconds=4.5))
    finished = finish_stem(pad, SR, Stem.STRINGS, plan)
    assert finished.audio.shape == (1, round(4.5 * SR))
    assert finished.stretch_ratio == 1.0 and finished.detected_bpm is None
    assert finished.loudness_lufs == pytest.approx(STEM_LOUDNESS_TARGETS[Stem.STRINGS], abs=0.5)


C_MAJOR_PAD = [(48, 52, 55, 60), (53, 57, 60, 65), (55, 59, 62, 67), (48, 52, 55, 60)]


def _pad(shift=0):
    return chord_pad([tuple(n + shift for n in chord) for chord in C_MAJOR_PAD] * 2)


@pytest.mark.parametrize("finish", [finish_stem, finish_part])
def test_a_stem_in_the_sets_key_reads_in_key_and_one_off_it_is_flagged(finish):
    plan = plan_grid(params(duration_seconds=8, key="C major"))
    fitting = finish(_pad(), SR, Stem.KEYS, plan)
    assert fitting.in_key >= 0.95
    assert not any("clash" in w for w in fitting.warnings)
    clashing = finish(_pad(1), SR, Stem.KEYS, plan)  # C# major chords in a C major set
    assert clashing.in_key < IN_KEY_WARNING
    assert clashing.warnings[-1] == (
        f"may clash: only {clashing.in_key:.0%} of its pitched sound is in C major "
        "(regenerate it with another seed)"
    )


def test_the_sets_chords_count_as_in_key():
    # D major chords: in a C major set only with D in its chords, and the warning names them.
    alone = plan_grid(params(duration_seconds=8, key="C major", chords="C F"))
    with_d = plan_grid(params(duration_seconds=8, key="C major", chords="D G A"))
    assert harmony_check(_pad(2), SR, Stem.PIANO, with_d) == (1.0, ())
    share, warnings = harmony_check(_pad(1), SR, Stem.PIANO, alone)
    assert share < IN_KEY_WARNING
    assert "in C major and its chords" in warnings[0]


def test_drums_a_plan_without_key_and_silence_are_not_checked():
    plan = plan_grid(params(duration_seconds=8, key="C major"))
    assert harmony_check(_pad(1), SR, Stem.DRUMS, plan) == (None, ())
    assert harmony_check(_pad(1), SR, Stem.PERCUSSION, plan) == (None, ())
    assert harmony_check(np.zeros((1, SR * 2), np.float32), SR, Stem.BASS, plan) == (None, ())
    keyless = plan_grid(params(duration_seconds=8))  # no seed: no key chosen
    assert keyless.key is None
    assert harmony_check(_pad(1), SR, Stem.KEYS, keyless) == (None, ())


def test_noise_in_a_pitched_stem_is_not_called_a_clash():
    # Hiss the model made instead of a bass line: no pitch to compare, so neither a number
    # nor a warning (white noise's strongest pitch class, frame by frame, is chance).
    plan = plan_grid(params(duration_seconds=8, key="C major"))
    noise = (0.1 * np.random.default_rng(3).standard_normal((2, SR * 8))).astype(np.float32)
    finished = finish_stem(noise, SR, Stem.BASS, plan)
    assert finished.in_key is None


def test_the_warning_follows_the_share_as_reported(monkeypatch):
    # 0.796 is reported as 0.80: no warning; 0.794 as 0.79: a warning saying 79%.
    plan = plan_grid(params(duration_seconds=8, key="C major"))
    for share, reported, warned in ((0.796, 0.8, False), (0.794, 0.79, True)):
        monkeypatch.setattr(finish_module, "in_key_share", lambda *a, s=share: s)
        got, warnings = harmony_check(_pad(), SR, Stem.KEYS, plan)
        assert got == reported and bool(warnings) is warned
        assert may_clash(share) is warned
    assert "only 79% of" in warnings[0]


@pytest.mark.parametrize("stem", list(Stem))
def test_gain_stage_reaches_each_stems_target(stem):
    pad = chord_pad([(48, 52, 55, 60), (53, 57, 60, 65)] * 2)
    staged = gain_stage(pad, SR, stem)
    assert integrated_loudness(staged, SR) == pytest.approx(STEM_LOUDNESS_TARGETS[stem], abs=0.5)
    assert true_peak_dbtp(staged, SR) <= -1.0 + 1e-6


def test_loop_seam_crossfades_the_end_into_the_preroll():
    t = np.arange(SR) / SR
    audio = (0.3 * np.sin(2 * np.pi * 220 * t))[np.newaxis, :].astype(np.float32)
    preroll, body = audio[:, :1600], audio[:, 1600:]
    seamed = _loop_seam(body, preroll)
    np.testing.assert_array_equal(seamed[:, :-1600], body[:, :-1600])
    assert seamed[0, -1] == pytest.approx(preroll[0, -1], abs=1e-6)
    # Looping: the last sample flows into the first as in the original audio.
    step = abs(seamed[0, 0] - seamed[0, -1])
    assert step <= np.max(np.abs(np.diff(audio[0]))) + 1e-6


def test_a_looped_stem_has_exactly_its_bars_and_its_downbeat(drifted_drums):
    plan = plan_grid(params(target_bpm=120, bars=2, loop=True))
    looped = lock_to_grid(drifted_drums, SR, plan)
    assert looped.audio.shape == (1, plan.output_samples(SR))
    assert first_loud_onset_s(looped.audio) == pytest.approx(0.0, abs=0.010)
    # Same audio as without the loop, except the straight cut's 2 ms fade-in: a loop's
    # start needs none, its seam leads into it.
    straight = lock_to_grid(drifted_drums, SR, plan_grid(params(target_bpm=120, bars=2)))
    fade = round(0.002 * SR)
    np.testing.assert_array_equal(looped.audio[:, fade:SR], straight.audio[:, fade:SR])
    assert np.abs(looped.audio[:, :fade]).max() > np.abs(straight.audio[:, :fade]).max()


def test_grid_plan_is_plain_data():
    plan = GridPlan(time_signature="4/4", duration_s=2.0, target_bpm=120.0, bars=1)
    assert plan.pulse_bpm == 120.0 and plan.beats_per_bar == 4


def test_every_stem_has_a_loudness_target():
    assert set(STEM_LOUDNESS_TARGETS) == set(Stem)
