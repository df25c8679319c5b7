"""Schedules keyed on the step clock's noise level: the same recipe filters the same part of the
noise range at any step count and flow shift."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

import guidance_kit as gk
from guidance_kit.clock import noise_levels
from guidance_kit.schedules import SigmaRamp, SigmaWindow

from conftest import pipeline, run_pipe


def recipe(schedule):
    return gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=schedule)


def test_sigma_window_filters_the_steps_whose_noise_level_is_inside(image):
    pipe, kwargs = pipeline("wan2.1")
    original = pipe.scheduler
    filtered = {}
    try:
        for shift in (1.0, 7.0):
            pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
            with gk.guide(pipe, recipe(SigmaWindow(low=0.9))) as run:
                run_pipe(pipe, kwargs, image, 8)
            sigmas = pipe.scheduler.sigmas[:8].tolist()
            assert run.last.filtered_steps == [i for i, s in enumerate(sigmas) if s >= 0.9]
            assert [r.noise_level for r in run.trace] == pytest.approx(sigmas)
            filtered[shift] = run.last.filtered_steps
    finally:
        pipe.scheduler = original
    # A larger shift keeps more steps at high noise: the window covers more step indices.
    assert 0 < len(filtered[1.0]) < len(filtered[7.0])


def test_same_recipe_at_different_step_counts_keeps_its_noise_range():
    window = SigmaWindow(low=0.8)
    for steps in (4, 8, 30, 50):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
        scheduler.set_timesteps(steps)
        levels = [level for _, _, level in noise_levels(scheduler)]
        on = [level for level in levels if window.at_level(level) == 1.0]
        assert on and min(on) >= 0.8 and all(level < 0.8 for level in levels if level not in on)


def test_ddim_noise_level_and_a_sigma_ramp(image):
    pipe, kwargs = pipeline("cogvideox")
    ramp = SigmaRamp(start=1.0, end=0.5, start_weight=1.0, end_weight=0.0)
    with gk.guide(pipe, recipe(ramp)) as run:
        run_pipe(pipe, kwargs, image, 6)
    alphas = pipe.scheduler.alphas_cumprod
    levels = [float((1 - alphas[int(t)]) ** 0.5) for t in pipe.scheduler.timesteps]
    assert [r.noise_level for r in run.trace] == pytest.approx(levels)
    expected = [min(1.0, max(0.0, (level - 0.5) / 0.5)) for level in levels]
    assert [r.strength for r in run.trace] == pytest.approx(expected)
    assert run.last.filtered_steps == [i for i, s in enumerate(expected) if s > 0]


def test_noise_level_schedules_validate_round_trip_and_fall_back_to_progress():
    with pytest.raises(gk.InvalidParameterError, match="SigmaWindow low must be <= high"):
        SigmaWindow(low=0.9, high=0.5)
    with pytest.raises(gk.InvalidParameterError, match="SigmaRamp end must be below start"):
        SigmaRamp(start=0.5, end=0.9)
    with pytest.raises(gk.InvalidParameterError, match="SigmaWindow low"):
        SigmaWindow(low=1.5)
    r = recipe(SigmaWindow(low=0.975))
    assert gk.Recipe.from_dict(r.to_dict()) == r
    # Without a scheduler (plots, schedule(i, N)) the level is that of a plain flow schedule: 1 - p.
    assert [SigmaWindow(low=0.6)(i, 6) for i in range(6)] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_scheduler_without_noise_levels_is_a_clear_error():
    class Bare:
        progress, noise_level = 0.0, None

    with pytest.raises(gk.GuidanceKitError, match="keyed on the noise level"):
        SigmaWindow().strength(Bare())


class _TwiceStepping:
    """A flow scheduler stand-in whose step may be called any number of times."""

    def __init__(self):
        self.config = {"use_flow_sigmas": True}

    def set_timesteps(self, n):
        self.sigmas = torch.linspace(1.0, 0.0, n + 1)
        self.timesteps = self.sigmas[:-1] * 1000

    def step(self, *args):
        return args


def test_step_clock_counts_several_scheduler_steps_as_one_and_restarts_per_loop():
    # Pipelines that step twice per denoising step (Cosmos) declare it; each set_timesteps
    # starts a loop of its own (windowed pipelines).
    from guidance_kit.clock import StepClock

    scheduler = _TwiceStepping()
    clock = StepClock(scheduler, step_calls_per_step=2)
    ended = []
    clock.on_step_end = lambda: ended.append(clock.state().step)
    for name, tap in clock.taps().items():
        setattr(scheduler, name, tap)
    scheduler.set_timesteps(3)
    for _ in range(2):
        scheduler.step()
    assert clock.step == 1 and ended == [0]
    state = clock.state()
    assert state.sigma == pytest.approx(2 / 3) and state.noise_level == state.sigma
    scheduler.set_timesteps(5)  # a new window
    assert clock.step == 0 and clock.num_steps == 5
    for _ in range(10):
        scheduler.step()
    assert not clock.active and ended == [0, 0, 1, 2, 3, 4]
