"""Low-pass filters and other condition transforms (the built-ins come from ``plugins/filters.py``
and ``plugins/transforms.py``)."""

from guidance_kit.plugins.filters import (
    Butterworth,
    DownUp,
    Gaussian,
    butterworth_response,
    gaussian_kernel1d,
)
from guidance_kit.plugins.transforms import Chain, MotionAmplitude, Noise, Scale
from guidance_kit.types import Filter

__all__ = [
    "Butterworth",
    "Chain",
    "DownUp",
    "Filter",
    "Gaussian",
    "MotionAmplitude",
    "Noise",
    "Scale",
    "butterworth_response",
    "gaussian_kernel1d",
]
