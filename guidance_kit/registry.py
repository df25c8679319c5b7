"""The plugin manager: loads plugins from the ``guidance_kit`` entry-point group and merges what
they register into name tables.

Set ``GUIDANCE_KIT_DISABLE_PLUGINS=1`` to load only the built-in plugins. A third-party plugin
that fails to import, or registers a name another plugin already owns, is skipped with a
:class:`PluginWarning` naming it; :func:`plugin_errors` lists such problems and
:func:`check_plugins` raises them.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from guidance_kit import hookspecs
from guidance_kit.errors import PluginError, UnknownNameError

ENTRY_POINT_GROUP = "guidance_kit"
DISABLE_ENV = "GUIDANCE_KIT_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "guidance-kit"
BUILTIN_PLUGINS = {
    "filters": "guidance_kit.plugins.filters",
    "schedules": "guidance_kit.plugins.schedules",
    "modes": "guidance_kit.plugins.modes",
    "backends": "guidance_kit.plugins.backends",
    "recipes": "guidance_kit.plugins.recipes",
    "flow": "guidance_kit.plugins.flow",
}
KINDS = ("filter", "schedule", "mode", "backend", "flow", "recipe")


class PluginWarning(UserWarning):
    """A third-party plugin was skipped."""


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_tables: dict[str, dict[str, Any]] | None = None
# The tables while they are being built: recipes are registered last and may validate against
# the filters, schedules and modes registered before them.
_building: dict[str, dict[str, Any]] | None = None
_owners: dict[str, dict[str, str]] = {}
_errors: list[str] = []


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    found_builtin = False
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None)
        builtin = dist is not None and dist.lower().replace("_", "-") == BUILTIN_DISTRIBUTION
        if builtin:
            found_builtin = True
        elif _disabled():
            continue
        if pm.has_plugin(ep.name):
            _fail(f"plugin {ep.name!r} from {dist or '?'}: the name is already registered by another plugin")
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not break `import guidance_kit`
            if builtin:
                raise
            _fail(
                f"plugin {ep.name!r} from {dist or '?'} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
            )
    if not found_builtin:
        # Running from a source tree that was never installed: the entry points are not visible.
        for name, module in BUILTIN_PLUGINS.items():
            if not pm.has_plugin(name):
                pm.register(importlib.import_module(module), name=name)
    return pm


def _fail(message: str) -> None:
    _errors.append(message)
    warnings.warn(message, PluginWarning, stacklevel=3)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager (loaded on first use)."""
    global _pm
    with _lock:
        if _pm is None:
            _pm = _new_manager()
        return _pm


def _is_builtin(plugin: object) -> bool:
    return getattr(plugin, "__name__", "").startswith("guidance_kit.plugins.")


def _build_tables() -> dict[str, dict[str, Any]]:
    pm = plugin_manager()
    hooks = {
        "filter": pm.hook.register_filters,
        "schedule": pm.hook.register_schedules,
        "mode": pm.hook.register_modes,
        "backend": pm.hook.register_backends,
        "flow": pm.hook.register_flow_estimators,
        "recipe": pm.hook.register_recipes,
    }
    global _building
    tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    _building = tables
    _owners.clear()
    for kind, hook in hooks.items():
        owners = _owners.setdefault(kind, {})
        # Built-ins first, then plugins in registration order, so a later duplicate is the one refused.
        impls = sorted(hook.get_hookimpls(), key=lambda impl: not _is_builtin(impl.plugin))
        for impl in impls:
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            try:
                items = impl.function() or []
            except Exception as exc:
                _fail(f"plugin {plugin_name!r} raised in {hook.name}: {type(exc).__name__}: {exc}")
                continue
            for item in items:
                key = item.key if kind == "recipe" else item.name
                if key in tables[kind]:
                    _fail(
                        f"plugin {plugin_name!r} registers {kind} {key!r}, already registered by plugin "
                        f"{owners[key]!r}; the duplicate is ignored"
                    )
                    continue
                tables[kind][key] = item
                owners[key] = plugin_name
    _building = None
    return tables


def tables() -> dict[str, dict[str, Any]]:
    global _tables
    with _lock:
        if _building is not None:
            return _building
        if _tables is None:
            try:
                _tables = _build_tables()
            finally:
                globals()["_building"] = None
        return _tables


def refresh() -> None:
    """Forget the merged tables (after registering or unregistering a plugin)."""
    global _tables
    with _lock:
        _tables = None


def reload() -> None:
    """Reload every plugin from the entry points (e.g. after installing a plugin package)."""
    global _pm
    with _lock:
        _pm = None
        _errors.clear()
        refresh()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time. Raises :class:`PluginError` if it
    registers a name that is already taken; the registry is left unchanged then."""
    pm = plugin_manager()
    with _lock:
        if name is not None and pm.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered; choose another name")
        before = len(_errors)
        registered = pm.register(plugin, name=name)
        refresh()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            tables()
        new = _errors[before:]
        if new:
            del _errors[before:]
            pm.unregister(plugin)
            refresh()
            raise PluginError("; ".join(new))
        return registered


def unregister_plugin(plugin_or_name: object | str) -> None:
    pm = plugin_manager()
    with _lock:
        if isinstance(plugin_or_name, str):
            pm.unregister(name=plugin_or_name)
        else:
            pm.unregister(plugin_or_name)
        refresh()


def plugin_errors() -> list[str]:
    """Messages for plugins that were skipped (failed to load or duplicated a name)."""
    tables()
    return list(_errors)


def check_plugins() -> None:
    """Raise :class:`PluginError` if any plugin was skipped."""
    errors = plugin_errors()
    if errors:
        raise PluginError("; ".join(errors))


def lookup(kind: str, name: str) -> Any:
    table = tables()[kind]
    if name not in table:
        raise UnknownNameError(kind, name, table)
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(tables()[kind])


def list_registered() -> dict[str, dict[str, str]]:
    """Everything registered: ``{kind: {name: plugin that registered it}}``."""
    tables()
    return {kind: dict(sorted(_owners.get(kind, {}).items())) for kind in KINDS}


def call_observers(hook: str) -> Callable[..., Any]:
    return getattr(plugin_manager().hook, hook)
