"""Low-pass filters (the built-ins come from ``plugins/filters.py``)."""

from guidance_kit.plugins.filters import (
    Butterworth,
    DownUp,
    Gaussian,
    butterworth_response,
    gaussian_kernel1d,
)
from guidance_kit.types import Filter

__all__ = ["Butterworth", "DownUp", "Filter", "Gaussian", "butterworth_response", "gaussian_kernel1d"]
