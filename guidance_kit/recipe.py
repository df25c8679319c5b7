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
from guidance_kit.errors import InvalidParameterError, UnknownNameError
from guidance_kit.types import Filter, GuidanceMode, Schedule

SPACES = ("latent", "pixel")


def get_filter(name: str, **params: Any) -> Filter:
    """Build a registered filter by name, e.g. ``get_filter("butterworth", cutoff=0.3)``."""
    return _build("filter", name, params)


def get_schedule(name: str, **params: Any) -> Schedule:
    """Build a registered schedule by name, e.g. ``get_schedule("step_switch", end=0.2)``."""
    return _build("schedule", name, params)


def get_mode(name: str) -> GuidanceMode:
    return registry.lookup("mode", name)


def _build(kind: str, name: str, params: Mapping[str, Any]) -> Any:
    cls = registry.lookup(kind, name)
    valid = [a.name for a in attrs.fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InvalidParameterError(
            f"{kind} {name!r} has no parameter(s) {unknown}; valid parameters: {valid}"
        )
    try:
        return cls(**params)
    except TypeError as exc:  # a missing required parameter
        raise InvalidParameterError(f"{kind} {name!r}: {exc}; valid parameters: {valid}") from None


def _component(kind: str, base: type) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            params = dict(value)
            if "name" not in params:
                raise InvalidParameterError(
                    f"a {kind} given as a mapping needs a 'name' key, got {dict(value)!r}"
                )
            return _build(kind, params.pop("name"), params)
        if isinstance(value, str):
            return _build(kind, value, {})
        return value

    def validate(_: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, base):
            raise InvalidParameterError(
                f"recipe {attribute.name} must be a {base.__name__} or a mapping with a registered name "
                f"({', '.join(registry.names(kind))}), got {value!r}"
            )

    return attrs.field(converter=convert, validator=validate)


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A ``.toml``, ``.yaml``/``.yml`` or ``.json`` file (``what``: recipe, sweep) as a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise InvalidParameterError(
            f"{what} file {path} must end in .toml, .yaml, .yml or .json, got {suffix!r}"
        )
    text = path.read_text()
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)  # JSON is YAML
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InvalidParameterError(f"cannot parse {what} file {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidParameterError(f"{what} file {path} must hold a mapping, got {type(data).__name__}")
    return dict(data)


def _check_space(_: Any, __: attrs.Attribute, value: str) -> None:
    if value not in SPACES:
        raise InvalidParameterError(f"recipe space must be one of {list(SPACES)}, got {value!r}")


def _check_mode(_: Any, __: attrs.Attribute, value: str) -> None:
    if value not in registry.names("mode"):
        raise UnknownNameError("mode", value, registry.names("mode"))


@attrs.frozen
class Recipe:
    """What to filter, when, where and how: the unit ``guide`` applies to a pipeline.

    ``filter``: a :class:`Filter` (or ``{"name": ..., **params}``); ``schedule``: a
    :class:`Schedule` (or mapping); ``space``: ``"latent"`` filters the VAE latent of the image
    (recommended), ``"pixel"`` filters the preprocessed image and encodes it with the pipeline's
    own VAE path, once per distinct strength; ``mode``: a registered guidance mode name.
    """

    filter: Filter = _component("filter", Filter)
    schedule: Schedule = _component("schedule", Schedule)
    space: str = attrs.field(default="latent", validator=_check_space)
    mode: str = attrs.field(default="alg", validator=_check_mode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "filter": {"name": self.filter.name, **self.filter.params()},
            "schedule": {"name": self.schedule.name, **self.schedule.params()},
            "space": self.space,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        valid = [a.name for a in attrs.fields(cls)]
        unknown = sorted(set(data) - set(valid))
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
        return cls.from_dict(tomllib.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Recipe:
        data = yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise InvalidParameterError(f"a YAML recipe must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a ``.toml``, ``.yaml``/``.yml`` or ``.json`` recipe file."""
        return cls.from_dict(read_mapping(path, "recipe"))

    def replace(self, **changes: Any) -> Recipe:
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
