"""Exceptions raised by guidance_kit. Every message names the bad field, value (shortened by
:func:`shown`) or file, and the valid choices."""

from __future__ import annotations

from collections.abc import Iterable

MAX_SHOWN = 120  # characters of a user value a message may echo


def shown(value: object, limit: int = MAX_SHOWN, depth: int = 6) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message never echoes an unbounded value
    (a YAML alias bomb expands to gigabytes), and containers are walked only as far as shown."""
    try:
        if not isinstance(value, list | dict | tuple | set):
            text = repr(value)
        else:
            text = _shallow(value, limit, depth) if depth > 0 else "[...]"
    except Exception:  # a repr that raises must not replace the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shallow(value: list | dict | tuple | set, limit: int, depth: int) -> str:
    """repr of a container that stops once ``limit`` characters are written (no full walk)."""
    parts: list[str] = []
    size = 0
    items = value.items() if isinstance(value, dict) else value
    for item in items:
        if isinstance(value, dict):
            part = f"{shown(item[0], limit, depth - 1)}: {shown(item[1], limit, depth - 1)}"
        else:
            part = shown(item, limit, depth - 1)
        parts.append(part)
        size += len(part) + 2
        if size > limit:
            break
    open_, close = {"list": "[]", "dict": "{}", "tuple": "()", "set": "{}"}.get(type(value).__name__, "[]")
    return open_ + ", ".join(parts) + close


def brief(text: object, limit: int = 300) -> str:
    """A message (e.g. a parser's) on one line, cut to ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class GuidanceKitError(Exception):
    """Base class of every guidance_kit error."""


class InvalidParameterError(GuidanceKitError, ValueError):
    """A filter, schedule, recipe, sweep or call parameter is outside its valid range."""


class UnknownNameError(GuidanceKitError, KeyError):
    """A name (filter, schedule, mode, backend, recipe) is not registered."""

    def __init__(self, kind: str, name: object, choices: Iterable[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(
            f"unknown {kind} {shown(name)}; registered {kind}s: {', '.join(self.choices) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class PluginError(GuidanceKitError):
    """A plugin failed to load, registers something malformed, or a name another plugin owns."""


class UnsupportedPipelineError(GuidanceKitError, TypeError):
    """No registered backend knows how to guide this pipeline."""


class InputFileError(InvalidParameterError):
    """An input file (recipe, sweep, image) is unreadable, too large or malformed."""


class MissingFileError(GuidanceKitError, FileNotFoundError):
    """An input file does not exist (or is a directory where a file is needed)."""


class OutputError(GuidanceKitError):
    """An output folder or file cannot be written, or was not written."""


class NonFiniteVideoError(InvalidParameterError):
    """A video holds NaN or infinite values: its metrics would be meaningless."""


class ResumeMismatchError(GuidanceKitError):
    """An ablation folder holds results computed with a different configuration."""


class FolderLockedError(GuidanceKitError):
    """Another process is writing ablation results into the same folder."""
