"""Recipes: a filter, a schedule, a space and a guidance mode, frozen and validated.

A recipe round-trips through plain dicts, TOML and YAML::

    filter = {name = "downup", factor = 0.4}
    schedule = {name = "step_switch", start = 0.0, end = 0.2}
    space = "latent"
    mode = "alg"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import tomli_w
import tomllib
import yaml

from guidance_kit import registry
from guidance_kit.errors import (
    GuidanceKitError,
    InputFileError,
    InvalidParameterError,
    MissingFileError,
    UnknownNameError,
    brief,
    shown,
)
from guidance_kit.types import Filter, GuidanceMode, Schedule

SPACES = ("latent", "pixel")
FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "yaml"}  # JSON is YAML
# Recipe and sweep files are a few hundred bytes; the bounds make a hostile file fail fast.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32


def get_filter(name: str, **params: Any) -> Filter:
    """Build a registered filter by name, e.g. ``get_filter("butterworth", cutoff=0.3)``."""
    return _build("filter", name, params)


def get_schedule(name: str, **params: Any) -> Schedule:
    """Build a registered schedule by name, e.g. ``get_schedule("step_switch", end=0.2)``."""
    return _build("schedule", name, params)


def get_mode(name: str) -> GuidanceMode:
    return registry.lookup("mode", name)


def _build(kind: str, name: Any, params: Mapping[str, Any]) -> Any:
    if not isinstance(name, str):
        raise InvalidParameterError(f"a {kind} name must be a string, got {shown(name)}")
    cls = registry.lookup(kind, name)
    valid = [a.name for a in attrs.fields(cls)]
    unknown = sorted(shown(k) if not isinstance(k, str) else k for k in set(params) - set(valid))
    if unknown:
        raise InvalidParameterError(
            f"{kind} {name!r} has no parameter(s) {unknown}; valid parameters: {valid}"
        )
    try:
        return cls(**params)
    except GuidanceKitError:
        raise
    except Exception as exc:  # a missing parameter, or a plugin's own check
        raise InvalidParameterError(
            f"{kind} {name!r}: {type(exc).__name__}: {brief(exc, 300)}; valid parameters: {valid}"
        ) from None


def _component(kind: str, base: type, optional: bool = False) -> Any:
    def convert(value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, Mapping):
            params = dict(value)
            if "name" not in params:
                raise InvalidParameterError(
                    f"a {kind} given as a mapping needs a 'name' key, got {shown(value)}"
                )
            return _build(kind, params.pop("name"), params)
        if isinstance(value, str):
            return _build(kind, value, {})
        return value

    def validate(_: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, base) and not (value is None and optional):
            raise InvalidParameterError(
                f"recipe {attribute.name} must be a {base.__name__} or a mapping with a registered name "
                f"({', '.join(registry.names(kind))}), got {shown(value)}"
            )

    return attrs.field(converter=convert, validator=validate, **({"default": None} if optional else {}))


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (a 500-byte alias bomb expands to gigabytes), with
    a nesting limit (deep nesting overflows the recursive composer) and no duplicate keys (the
    last one would win silently)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def _depth(value: Any) -> int:
    """Nesting depth of parsed data, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH and isinstance(item, Mapping | list):
            stack.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, Mapping) else item)
            )
    return deepest


def parse_mapping(text: str, fmt: str, source: str) -> dict[str, Any]:
    """``text`` in ``fmt`` ("toml" or "yaml") as a dict; ``source`` names it in errors."""
    if len(text) > MAX_FILE_BYTES:
        raise InputFileError(f"{source} is {len(text)} characters; the limit is {MAX_FILE_BYTES}")
    try:
        data = tomllib.loads(text) if fmt == "toml" else yaml.load(text, Loader=_BoundedLoader)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InputFileError(f"cannot parse {source}: {brief(exc, 400)}") from None
    except RecursionError:
        raise InputFileError(f"cannot parse {source}: nested too deeply") from None
    if not isinstance(data, Mapping):
        raise InputFileError(f"{source} must hold a mapping, got {type(data).__name__}")
    if _depth(data) > MAX_DEPTH:
        raise InputFileError(f"cannot parse {source}: nested deeper than {MAX_DEPTH} levels")
    return dict(data)


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A ``.toml``, ``.yaml``/``.yml`` or ``.json`` file (``what``: recipe, sweep) as a dict."""
    if not isinstance(path, str | Path):
        raise InvalidParameterError(f"a {what} file path must be a str or Path, got {shown(path)}")
    path = Path(path)
    if path.is_dir():
        raise MissingFileError(f"{what} file {path} is a directory, not a file")
    if not path.is_file():
        raise MissingFileError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputFileError(f"{what} file {path} must end in .toml, .yaml, .yml or .json, got {suffix!r}")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputFileError(f"{what} file {path} is over {MAX_FILE_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    return parse_mapping(text, FORMATS[suffix], f"{what} file {path}")


def _check_space(_: Any, __: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or value not in SPACES:
        raise InvalidParameterError(f"recipe space must be one of {list(SPACES)}, got {shown(value)}")


def _check_mode(_: Any, __: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or value not in registry.names("mode"):
        raise UnknownNameError("mode", value, registry.names("mode"))


@attrs.frozen
class Recipe:
    """What to filter, when, where and how: the unit ``guide`` applies to a pipeline.

    ``filter``: a :class:`Filter` (or ``{"name": ..., **params}``); ``schedule``: a
    :class:`Schedule` (or mapping); ``space``: ``"latent"`` filters the VAE latent of the image
    (recommended), ``"pixel"`` filters the preprocessed image and encodes it with the pipeline's
    own VAE path, once per distinct strength; ``mode``: a registered guidance mode name;
    ``guidance``: an optional schedule of the guidance scale, g in [0, 1] per step: the pipeline's
    scale w becomes 1 + (w - 1) * g (g = 0: the conditional prediction alone; g = 1: unchanged),
    e.g. ``StepSwitch(0, 0.3)`` for CFG only in the first 30% of the steps.
    """

    filter: Filter = _component("filter", Filter)
    schedule: Schedule = _component("schedule", Schedule)
    space: str = attrs.field(default="latent", validator=_check_space)
    mode: str = attrs.field(default="alg", validator=_check_mode)
    guidance: Schedule | None = _component("schedule", Schedule, optional=True)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "filter": {"name": self.filter.name, **self.filter.params()},
            "schedule": {"name": self.schedule.name, **self.schedule.params()},
            "space": self.space,
            "mode": self.mode,
        }
        if self.guidance is not None:  # absent rather than null: older recipes keep their keys
            out["guidance"] = {"name": self.guidance.name, **self.guidance.params()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        if not isinstance(data, Mapping):
            raise InvalidParameterError(f"a recipe must be a mapping, got {shown(data)}")
        valid = [a.name for a in attrs.fields(cls)]
        unknown = sorted(k if isinstance(k, str) else shown(k) for k in set(data) - set(valid))
        if unknown:
            raise InvalidParameterError(f"recipe has unknown key(s) {unknown}; valid keys: {valid}")
        missing = [k for k in ("filter", "schedule") if k not in data]
        if missing:
            raise InvalidParameterError(f"recipe is missing {missing}; a recipe needs keys {valid}")
        return cls(**data)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> Recipe:
        return cls.from_dict(parse_mapping(text, "toml", "TOML recipe"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Recipe:
        return cls.from_dict(parse_mapping(text, "yaml", "YAML recipe"))

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` recipe file."""
        return cls.from_dict(read_mapping(path, "recipe"))

    def replace(self, **changes: Any) -> Recipe:
        valid = [a.name for a in attrs.fields(type(self))]
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise InvalidParameterError(f"recipe has no field(s) {unknown}; valid fields: {valid}")
        return attrs.evolve(self, **changes)


@attrs.frozen
class RecipeEntry:
    """A named recipe, optionally the default for one backend."""

    name: str
    recipe: Recipe
    backend: str | None = None
    description: str = ""
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.backend}" if self.backend else self.name
