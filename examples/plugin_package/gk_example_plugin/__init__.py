"""An example third-party guidance_kit plugin.

It adds a ``box`` filter (a mean filter over a k x k window, strength-modulated by blending),
a ``triangle`` schedule (0 -> peak -> 0) and a ``box-window`` recipe that uses both.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F

import guidance_kit as gk


@attrs.frozen
class Box(gk.Filter):
    """Mean over a ``size`` x ``size`` window (replicate padding); at strength s the output is
    (1 - s) * x + s * box(x)."""

    name: ClassVar[str] = "box"
    size: int = attrs.field(default=3)

    @size.validator
    def _check(self, _: Any, value: int) -> None:
        if not isinstance(value, int) or value < 1 or value % 2 == 0:
            raise gk.InvalidParameterError(f"Box size must be an odd int >= 1, got {value!r}")

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        pad = self.size // 2
        y = x.reshape(-1, 1, *x.shape[-2:]).float()
        y = F.avg_pool2d(F.pad(y, (pad, pad, pad, pad), mode="replicate"), self.size, stride=1)
        blurred = y.reshape(x.shape).to(x.dtype)
        return torch.lerp(x, blurred, strength)


@attrs.frozen
class Triangle(gk.Schedule):
    """Rises linearly from 0 at p=0 to 1 at p=peak, then falls to 0 at p=end."""

    name: ClassVar[str] = "triangle"
    peak: float = attrs.field(default=0.1, converter=float)
    end: float = attrs.field(default=0.2, converter=float)

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.peak < self.end <= 1.0:
            raise gk.InvalidParameterError(
                f"Triangle needs 0 < peak < end <= 1, got peak={self.peak}, end={self.end}"
            )

    def at(self, p: float) -> float:
        if p <= self.peak:
            return p / self.peak
        return max(0.0, (self.end - p) / (self.end - self.peak))


@gk.hookimpl
def register_filters():
    return [Box]


@gk.hookimpl
def register_schedules():
    return [Triangle]


@gk.hookimpl
def register_recipes():
    recipe = gk.Recipe(filter=Box(5), schedule=Triangle(0.1, 0.3), space="latent", mode="alg")
    return [gk.RecipeEntry("box-window", recipe, description="example plugin: box blur on a triangle window")]
