"""The three abstractions a recipe mixes: filters, schedules and guidance modes.

Concrete ones live in ``plugins/``; this module only says what they are.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import torch

from guidance_kit.errors import InvalidParameterError


class Filter:
    """A low-pass filter applied to the image condition, modulated by a strength in [0, 1].

    Subclasses are frozen attrs classes with a ``name`` and implement :meth:`apply`. Calling a
    filter validates the strength and returns ``x`` itself at strength 0, so a strength-0 step
    is bit-identical to no filtering.
    """

    name: ClassVar[str]

    def __call__(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        strength = check_strength(strength)
        if self.is_identity(strength):
            return x
        if not torch.is_floating_point(x):
            raise InvalidParameterError(
                f"{self.name} filter needs a floating-point tensor, got dtype {x.dtype}"
            )
        if x.ndim < 2:
            raise InvalidParameterError(
                f"{self.name} filter needs a [..., H, W] tensor, got shape {tuple(x.shape)}"
            )
        return self.apply(x, strength)

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        raise NotImplementedError

    def is_identity(self, strength: float) -> bool:
        """True where the filter does nothing at ``strength``; guide() then runs the step as the
        plain pipeline would (no extra pass, bit-identical)."""
        return strength == 0.0

    def effective(self, strength: float, height: int | None = None) -> dict[str, Any]:
        """The filter's parameters at ``strength`` (recorded in the run trace)."""
        return {"strength": strength}

    def params(self) -> dict[str, Any]:
        return attrs.asdict(self)


class Schedule:
    """Maps denoising step ``i`` of ``N`` to a strength in [0, 1] through progress p = i / max(N-1, 1)."""

    name: ClassVar[str]

    def __call__(self, step: int, num_steps: int) -> float:
        if num_steps < 1 or not 0 <= step < num_steps:
            raise InvalidParameterError(
                f"step must satisfy 0 <= step < num_steps with num_steps >= 1, got step={step}, num_steps={num_steps}"
            )
        return self.at(progress(step, num_steps))

    def at(self, p: float) -> float:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return attrs.asdict(self)


def progress(step: int, num_steps: int) -> float:
    """p = i / max(N - 1, 1): 0 at the first step, 1 at the last."""
    return step / max(num_steps - 1, 1)


def check_strength(strength: float) -> float:
    s = float(strength)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise InvalidParameterError(f"strength must be in [0, 1], got {strength!r}")
    return s


@attrs.frozen
class GuidanceMode:
    """How the filtered image condition enters classifier-free guidance.

    With CFG of scale w, C = D(x, text, .), U = D(x, empty, .), I the image, LP(I) its filtered
    version, a filtered step computes

    * ``filter_cond``: C sees LP(I) instead of I;
    * ``filter_uncond``: U sees LP(I) instead of I;
    * ``original_anchor``: eps = U(I) + w * (C - U) where C, U are the two above (ALG's third pass);
      otherwise eps = U + w * (C - U).

    Without CFG only ``filter_cond`` matters (one pass).
    """

    name: str
    filter_cond: bool
    filter_uncond: bool
    original_anchor: bool
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if self.original_anchor and not self.filter_uncond:
            raise InvalidParameterError(
                f"mode {self.name!r}: original_anchor=True needs filter_uncond=True "
                "(with an unfiltered U the anchor is already the original image)"
            )
