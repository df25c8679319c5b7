"""Schedules over denoising progress (the built-ins come from ``plugins/schedules.py``)."""

from guidance_kit.plugins.schedules import Constant, Cosine, Exponential, Linear, StepSwitch
from guidance_kit.types import Schedule, progress

__all__ = ["Constant", "Cosine", "Exponential", "Linear", "Schedule", "StepSwitch", "progress"]
