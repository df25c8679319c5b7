"""The hooks a guidance_kit plugin can implement.

A plugin is any module or object with functions decorated by :data:`hookimpl`. Built-ins and
third-party packages are found the same way: through the ``guidance_kit`` entry-point group::

    [project.entry-points.guidance_kit]
    my_filters = "my_package.plugin"

Registration hooks return lists; the framework merges them and refuses duplicate names.
Run-time hooks are called while :func:`guidance_kit.guide` is active, for observers
(loggers, visualisers, metric collectors). They must not change the tensors they see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from guidance_kit.backend import Backend
    from guidance_kit.controller import Run, StepRecord
    from guidance_kit.recipe import RecipeEntry
    from guidance_kit.types import Filter, GuidanceMode, Schedule

PROJECT = "guidance_kit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_filters() -> list[type[Filter]]:
    """Return filter classes. Each has a unique ``name`` class attribute and is built from keyword
    parameters; an instance is called as ``f(x, strength)`` on a ``[..., H, W]`` tensor."""


@hookspec
def register_schedules() -> list[type[Schedule]]:
    """Return schedule classes. An instance is called as ``sched(step, num_steps)`` and returns a
    strength in [0, 1]."""


@hookspec
def register_modes() -> list[GuidanceMode]:
    """Return guidance modes: which classifier-free-guidance branches see the filtered image and
    whether the unconditional anchor keeps the original one."""


@hookspec
def register_backends() -> list[Backend]:
    """Return backend instances: adapters that know where a diffusers pipeline's denoiser receives
    the image condition."""


@hookspec
def register_recipes() -> list[RecipeEntry]:
    """Return named recipes, optionally tied to a backend name (its released defaults)."""


@hookspec
def register_flow_estimators() -> list[type]:
    """Return optical-flow estimator classes for the motion metrics. Each has a ``name``; an
    instance maps two RGB frames ``[H, W, 3]`` in [0, 1] to a ``[H, W, 2]`` flow in pixels."""


@hookspec
def on_guide_enter(run: Run) -> None:
    """Called when :func:`guidance_kit.guide` attaches to a pipeline."""


@hookspec
def on_step(run: Run, record: StepRecord) -> None:
    """Called once per denoising step, after the scheduler step, with that step's trace record."""


@hookspec
def on_guide_exit(run: Run, error: BaseException | None) -> None:
    """Called after the pipeline has been restored, with the exception that ended the run, if any."""
