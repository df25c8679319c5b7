"""The plugin manager: registers the built-in plugins, loads third-party plugins from the
``guidance_kit`` entry-point group, and merges what they register into name tables.

The built-ins are one static list (:data:`BUILTIN_PLUGINS`, like pytest's ``default_plugins``)
registered directly, so no entry point can shadow or drop them. Set
``GUIDANCE_KIT_DISABLE_PLUGINS=1`` to load only the built-ins. A third-party plugin that fails
to import, implements a hook that does not exist, returns something malformed from a register
hook, or registers a name another plugin already owns is skipped with one :class:`PluginWarning`
naming it; :func:`plugin_errors` lists such problems and :func:`check_plugins` raises them.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from guidance_kit import hookspecs
from guidance_kit.errors import PluginError, UnknownNameError, brief, shown

ENTRY_POINT_GROUP = "guidance_kit"
DISABLE_ENV = "GUIDANCE_KIT_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "guidance-kit"
# Registered in this order: the recipes module builds Recipe objects at import time, which
# look up the modes registered before it.
BUILTIN_PLUGINS = (
    ("filters", "guidance_kit.plugins.filters"),
    ("transforms", "guidance_kit.plugins.transforms"),
    ("schedules", "guidance_kit.plugins.schedules"),
    ("modes", "guidance_kit.plugins.modes"),
    ("backends", "guidance_kit.plugins.backends"),
    ("flow", "guidance_kit.plugins.flow"),
    ("recipes", "guidance_kit.plugins.recipes"),
)
BUILTIN_NAMES = frozenset(name for name, _ in BUILTIN_PLUGINS)
HOOKS = {
    "filter": "register_filters",
    "schedule": "register_schedules",
    "mode": "register_modes",
    "backend": "register_backends",
    "flow": "register_flow_estimators",
    "recipe": "register_recipes",
}
KINDS = tuple(HOOKS)


class PluginWarning(UserWarning):
    """A third-party plugin was skipped."""


@attrs.frozen
class _Tables:
    """One merge of every plugin's register hooks."""

    items: dict[str, dict[str, Any]]
    owners: dict[str, dict[str, str]]
    errors: list[str]


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_loading = False  # plugins are being imported: lookups see what is registered so far
_merged: _Tables | None = None
_load_errors: list[str] = []
_warned: set[str] = set()


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _warn(messages: list[str]) -> None:
    """One warning per problem per process, however often the tables are rebuilt."""
    for message in messages:
        if message not in _warned:
            _warned.add(message)
            warnings.warn(message, PluginWarning, stacklevel=4)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager (loaded once, on first use)."""
    with _lock:
        if _pm is None:
            _load()
        assert _pm is not None
        return _pm


def _load() -> None:
    global _pm, _loading
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    # Published before the plugins are imported: a plugin module that builds a Recipe at import
    # time looks names up through this same manager instead of building a second one.
    _pm, _loading = pm, True
    try:
        for name, module in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(module), name=name)
        if not _disabled():
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                _load_entry_point(pm, ep)
    except BaseException:
        _pm = None
        raise
    finally:
        _loading = False
    _warn(_load_errors)


def _load_entry_point(pm: pluggy.PluginManager, ep: EntryPoint) -> None:
    dist = getattr(ep.dist, "name", None) or "?"
    if dist.lower().replace("_", "-") == BUILTIN_DISTRIBUTION:
        return  # an install made before the built-ins became static still lists them
    label = f"plugin {ep.name!r} from {dist} ({ep.value})"
    if ep.name in BUILTIN_NAMES:
        _load_errors.append(
            f"{label}: the name {ep.name!r} belongs to a built-in plugin; rename the entry point"
        )
        return
    if pm.has_plugin(ep.name):
        _load_errors.append(f"{label}: the name is already registered by another plugin")
        return
    try:
        plugin = ep.load()
    except Exception as exc:  # a broken plugin must not break `import guidance_kit`
        _load_errors.append(f"{label} failed to load: {type(exc).__name__}: {brief(exc, 300)}")
        return
    problem = _register(pm, plugin, ep.name)
    if problem:
        _load_errors.append(f"{label} {problem}")


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> str | None:
    """Register ``plugin``; on a problem leave ``pm`` as it was and describe the problem."""
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy refuses a hook whose arguments do not match its spec
        return f"cannot be registered: {type(exc).__name__}: {brief(exc, 300)}"
    unknown = _unknown_hooks(pm, plugin)
    if unknown:
        pm.unregister(plugin)
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith(("register_", "on_"))))
        return f"implements unknown hook(s) {unknown}; the hooks are: {known}"
    return None


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations with no spec (a typo such as ``register_filter``): what
    ``pm.check_pending()`` finds, attributed to one plugin."""
    unknown = []
    for hook_name, caller in vars(pm.hook).items():
        if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
            if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
                unknown.append(hook_name)
    return sorted(unknown)


def _is_builtin(plugin: object) -> bool:
    return getattr(plugin, "__name__", "").startswith("guidance_kit.plugins.")


def _expected_type(kind: str) -> type | None:
    """What a register hook must return items of (imported late: these modules import registry)."""
    from guidance_kit.backend import Backend
    from guidance_kit.recipe import RecipeEntry
    from guidance_kit.types import Filter, GuidanceMode, Schedule

    return {
        "filter": Filter,
        "schedule": Schedule,
        "mode": GuidanceMode,
        "backend": Backend,
        "recipe": RecipeEntry,
    }.get(kind)


def _item_problem(kind: str, item: Any) -> str | None:
    expected = _expected_type(kind)
    if kind in ("filter", "schedule", "flow"):
        if not isinstance(item, type):
            return f"{shown(item)} is not a class"
        if expected is not None and not (issubclass(item, expected) and attrs.has(item)):
            return f"class {item.__name__} is not an attrs subclass of {expected.__name__}"
    elif expected is not None and not isinstance(item, expected):
        return f"{shown(item)} is not a {expected.__name__}"
    key = item.key if kind == "recipe" else getattr(item, "name", None)
    if not isinstance(key, str) or not key:
        return f"{shown(item)} has no string name"
    return None


def _results(kind: str, result: Any) -> tuple[list[Any], str | None]:
    """The items a register hook returned, or a description of what is wrong with them."""
    if result is None:
        return [], None
    if not isinstance(result, list | tuple):
        return [], f"returned {shown(result)} of type {type(result).__name__}, not a list"
    for index, item in enumerate(result):
        problem = _item_problem(kind, item)
        if problem:
            return [], f"returned a bad {kind} at index {index}: {problem}"
    return list(result), None


def _merge(pm: pluggy.PluginManager) -> _Tables:
    items: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    owners: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    errors: list[str] = []
    for kind, hook_name in HOOKS.items():
        # Built-ins first, then plugins in registration order, so a later duplicate is the one refused.
        impls = sorted(getattr(pm.hook, hook_name).get_hookimpls(), key=lambda i: not _is_builtin(i.plugin))
        for impl in impls:
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            try:
                result = impl.function()
            except Exception as exc:
                errors.append(
                    f"plugin {plugin_name!r} raised in {hook_name}: {type(exc).__name__}: {brief(exc, 300)}"
                )
                continue
            found, problem = _results(kind, result)
            if problem:
                errors.append(f"plugin {plugin_name!r}: {hook_name}() {problem}; its {kind}s are ignored")
                continue
            for item in found:
                key = item.key if kind == "recipe" else item.name
                if key in items[kind]:
                    errors.append(
                        f"plugin {plugin_name!r} registers {kind} {key!r}, already registered by plugin "
                        f"{owners[kind][key]!r}; the duplicate is ignored"
                    )
                    continue
                items[kind][key] = item
                owners[kind][key] = plugin_name
    return _Tables(items, owners, errors)


def _current() -> _Tables:
    global _merged
    with _lock:
        pm = plugin_manager()
        if _loading:  # a plugin module looking names up while it is imported: not final, not kept
            return _merge(pm)
        if _merged is None:
            _merged = _merge(pm)
            _warn(_merged.errors)
        return _merged


def tables() -> dict[str, dict[str, Any]]:
    """``{kind: {name: registered object}}`` over every loaded plugin."""
    return _current().items


def refresh() -> None:
    """Forget the merged tables (after registering or unregistering a plugin)."""
    global _merged
    with _lock:
        _merged = None


def reload() -> None:
    """Reload every plugin from the entry points (e.g. after installing a plugin package)."""
    global _pm
    with _lock:
        _pm = None
        _load_errors.clear()
        _warned.clear()
        refresh()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time. Raises :class:`PluginError` if it
    implements an unknown hook, returns something malformed, or registers a name that is
    already taken; the registry is left unchanged then."""
    pm = plugin_manager()
    with _lock:
        if name is not None and pm.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered; choose another name")
        before = _current()
        problem = _register(pm, plugin, name)
        if problem:
            raise PluginError(f"plugin {name or shown(plugin)!r} {problem}")
        candidate = _merge(pm)
        new = [e for e in candidate.errors if e not in before.errors]
        if new:
            pm.unregister(plugin)
            raise PluginError("; ".join(new))
        global _merged
        _merged = candidate
        return pm.get_name(plugin)


def unregister_plugin(plugin_or_name: object | str) -> None:
    pm = plugin_manager()
    with _lock:
        if isinstance(plugin_or_name, str):
            pm.unregister(name=plugin_or_name)
        else:
            pm.unregister(plugin_or_name)
        refresh()


def plugin_errors() -> list[str]:
    """Messages for plugins that were skipped (failed to load, malformed, or duplicated a name)."""
    merged = _current()  # loads the plugins first, which fills _load_errors
    return [*_load_errors, *merged.errors]


def check_plugins() -> None:
    """Raise :class:`PluginError` if any plugin was skipped."""
    errors = plugin_errors()
    if errors:
        raise PluginError("; ".join(errors))


def lookup(kind: str, name: str) -> Any:
    table = tables()[kind]
    if not isinstance(name, str) or name not in table:
        raise UnknownNameError(kind, name, table)
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(tables()[kind])


def list_registered() -> dict[str, dict[str, str]]:
    """Everything registered: ``{kind: {name: plugin that registered it}}``."""
    owners = _current().owners
    return {kind: dict(sorted(owners[kind].items())) for kind in KINDS}


def call_observers(hook: str) -> Callable[..., Any]:
    return getattr(plugin_manager().hook, hook)
