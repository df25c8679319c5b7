"""Built-in schedules: strength as a function of progress p = i / max(N - 1, 1)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs

from guidance_kit.errors import InvalidParameterError
from guidance_kit.hookspecs import hookimpl
from guidance_kit.types import Schedule


def _unit(name: str):
    """attrs validator: a finite float in [0, 1]."""

    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise InvalidParameterError(
                f"{type(instance).__name__} {attribute.name} must be in [0, 1] ({name}), got {value!r}"
            )

    return check


def _window_end(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise InvalidParameterError(
            f"{type(instance).__name__} end must be in (0, 1] (progress where the ramp ends), got {value!r}"
        )


@attrs.frozen
class StepSwitch(Schedule):
    """1 inside the progress interval [start, end] (inclusive), 0 outside: ALG's filtering window.

    With 11 steps and end=0.2, steps 0, 1, 2 are filtered.
    """

    name: ClassVar[str] = "step_switch"
    start: float = attrs.field(default=0.0, converter=float, validator=_unit("progress"))
    end: float = attrs.field(default=0.1, converter=float, validator=_unit("progress"))

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
    start_weight: float = attrs.field(default=1.0, converter=float, validator=_unit("strength"))
    end_weight: float = attrs.field(default=0.0, converter=float, validator=_unit("strength"))
    end: float = attrs.field(default=1.0, converter=float, validator=_window_end)

    def at(self, p: float) -> float:
        if p >= self.end:
            return self.end_weight
        return self.start_weight + (self.end_weight - self.start_weight) * (p / self.end)


@attrs.frozen
class Cosine(Schedule):
    """Half-cosine annealing from ``start_weight`` at p=0 to ``end_weight`` at p=end, then ``end_weight``."""

    name: ClassVar[str] = "cosine"
    start_weight: float = attrs.field(default=1.0, converter=float, validator=_unit("strength"))
    end_weight: float = attrs.field(default=0.0, converter=float, validator=_unit("strength"))
    end: float = attrs.field(default=1.0, converter=float, validator=_window_end)

    def at(self, p: float) -> float:
        if p >= self.end:
            return self.end_weight
        blend = 0.5 * (1.0 + math.cos(math.pi * p / self.end))  # 1 at p=0, 0 at p=end
        return self.end_weight + (self.start_weight - self.end_weight) * blend


@attrs.frozen
class Exponential(Schedule):
    """exp(-rate * p): full strength at the first step, decaying over the run."""

    name: ClassVar[str] = "exponential"
    rate: float = attrs.field(default=5.0, converter=float)

    @rate.validator
    def _check(self, _: Any, value: float) -> None:
        if not 0.0 <= value < math.inf:
            raise InvalidParameterError(f"Exponential rate must be a finite number >= 0, got {value!r}")

    def at(self, p: float) -> float:
        return math.exp(-self.rate * p)


@attrs.frozen
class Constant(Schedule):
    """The same strength at every step (``Constant(1.0)`` is the naive "blur for all steps" ablation)."""

    name: ClassVar[str] = "constant"
    value: float = attrs.field(default=1.0, converter=float, validator=_unit("strength"))

    def at(self, p: float) -> float:
        return self.value


@hookimpl
def register_schedules() -> list[type[Schedule]]:
    return [StepSwitch, Linear, Cosine, Exponential, Constant]
