"""Schedules over denoising progress or noise level (the built-ins come from ``plugins/schedules.py``)."""

from guidance_kit.plugins.schedules import (
    Constant,
    Cosine,
    Exponential,
    Linear,
    SigmaRamp,
    SigmaWindow,
    StepSwitch,
)
from guidance_kit.types import NoiseLevelSchedule, Schedule, progress

__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "Linear",
    "NoiseLevelSchedule",
    "Schedule",
    "SigmaRamp",
    "SigmaWindow",
    "StepSwitch",
    "progress",
]
