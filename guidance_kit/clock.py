"""The step clock: where the guided pipeline call is in its denoising loop.

The clock listens to the pipeline's scheduler through two taps, on ``set_timesteps`` (a new
loop of N steps begins) and on ``step`` (a step ends). A tap is an instance attribute that is
safe to deep-copy: pipelines that ``copy.deepcopy`` their scheduler (LTX-2's audio scheduler,
per-frame schedulers in diffusion forcing) get a copy whose methods are its own again, so the
copy neither advances this clock nor steps the original scheduler.

Per step the clock exposes i, N, progress p = i / max(N - 1, 1), the timestep, the scheduler's
sigma and a normalised noise level in [0, 1] comparable across schedulers: sigma itself for flow
matching, sigma / sqrt(1 + sigma^2) = sqrt(1 - alpha_bar) for DDPM/DDIM/EDM-style schedulers.
"""

from __future__ import annotations

import functools
import math
import threading
import types
from collections.abc import Callable
from typing import Any

import attrs

from guidance_kit.errors import GuidanceKitError
from guidance_kit.types import progress


@attrs.frozen
class StepState:
    """Step i of N of the current loop, with the scheduler's view of the noise there."""

    step: int
    num_steps: int
    progress: float
    timestep: float | None
    sigma: float | None
    noise_level: float | None


def _is_flow(scheduler: Any) -> bool:
    config = getattr(scheduler, "config", {})
    return (
        "FlowMatch" in type(scheduler).__name__
        or bool(config.get("use_flow_sigmas", False))
        or config.get("prediction_type") == "flow_prediction"
    )


def noise_levels(scheduler: Any) -> list[tuple[float | None, float | None, float | None]]:
    """``(timestep, sigma, noise level)`` for every entry of ``scheduler.timesteps``."""
    timesteps = [float(t) for t in getattr(scheduler, "timesteps", [])]
    sigmas = getattr(scheduler, "sigmas", None)
    flow = _is_flow(scheduler)
    out = []
    for i, t in enumerate(timesteps):
        sigma = level = None
        if sigmas is not None and len(sigmas) > i:
            sigma = float(sigmas[i])
            level = sigma if flow else sigma / math.sqrt(1.0 + sigma * sigma)
        else:
            alphas = getattr(scheduler, "alphas_cumprod", None)
            if alphas is not None and 0 <= int(t) < len(alphas):
                level = math.sqrt(max(0.0, 1.0 - float(alphas[int(t)])))
        out.append((t, sigma, level))
    return out


class SchedulerTap:
    """An instance-level wrapper of one scheduler method that reports to the clock."""

    def __init__(
        self, scheduler: Any, inner: Callable[..., Any], before: Callable[[], None], after: Callable[[], None]
    ):
        self.scheduler, self.inner, self.before, self.after = scheduler, inner, before, after
        functools.update_wrapper(self, inner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.before()
        out = self.inner(*args, **kwargs)
        self.after()
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # copy.deepcopy registers the new scheduler in memo before copying its attributes: give the
        # copy its own, unwrapped method.
        copied = memo.get(id(self.scheduler))
        inner = self.inner
        if copied is not None and isinstance(inner, types.MethodType) and inner.__self__ is self.scheduler:
            return types.MethodType(inner.__func__, copied)
        return inner


class StepClock:
    """Counts the steps of the loop the tracked scheduler runs. All loop state lives here and is
    reset in one place, :meth:`begin`."""

    def __init__(
        self,
        scheduler: Any,
        step_calls_per_step: int = 1,
        driver: str = "scheduler",
        loop_length: Callable[[int], int] | None = None,
    ):
        self.scheduler = scheduler
        self.step_calls_per_step = step_calls_per_step
        # "scheduler": a step ends after step_calls_per_step calls of scheduler.step. "denoiser":
        # the owner calls advance() itself (pipelines that never step this scheduler, such as
        # diffusion forcing's per-frame copies), and loop_length(N) gives the loop's step count
        # at its first step (N: the timesteps set_timesteps made).
        self.driver = driver
        self.loop_length = loop_length or (lambda n: n)
        self.on_begin: Callable[[int], None] = lambda n: None
        self.on_step_end: Callable[[], None] = lambda: None
        self.reset()

    def reset(self) -> None:
        self.step: int | None = None
        self.num_steps = 0
        self.owner: int | None = None
        self._levels: list[tuple[float | None, float | None, float | None]] = []
        self._step_calls = 0
        self._sized = False

    @property
    def active(self) -> bool:
        return self.step is not None

    def check_thread(self, what: str) -> None:
        """Refuse a second thread inside a loop that another thread is running: the scheduler and
        the guide's per-step state are shared, so interleaved loops would mix their steps."""
        if self.active and self.owner != threading.get_ident():
            raise GuidanceKitError(
                f"{what} from a second thread while another thread is inside a guided denoising loop "
                f"of this {type(self.scheduler).__name__}; a guide() block serves one call at a time"
            )

    def begin(self) -> None:
        self._levels = noise_levels(self.scheduler)
        self.step, self.num_steps = 0, len(self._levels)
        self.owner = threading.get_ident()
        self._step_calls = 0
        self._sized = False
        self.on_begin(self.num_steps)

    def advance(self) -> None:
        if self.step is None:
            return
        self._step_calls += 1
        if self._step_calls < self.step_calls_per_step:
            return
        self._step_calls = 0
        self.on_step_end()
        self.step += 1
        if self.step >= self.num_steps:
            self.reset()

    def state(self) -> StepState:
        i = self.step
        assert i is not None
        if not self._sized:
            self.num_steps, self._sized = self.loop_length(self.num_steps), True
        # A loop longer than the scheduler's timesteps (diffusion forcing's staggered frames, whose
        # leading frame is clean by then) is at the schedule's end past them.
        timestep, sigma, level = self._levels[i] if i < len(self._levels) else (0.0, 0.0, 0.0)
        return StepState(i, self.num_steps, progress(i, self.num_steps), timestep, sigma, level)

    def taps(self) -> dict[str, SchedulerTap]:
        """The wrappers to install as ``scheduler.set_timesteps`` and ``scheduler.step``."""
        s = self.scheduler
        return {
            "set_timesteps": SchedulerTap(
                s, s.set_timesteps, lambda: self.check_thread("set_timesteps"), self.begin
            ),
            "step": SchedulerTap(
                s,
                s.step,
                lambda: self.check_thread("scheduler.step"),
                self.advance if self.driver == "scheduler" else lambda: None,
            ),
        }
