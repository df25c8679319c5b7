"""The one validator factory behind every frozen config (filters, schedules, sweeps, CLI values).

Each factory returns an ``attrs.field`` (or a plain check function) whose error is an
:class:`~guidance_kit.errors.InvalidParameterError` that names the field, the valid range and
the (shortened) bad value. Booleans are never numbers here: ``factor: yes`` in YAML is a
mistake, not ``1.0``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from guidance_kit.errors import InvalidParameterError, shown


def _expected(lo: float, hi: float, lo_open: bool, hi_open: bool, integer: bool) -> str:
    """ "in (0.0, 1.0]", "a finite number >= 0", "an int in [1, 64]": bounds as the field gives them."""
    kind = "an int" if integer else "a finite number"
    if lo == -math.inf and hi == math.inf:
        return kind
    if hi == math.inf:
        return f"{kind} {'>' if lo_open else '>='} {lo!r}"
    if lo == -math.inf:
        return f"{kind} {'<' if hi_open else '<='} {hi!r}"
    interval = f"{'(' if lo_open else '['}{lo!r}, {hi!r}{')' if hi_open else ']'}"
    return f"an int in {interval}" if integer else f"in {interval}"


def check_number(
    label: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    what: str = "",
) -> float | int:
    """``value`` as a float (or int) inside the interval, else an error naming ``label``."""
    expected = f"{label} must be {_expected(lo, hi, lo_open, hi_open, integer)}"
    expected += f" ({what})" if what else ""
    wanted = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise InvalidParameterError(f"{expected}, got {shown(value)} of type {type(value).__name__}")
    try:
        number = int(value) if integer else float(value)
    except (OverflowError, ValueError):  # an int too large for a float
        raise InvalidParameterError(f"{expected}, got {shown(value)}") from None
    inside = (lo < number if lo_open else lo <= number) and (number < hi if hi_open else number <= hi)
    if not inside or (not integer and not math.isfinite(number)):
        raise InvalidParameterError(f"{expected}, got {shown(value)}")
    return number


def number(label: str, *, default: Any = attrs.NOTHING, **bounds: Any) -> Any:
    """An attrs field holding a finite float (or, with ``integer=True``, an int) in bounds."""
    return attrs.field(default=default, converter=lambda value: check_number(label, value, **bounds))


def check_text(label: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise InvalidParameterError(
            f"{label} must be a{'' if empty else ' non-empty'} string, got {shown(value)} of type {type(value).__name__}"
        )
    return value


def text(label: str, *, default: Any = attrs.NOTHING, empty: bool = False) -> Any:
    return attrs.field(default=default, converter=lambda value: check_text(label, value, empty=empty))


def check_list(label: str, value: Any, item: Callable[[str, Any], Any]) -> list[Any]:
    """A non-empty list whose items pass ``item(label_of_item, value)``. A bare string is refused:
    ``prompts = "a dog"`` would otherwise iterate its characters."""
    if not isinstance(value, list | tuple) or not value:
        raise InvalidParameterError(
            f"{label} must be a non-empty list, got {shown(value)} of type {type(value).__name__}"
        )
    return [item(f"{label}[{i}]", v) for i, v in enumerate(value)]


def listing(label: str, item: Callable[[str, Any], Any], *, default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, converter=lambda value: check_list(label, value, item))


def check_mapping(label: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidParameterError(f"{label} must be a table with string keys, got {shown(value)}")
    return dict(value)


def mapping(label: str, *, default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, converter=lambda value: check_mapping(label, value))


# Set by generate() and the ablation runner themselves; a sweep's ``call`` table must not.
RESERVED_CALL_ARGS = frozenset(
    {"image", "prompt", "num_inference_steps", "generator", "output_type", "steps", "seed"}
)
MAX_CALL_DEPTH = 8


def _check_plain(label: str, value: Any, depth: int = 0) -> None:
    """JSON-like values only: they are part of the key a finished ablation cell is found by."""
    if depth > MAX_CALL_DEPTH:
        raise InvalidParameterError(f"{label} is nested deeper than {MAX_CALL_DEPTH} levels")
    if isinstance(value, float):
        check_number(label, value)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(f"{label}[{i}]", item, depth + 1)
    elif isinstance(value, Mapping):
        for key, item in check_mapping(label, value).items():
            _check_plain(f"{label}.{key}", item, depth + 1)
    elif value is not None and not isinstance(value, bool | int | str):
        raise InvalidParameterError(
            f"{label} must be a number, string, bool, list or table, got {shown(value)} of type {type(value).__name__}"
        )


def check_call_args(label: str, value: Any) -> dict[str, Any]:
    """Extra pipeline call arguments (``guidance_scale``, ``num_frames``, ...), checked before any
    model is loaded."""
    call = check_mapping(label, value)
    reserved = sorted(set(call) & RESERVED_CALL_ARGS)
    if reserved:
        raise InvalidParameterError(f"{label} must not set {reserved}: the runner sets them itself")
    for key, item in call.items():
        _check_plain(f"{label}.{key}", item)
    if call.get("guidance_scale") is not None:
        check_number(f"{label}.guidance_scale", call["guidance_scale"], lo=0)
    for key in ("num_frames", "height", "width"):
        if call.get(key) is not None:
            check_number(f"{label}.{key}", call[key], lo=1, hi=100_000, integer=True)
    return call


def check_choice(label: str, value: Any, options: tuple[str, ...]) -> str:
    """``value`` if it is one of ``options``, else an error naming ``label`` and the choices."""
    if not isinstance(value, str) or value not in options:
        raise InvalidParameterError(f"{label} must be one of {list(options)}, got {shown(value)}")
    return value


def choice(label: str, options: tuple[str, ...], *, default: Any = attrs.NOTHING) -> Any:
    """An attrs field holding one of ``options``."""
    return attrs.field(default=default, converter=lambda value: check_choice(label, value, options))
