"""The three abstractions a recipe mixes: filters, schedules and guidance modes.

Concrete ones live in ``plugins/``; this module only says what they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs
import torch

from guidance_kit.errors import GuidanceKitError, InvalidParameterError


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
    """Maps denoising step ``i`` of ``N`` to a strength in [0, 1] through progress p = i / max(N-1, 1).

    Inside :func:`guidance_kit.guide` the controller asks :meth:`strength` with the step clock's
    state (step, progress, timestep, sigma, noise level), so a schedule may key on the noise level
    instead (see :class:`NoiseLevelSchedule`).
    """

    name: ClassVar[str]

    def __call__(self, step: int, num_steps: int) -> float:
        if num_steps < 1 or not 0 <= step < num_steps:
            raise InvalidParameterError(
                f"step must satisfy 0 <= step < num_steps with num_steps >= 1, got step={step}, num_steps={num_steps}"
            )
        return self.at(progress(step, num_steps))

    def strength(self, state: Any) -> float:
        """The strength at a step of a running loop (a :class:`guidance_kit.clock.StepState`)."""
        return self.at(state.progress)

    def at(self, p: float) -> float:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return attrs.asdict(self)


class NoiseLevelSchedule(Schedule):
    """A schedule keyed on the normalised noise level in [0, 1] (1 = pure noise) rather than on
    the step index, so one recipe filters the same part of the noise range at any step count or
    flow shift. Subclasses implement :meth:`at_level`.

    Where no scheduler is at hand (``schedule(i, N)``, plots without a pipeline) the level is
    taken as 1 - p, the level of an unshifted flow-matching schedule; inside ``guide()`` it is
    the scheduler's own.
    """

    def strength(self, state: Any) -> float:
        if state.noise_level is None:
            raise GuidanceKitError(
                f"schedule {self.name!r} is keyed on the noise level, and the step clock cannot read one "
                "from this scheduler (no sigmas, no alphas_cumprod); use a progress schedule"
            )
        return self.at_level(state.noise_level)

    def at(self, p: float) -> float:
        return self.at_level(1.0 - p)

    def at_level(self, level: float) -> float:
        raise NotImplementedError


def progress(step: int, num_steps: int) -> float:
    """p = i / max(N - 1, 1): 0 at the first step, 1 at the last."""
    return step / max(num_steps - 1, 1)


def check_strength(strength: float) -> float:
    s = float(strength)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise InvalidParameterError(f"strength must be in [0, 1], got {strength!r}")
    return s


Branch = Literal["uncond", "cond"]
ImageKind = Literal["original", "lowpass"]


@attrs.frozen
class Prediction:
    """One denoiser pass a guidance mode needs: a CFG branch seeing the original or the filtered image."""

    branch: Branch
    image: ImageKind

    def __str__(self) -> str:
        return f"{'C' if self.branch == 'cond' else 'U'}({'LP I' if self.image == 'lowpass' else 'I'})"


U_I = Prediction("uncond", "original")
U_LP = Prediction("uncond", "lowpass")
C_I = Prediction("cond", "original")
C_LP = Prediction("cond", "lowpass")


class GuidanceMode:
    """How the filtered image condition enters classifier-free guidance on a filtered step.

    Like a diffusers guider, a mode declares the predictions it needs and owns their combination
    in a pure :meth:`forward`. The pipeline keeps combining its own pair u + w * (c - u) with
    whatever scale w it uses (per step, per frame, per expert), so ``forward`` returns the pair
    (u, c) to hand it: the mode's formula must be affine in the pipeline's combination. With
    C = D(x, text, .), U = D(x, empty, .), I the image and LP I its filtered version, ALG needs
    U(I), U(LP I), C(LP I) and returns u = U(I), c = C(LP I) + U(I) - U(LP I), so the pipeline
    computes U(I) + w * (C(LP I) - U(LP I)).

    Without CFG (w <= 1 or guidance-distilled models) the pipeline runs the conditional branch
    only: ``predictions(cfg=False)`` lists conditional predictions and ``forward`` returns ``c``.
    Subclasses set ``name`` and ``description`` and implement both methods; register instances
    through the ``register_modes`` hook.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def predictions(self, cfg: bool) -> tuple[Prediction, ...]:
        """The passes a filtered step needs, with and without classifier-free guidance."""
        raise NotImplementedError

    def forward(self, preds: Mapping[Prediction, torch.Tensor], cfg: bool) -> dict[Branch, torch.Tensor]:
        """Fold the predictions into ``{"uncond": u, "cond": c}`` (``{"cond": c}`` without CFG)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<mode {self.name}: {self.description}>"
