"""Built-in condition transforms beyond low-pass filters: the other motion levers people reach for.

Each is a :class:`~guidance_kit.types.Filter`, modulated by the schedule's strength s in [0, 1]
and the exact identity at s = 0, so every schedule and mode drives it and recipes serialise it
like the low-pass filters:

* ``noise``: Gaussian noise augmentation of the condition, x + s * std * n, with n drawn from a
  fixed seed (the same n at every step and call, so runs reproduce);
* ``scale``: condition strength, x scaled towards zero or towards its per-frame, per-channel mean
  by the factor a_s = 1 - (1 - factor) * s;
* ``motion_amplitude``: PainterI2V's lever, the padding frames' latents pushed away from the first
  frame's, x_k = x_0 + m_s * (x_k - x_0) for k >= 1 with m_s = 1 + (amplitude - 1) * s; it needs
  the frame axis of a ``[rows, C, F, H, W]`` condition with padding frames (F > 1);
* ``chain``: several transforms applied in order at the same strength (e.g. low-pass, then noise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch

from guidance_kit.errors import InvalidParameterError, shown
from guidance_kit.hookspecs import hookimpl
from guidance_kit.types import Filter
from guidance_kit.validators import choice, number


@attrs.frozen
class Noise(Filter):
    """Gaussian noise augmentation of the image condition (SVD's ``noise_aug_strength``, the
    noise knob of ComfyUI's Wan wrappers): x + s * std * n, n ~ N(0, 1) from ``seed``."""

    name: ClassVar[str] = "noise"
    # Bounded: latents are of unit scale; a larger std only drowns the condition (or overflows).
    std: float = number(
        "Noise std", default=0.1, lo=0.0, lo_open=True, hi=100.0, what="standard deviation at strength 1"
    )
    seed: int = number("Noise seed", default=0, lo=0, hi=2**63 - 1, integer=True)

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        n = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        return x + (strength * self.std) * n


@attrs.frozen
class Scale(Filter):
    """Condition strength: x scaled by a_s = 1 - (1 - factor) * s towards zero, or towards its
    mean over H and W (per frame and channel), which keeps the image's average colour."""

    name: ClassVar[str] = "scale"
    factor: float = number(
        "Scale factor", default=0.5, lo=0.0, hi=10.0, what="the condition's scale at strength 1"
    )
    toward: str = choice("Scale toward", ("zero", "mean"), default="zero")

    def factor_at(self, strength: float) -> float:
        return 1.0 - (1.0 - self.factor) * strength

    def is_identity(self, strength: float) -> bool:
        return self.factor_at(strength) == 1.0

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        a = self.factor_at(strength)
        if self.toward == "zero":
            return x * a
        mean = x.mean(dim=(-2, -1), keepdim=True)
        return mean + (x - mean) * a


@attrs.frozen
class MotionAmplitude(Filter):
    """PainterI2V's ``motion_amplitude`` (typically 1.0-1.15): the padding frames' latents are
    pushed away from the first frame's, x_k = x_0 + m_s * (x_k - x_0), m_s = 1 + (amplitude - 1) * s.
    Acts on the frame axis of a ``[rows, C, F, H, W]`` condition with F > 1."""

    name: ClassVar[str] = "motion_amplitude"
    amplitude: float = number("MotionAmplitude amplitude", default=1.15, lo=0.0, hi=10.0)

    def amplitude_at(self, strength: float) -> float:
        return 1.0 + (self.amplitude - 1.0) * strength

    def is_identity(self, strength: float) -> bool:
        return self.amplitude_at(strength) == 1.0

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        if x.ndim != 5 or x.shape[2] < 2:
            raise InvalidParameterError(
                f"motion_amplitude needs a [rows, C, F, H, W] image condition with padding frames (F > 1), "
                f"got shape {tuple(x.shape)}: this backend puts the image on a single latent frame"
            )
        first = x[:, :, :1]
        return torch.cat([first, first + self.amplitude_at(strength) * (x[:, :, 1:] - first)], dim=2)


def _filters(value: Any) -> tuple[Filter, ...]:
    """Chain members from filters or ``{"name": ..., **params}`` mappings (as recipes store them)."""
    from guidance_kit.recipe import get_filter

    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise InvalidParameterError(f"Chain filters must be a non-empty list of filters, got {shown(value)}")
    out = []
    for item in value:
        if isinstance(item, Filter):
            out.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out.append(get_filter(item["name"], **{k: v for k, v in item.items() if k != "name"}))
        else:
            raise InvalidParameterError(
                f"Chain filters: each item must be a filter or a mapping with a 'name', got {shown(item)}"
            )
    return tuple(out)


@attrs.frozen
class Chain(Filter):
    """Transforms applied in order at the same strength, e.g. ``Chain([DownUp(0.4), Noise(0.05)])``."""

    name: ClassVar[str] = "chain"
    filters: tuple[Filter, ...] = attrs.field(converter=_filters)

    def is_identity(self, strength: float) -> bool:
        return all(f.is_identity(strength) for f in self.filters)

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        for f in self.filters:
            x = f(x, strength)
        return x

    def effective(self, strength: float, height: int | None = None) -> dict[str, Any]:
        return {"strength": strength, "filters": [f.effective(strength, height) for f in self.filters]}

    def params(self) -> dict[str, Any]:
        return {"filters": [{"name": f.name, **f.params()} for f in self.filters]}


@hookimpl
def register_filters() -> list[type[Filter]]:
    return [Noise, Scale, MotionAmplitude, Chain]
