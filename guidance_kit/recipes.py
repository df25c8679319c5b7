"""Named recipes: ``gk.recipes.get("alg", backend="wan2.1")``."""

from __future__ import annotations

from guidance_kit import registry
from guidance_kit.recipe import Recipe, RecipeEntry


def entry(name: str, backend: str | None = None) -> RecipeEntry:
    """The entry for ``name``: its ``backend``-specific version when one is registered."""
    table: dict[str, RecipeEntry] = registry.tables()["recipe"]
    if backend is not None:
        registry.lookup("backend", backend)  # a clear error for an unknown backend name
        specific = table.get(f"{name}@{backend}")
        if specific is not None:
            return specific
    return registry.lookup("recipe", name)


def get(name: str, backend: str | None = None) -> Recipe:
    """The recipe called ``name``; with ``backend``, that backend's default for it if there is one."""
    return entry(name, backend).recipe


def names() -> list[str]:
    """Recipe names (backend-specific defaults are listed as ``name@backend``)."""
    return registry.names("recipe")


def entries() -> list[RecipeEntry]:
    return [registry.tables()["recipe"][key] for key in names()]
