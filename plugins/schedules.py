"""Built-in schedules: strength as a function of progress p = i / max(N - 1, 1)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs

from guidance_kit.errors import InvalidParameterError
from guidance_kit.hookspecs import hookimpl
from guidance_kit.types import NoiseLevelSchedule, Schedule
from guidance_kit.validators import number


def _unit(label: str, what: str, default: float) -> Any:
    """A float field in [0, 1]."""
    return number(label, default=default, lo=0, hi=1, what=what)


@attrs.frozen
class StepSwitch(Schedule):
    """1 inside the progress interval [start, end] (inclusive), 0 outside: ALG's filtering window.

    With 11 steps and end=0.2, steps 0, 1, 2 are filtered.
    """

    name: ClassVar[str] = "step_switch"
    start: float = _unit("StepSwitch start", "progress", 0.0)
    end: float = _unit("StepSwitch end", "progress", 0.1)

    def __attrs_post_init__(self) -> None:
        if self.start > self.end:
            raise InvalidParameterError(
                f"StepSwitch start must be <= end, got start={self.start}, end={self.end}"
            )

    def at(self, p: float) -> float:
        return 1.0 if self.start <= p <= self.end else 0.0


@attrs.frozen
class Linear(Schedule):
    """Linear from ``start_weight`` at p=0 to ``end_weight`` at p=end, then ``end_weight``."""

    name: ClassVar[str] = "linear"
    start_weight: float = _unit("Linear start_weight", "strength", 1.0)
    end_weight: float = _unit("Linear end_weight", "strength", 0.0)
    end: float = number(
        "Linear end", default=1.0, lo=0, hi=1, lo_open=True, what="progress where the ramp ends"
    )

    def at(self, p: float) -> float:
        if p >= self.end:
            return self.end_weight
        return self.start_weight + (self.end_weight - self.start_weight) * (p / self.end)


@attrs.frozen
class Cosine(Schedule):
    """Half-cosine annealing from ``start_weight`` at p=0 to ``end_weight`` at p=end, then ``end_weight``."""

    name: ClassVar[str] = "cosine"
    start_weight: float = _unit("Cosine start_weight", "strength", 1.0)
    end_weight: float = _unit("Cosine end_weight", "strength", 0.0)
    end: float = number(
        "Cosine end", default=1.0, lo=0, hi=1, lo_open=True, what="progress where the ramp ends"
    )

    def at(self, p: float) -> float:
        if p >= self.end:
            return self.end_weight
        blend = 0.5 * (1.0 + math.cos(math.pi * p / self.end))  # 1 at p=0, 0 at p=end
        return self.end_weight + (self.start_weight - self.end_weight) * blend


@attrs.frozen
class Exponential(Schedule):
    """exp(-rate * p): full strength at the first step, decaying over the run."""

    name: ClassVar[str] = "exponential"
    rate: float = number("Exponential rate", default=5.0, lo=0)

    def at(self, p: float) -> float:
        return math.exp(-self.rate * p)


@attrs.frozen
class Constant(Schedule):
    """The same strength at every step (``Constant(1.0)`` is the naive "blur for all steps" ablation)."""

    name: ClassVar[str] = "constant"
    value: float = _unit("Constant value", "strength", 1.0)

    def at(self, p: float) -> float:
        return self.value


@attrs.frozen
class SigmaWindow(NoiseLevelSchedule):
    """1 while the noise level is in [low, high], 0 elsewhere: ALG keyed on the noise level, as
    ports that "filter while sigma >= 0.975" do. The same recipe then filters the same part of
    the noise range at 4 or 50 steps and at any flow shift."""

    name: ClassVar[str] = "sigma_window"
    low: float = _unit("SigmaWindow low", "noise level", 0.9)
    high: float = _unit("SigmaWindow high", "noise level", 1.0)

    def __attrs_post_init__(self) -> None:
        if self.low > self.high:
            raise InvalidParameterError(
                f"SigmaWindow low must be <= high, got low={self.low}, high={self.high}"
            )

    def at_level(self, level: float) -> float:
        return 1.0 if self.low <= level <= self.high else 0.0


@attrs.frozen
class SigmaRamp(NoiseLevelSchedule):
    """Linear in the noise level: ``start_weight`` at levels >= ``start``, ``end_weight`` at
    levels <= ``end``, a straight line between."""

    name: ClassVar[str] = "sigma_ramp"
    start: float = _unit("SigmaRamp start", "noise level where the ramp starts", 1.0)
    end: float = _unit("SigmaRamp end", "noise level where the ramp ends", 0.8)
    start_weight: float = _unit("SigmaRamp start_weight", "strength", 1.0)
    end_weight: float = _unit("SigmaRamp end_weight", "strength", 0.0)

    def __attrs_post_init__(self) -> None:
        if self.end >= self.start:
            raise InvalidParameterError(
                f"SigmaRamp end must be below start (levels fall over the run), got start={self.start}, end={self.end}"
            )

    def at_level(self, level: float) -> float:
        if level >= self.start:
            return self.start_weight
        if level <= self.end:
            return self.end_weight
        t = (self.start - level) / (self.start - self.end)
        return self.start_weight + (self.end_weight - self.start_weight) * t


@hookimpl
def register_schedules() -> list[type[Schedule]]:
    return [StepSwitch, Linear, Cosine, Exponential, Constant, SigmaWindow, SigmaRamp]
