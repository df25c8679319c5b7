"""Built-in guidance_kit plugins: filters, schedules, guidance modes, backends and recipes.

Each module implements the same hooks a third-party plugin does and is registered directly
(``guidance_kit.registry.BUILTIN_PLUGINS``); third-party plugins come through the
``guidance_kit`` entry-point group.
"""
