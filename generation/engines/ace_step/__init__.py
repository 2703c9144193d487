"""ACE-Step 1.5 (diffusers' ``AceStepPipeline``): stems generated from their musical context.

``loader`` loads a pipeline once (hub id into the cache, or a local directory);
``generate`` runs text2music (a guide performance), lego (a stem over a track) and extract
(a stem out of the guide) for a batch of clips, 48 kHz stereo out.
"""

from generation.engines.ace_step.generate import (
    STEM_TRACKS,
    TRACK_NAMES,
    Clip,
    Musical,
    PhaseTimes,
    Sampling,
    Task,
    generate_clips,
    track_for_stem,
)
from generation.engines.ace_step.loader import (
    AceStepLoadError,
    LoadedAceStep,
    load_ace_step,
)

__all__ = [
    "STEM_TRACKS",
    "TRACK_NAMES",
    "AceStepLoadError",
    "Clip",
    "LoadedAceStep",
    "Musical",
    "PhaseTimes",
    "Sampling",
    "Task",
    "generate_clips",
    "load_ace_step",
    "track_for_stem",
]
