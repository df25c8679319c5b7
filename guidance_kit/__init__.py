"""guidance_kit: composable conditioning schedules for image-to-video diffusion.

import guidance_kit as gk

recipe = gk.Recipe(filter=gk.filters.DownUp(0.4), schedule=gk.schedules.StepSwitch(0, 0.2))
with gk.guide(pipe, recipe) as run:
    video = pipe(image=image, prompt=prompt).frames[0]
print(run.trace)
"""

from guidance_kit import filters, recipes, schedules
from guidance_kit.backend import Backend
from guidance_kit.controller import CallTrace, Run, StepRecord, find_backend, guide
from guidance_kit.errors import (
    GuidanceKitError,
    InvalidParameterError,
    PluginError,
    UnknownNameError,
    UnsupportedPipelineError,
)
from guidance_kit.hookspecs import hookimpl
from guidance_kit.recipe import Recipe, RecipeEntry, get_filter, get_mode, get_schedule
from guidance_kit.registry import (
    check_plugins,
    list_registered,
    plugin_errors,
    register_plugin,
    reload,
    unregister_plugin,
)
from guidance_kit.types import Filter, GuidanceMode, Schedule

__version__ = "0.1.0"


def __getattr__(name: str):  # the modular guider imports diffusers: only when asked for
    if name in ("modular", "LowPassGuidance"):
        import importlib

        modular = importlib.import_module("guidance_kit.modular")
        return modular if name == "modular" else modular.LowPassGuidance
    raise AttributeError(f"module 'guidance_kit' has no attribute {name!r}")


__all__ = [
    "Backend",
    "CallTrace",
    "Filter",
    "GuidanceKitError",
    "GuidanceMode",
    "InvalidParameterError",
    "PluginError",
    "Recipe",
    "RecipeEntry",
    "Run",
    "Schedule",
    "StepRecord",
    "UnknownNameError",
    "UnsupportedPipelineError",
    "check_plugins",
    "filters",
    "find_backend",
    "get_filter",
    "get_mode",
    "get_schedule",
    "guide",
    "hookimpl",
    "list_registered",
    "plugin_errors",
    "recipes",
    "register_plugin",
    "reload",
    "schedules",
    "unregister_plugin",
]
