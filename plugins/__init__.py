"""Built-in guidance_kit plugins: filters, schedules, guidance modes, backends and recipes.

Each module is registered through the ``guidance_kit`` entry-point group, the same path a
third-party package uses.
"""
