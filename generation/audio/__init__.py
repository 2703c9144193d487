"""Numpy in, numpy out, no model: analysis (tempo, downbeat, key), conform (stretch, align,
cut), loudness (LUFS, true peak, limiter, mix) and codecs (audio files in and out)."""
