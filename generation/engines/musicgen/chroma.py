"""The chroma a MusicGen-melody checkpoint conditions on, computed without torchaudio."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.audio_utils import chroma_filter_bank


class ChromaExtractor:
    """``MusicgenMelodyFeatureExtractor``'s chroma, computed without torchaudio.

    transformers' extractor needs torchaudio only for its spectrogram (and resampling);
    torchaudio is not installed here (its wheels pin other torch versions than this
    project's). This is the same maths on ``torch.stft``: a power spectrogram (Hann window,
    ``n_fft``, ``hop_length``, centred, reflect-padded, normalised by the window's L2 norm),
    projected onto ``num_chroma`` pitch classes with transformers' own chroma filter bank,
    then each frame one-hot at its strongest class. Settings come from the checkpoint's
    feature-extractor config, so facebook/musicgen-melody's files load as they are.
    """

    def __init__(
        self,
        *,
        sampling_rate: int = 32_000,
        n_fft: int = 16_384,
        hop_length: int = 4096,
        chunk_length: int = 30,
        num_chroma: int = 12,
    ) -> None:
        self.sampling_rate = sampling_rate  # Hz the audio must be at
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.max_samples = chunk_length * sampling_rate  # longer audio is cut, as there
        self.num_chroma = num_chroma
        self.filters = torch.from_numpy(
            chroma_filter_bank(
                num_frequency_bins=n_fft, num_chroma=num_chroma, sampling_rate=sampling_rate
            )
        ).float()  # [num_chroma, n_fft // 2 + 1]
        self.window = torch.hann_window(n_fft)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ChromaExtractor:
        """From a saved ``MusicgenMelodyFeatureExtractor`` config (its defaults for gaps)."""
        kind = config.get("feature_extractor_type")
        if kind != "MusicgenMelodyFeatureExtractor":
            raise ValueError(f"expected a MusicgenMelodyFeatureExtractor config, got {kind!r}")
        names = ("sampling_rate", "n_fft", "hop_length", "chunk_length", "num_chroma")
        return cls(**{name: int(config[name]) for name in names if name in config})

    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        """One-hot chroma ``[frames, num_chroma]`` (float32) of mono ``audio`` ``[samples]``
        at ``sampling_rate`` Hz; ``frames = samples // hop_length + 1`` (after the cut at
        ``chunk_length`` seconds and padding to at least ``n_fft`` samples)."""
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32))[: self.max_samples]
        if wav.shape[-1] < self.n_fft:  # centred zero padding, as the extractor does
            missing = self.n_fft - wav.shape[-1]
            wav = F.pad(wav, (missing // 2, missing - missing // 2))
        spec = torch.stft(
            wav,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        spec = (spec / self.window.pow(2.0).sum().sqrt()).abs().pow(2.0)  # [F, frames]
        raw = torch.einsum("cf,ft->ct", self.filters, spec)
        # The extractor normalises each frame by its maximum first: that cannot move the
        # argmax (ties included), so it is left out.
        strongest = raw.argmax(dim=0)
        chroma = torch.zeros(raw.shape[1], self.num_chroma)
        chroma[torch.arange(raw.shape[1]), strongest] = 1.0
        return chroma
