"""Exceptions raised by guidance_kit. Every message names the bad value and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable


class GuidanceKitError(Exception):
    """Base class of every guidance_kit error."""


class InvalidParameterError(GuidanceKitError, ValueError):
    """A filter, schedule or recipe parameter is outside its valid range."""


class UnknownNameError(GuidanceKitError, KeyError):
    """A name (filter, schedule, mode, backend, recipe) is not registered."""

    def __init__(self, kind: str, name: object, choices: Iterable[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(
            f"unknown {kind} {name!r}; registered {kind}s: {', '.join(self.choices) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class PluginError(GuidanceKitError):
    """A plugin failed to load, or registers a name another plugin already owns."""


class UnsupportedPipelineError(GuidanceKitError, TypeError):
    """No registered backend knows how to guide this pipeline."""
