"""Plugin discovery end to end: entry points, broken and duplicate plugins, the disable switch."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

import guidance_kit as gk
from guidance_kit import registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_package"
ENTRY_POINT_GROUP_KEY = registry.ENTRY_POINT_GROUP

PROBE = textwrap.dedent(
    """
    import json, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import guidance_kit as gk
        listed = gk.list_registered()
        errors = gk.plugin_errors()
    print(json.dumps({"listed": listed, "errors": errors, "warnings": [str(w.message) for w in caught
                      if w.category is gk.registry.PluginWarning]}))
    """
)


# The built-in filters and the plugin that registers each: nothing else may add or drop one.
BUILTIN_FILTERS = {
    "butterworth": "filters",
    "downup": "filters",
    "gaussian": "filters",
    "chain": "transforms",
    "motion_amplitude": "transforms",
    "noise": "transforms",
    "scale": "transforms",
}


def probe(site: Path | None, **env: str) -> dict:
    environment = {**os.environ, **env}
    if site is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(site), environment.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example plugin package, pip-installed into its own directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return target


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A minimal installed distribution: a dist-info with entry points, plus its modules."""
    dist = site / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[guidance_kit]\n{lines}\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_builtins_are_one_static_list_not_entry_points():
    listed = gk.list_registered()
    assert listed["filter"] == BUILTIN_FILTERS
    assert set(listed["backend"]) >= {
        "wan2.1",
        "wan2.2-a14b",
        "wan2.2-ti2v",
        "cogvideox",
        "hunyuan-video",
        "ltx-video",
        "svd",
    }
    assert {name for name, _ in registry.BUILTIN_PLUGINS} == {
        "filters",
        "transforms",
        "schedules",
        "modes",
        "backends",
        "recipes",
        "flow",
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert ENTRY_POINT_GROUP_KEY not in project.get("entry-points", {})


def test_example_package_is_discovered_through_its_entry_point(example_site):
    result = probe(example_site)
    assert result["listed"]["filter"]["box"] == "example"
    assert result["listed"]["schedule"]["triangle"] == "example"
    assert result["listed"]["recipe"]["box-window"] == "example"
    assert result["errors"] == []


def test_disable_switch_loads_only_builtins(example_site):
    result = probe(example_site, GUIDANCE_KIT_DISABLE_PLUGINS="1")
    assert "box" not in result["listed"]["filter"]
    assert "downup" in result["listed"]["filter"]


def test_broken_plugin_is_named_and_import_still_works(tmp_path):
    fake_distribution(
        tmp_path,
        "broken-gk-plugin",
        {"broken": "broken_gk_plugin"},
        {
            "broken_gk_plugin": "raise ImportError('missing dependency xyz')",
        },
    )
    result = probe(tmp_path)
    assert "downup" in result["listed"]["filter"]
    assert any(
        "'broken'" in e and "broken-gk-plugin" in e and "missing dependency xyz" in e
        for e in result["errors"]
    )
    assert result["warnings"]


def test_duplicate_name_is_refused_and_named(tmp_path):
    fake_distribution(
        tmp_path,
        "dup-gk-plugin",
        {"dup": "dup_gk_plugin"},
        {
            "dup_gk_plugin": """
            import guidance_kit as gk
            from guidance_kit.plugins.filters import Gaussian

            class Impostor(Gaussian):
                name = "downup"

            @gk.hookimpl
            def register_filters():
                return [Impostor]
        """,
        },
    )
    result = probe(tmp_path)
    assert result["listed"]["filter"]["downup"] == "filters"  # the built-in keeps its name
    assert any("'dup'" in e and "'downup'" in e and "'filters'" in e for e in result["errors"])


def test_check_plugins_raises_on_errors(tmp_path):
    fake_distribution(tmp_path, "broken2", {"broken2": "broken2_mod"}, {"broken2_mod": "1/0"})
    code = "import guidance_kit as gk\ntry:\n    gk.check_plugins()\nexcept gk.PluginError as e:\n    print('ERR', e)\n"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "ERR" in out.stdout and "broken2" in out.stdout and "ZeroDivisionError" in out.stdout


def test_register_and_unregister_at_run_time():
    import attrs

    @attrs.frozen
    class Half(gk.Schedule):
        name = "half"

        def at(self, p):
            return 0.5

    class Plugin:
        @gk.hookimpl
        def register_schedules(self):
            return [Half]

    plugin = Plugin()
    gk.register_plugin(plugin, name="test-half")
    try:
        assert gk.get_schedule("half")(0, 10) == 0.5
        assert gk.list_registered()["schedule"]["half"] == "test-half"
    finally:
        gk.unregister_plugin(plugin)
    with pytest.raises(gk.UnknownNameError, match="'half'.*step_switch"):
        gk.get_schedule("half")


def test_register_duplicate_at_run_time_raises_and_leaves_registry_unchanged():
    from guidance_kit.plugins.schedules import Constant

    class Clash:
        @gk.hookimpl
        def register_schedules(self):
            return [Constant]

    before = gk.list_registered()
    with pytest.raises(gk.PluginError, match="'clash'.*'constant'.*'schedules'"):
        gk.register_plugin(Clash(), name="clash")
    assert gk.list_registered() == before
    assert gk.plugin_errors() == []


BAD_PLUGINS = {
    # entry point name -> module source: each must be skipped, named, and leave the built-ins alone
    "filters": """
        import guidance_kit as gk

        @gk.hookimpl
        def register_filters():
            return []
    """,
    "numbers": """
        import guidance_kit as gk

        @gk.hookimpl
        def register_filters():
            return [42]
    """,
    "text": """
        import guidance_kit as gk

        @gk.hookimpl
        def register_schedules():
            return "step_switch"
    """,
    "nameless": """
        import attrs
        import guidance_kit as gk

        @attrs.frozen
        class Nameless(gk.Filter):
            def apply(self, x, strength):
                return x

        @gk.hookimpl
        def register_filters():
            return [Nameless]
    """,
    "typo": """
        import guidance_kit as gk

        @gk.hookimpl
        def register_filter():
            return []
    """,
}


def test_bad_plugins_are_isolated_named_once_and_builtins_keep_working(tmp_path):
    fake_distribution(
        tmp_path,
        "bad-gk-plugins",
        {name: f"bad_{name}" for name in BAD_PLUGINS},
        {f"bad_{name}": source for name, source in BAD_PLUGINS.items()},
    )
    result = probe(tmp_path)
    assert result["listed"]["filter"] == BUILTIN_FILTERS
    assert "step_switch" in result["listed"]["schedule"] and "alg" in result["listed"]["recipe"]
    errors = result["errors"]
    assert len(errors) == len(BAD_PLUGINS) and len(result["warnings"]) == len(BAD_PLUGINS)  # once each

    def error_for(name: str) -> str:
        (found,) = [e for e in errors if f"'{name}' from bad-gk-plugins" in e or f"plugin '{name}':" in e]
        return found

    assert "belongs to a built-in plugin" in error_for("filters")
    assert "bad filter at index 0: 42 is not a class" in error_for("numbers")
    assert "returned 'step_switch' of type str, not a list" in error_for("text")
    assert "Nameless" in error_for("nameless") and "no string name" in error_for("nameless")
    assert "unknown hook(s) ['register_filter']" in error_for("typo")


def test_registry_is_built_once_per_process(tmp_path):
    fake_distribution(tmp_path, "broken3", {"broken3": "broken3_mod"}, {"broken3_mod": "1/0"})
    code = textwrap.dedent(
        """
        import json, warnings
        import pluggy
        managers = []
        init = pluggy.PluginManager.__init__
        pluggy.PluginManager.__init__ = lambda self, *a, **k: managers.append(1) or init(self, *a, **k)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import guidance_kit as gk
            gk.recipes.get("alg", backend="wan2.1")
            errors = gk.plugin_errors()
        print(json.dumps([len(managers), errors, len(caught)]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    managers, errors, warned = json.loads(out.stdout.strip().splitlines()[-1])
    assert managers == 1 and len(errors) == 1 and warned == 1 and "broken3" in errors[0]


class _Named:
    name = "x"


@pytest.mark.parametrize(
    "hook,result,message",
    [
        ("register_filters", [42], "bad filter at index 0: 42 is not a class"),
        ("register_filters", "downup", "returned 'downup' of type str, not a list"),
        ("register_schedules", [_Named], "class _Named is not an attrs subclass of Schedule"),
        ("register_recipes", [object()], "is not a RecipeEntry"),
        ("register_modes", None, None),  # None is an empty contribution, not an error
    ],
)
def test_register_plugin_with_malformed_results_raises_and_leaves_registry_unchanged(hook, result, message):
    plugin = type("Bad", (), {hook: staticmethod(gk.hookimpl(lambda: result))})
    before = gk.list_registered()
    if message is None:
        gk.register_plugin(plugin, name="empty")
        gk.unregister_plugin("empty")
    else:
        with pytest.raises(gk.PluginError, match=f"'bad'.*{message}"):
            gk.register_plugin(plugin, name="bad")
        assert not registry.plugin_manager().has_plugin("bad")
    assert gk.list_registered() == before and gk.plugin_errors() == []
    assert gk.get_filter("downup", factor=0.5).factor == 0.5


def test_register_plugin_with_a_typo_hook_is_refused():
    class Typo:
        @gk.hookimpl
        def register_filter(self):
            return []

    with pytest.raises(gk.PluginError, match=r"unknown hook\(s\) \['register_filter'\]"):
        gk.register_plugin(Typo(), name="typo")
    assert not registry.plugin_manager().has_plugin("typo")


def test_stale_builtin_entry_points_of_an_older_install_are_ignored(tmp_path):
    # Installs made before the built-ins became static list them as guidance-kit entry points.
    fake_distribution(tmp_path, "guidance-kit", {"filters": "no_such_module", "flow": "no_such_module"}, {})
    result = probe(tmp_path)
    assert result["errors"] == [] and result["listed"]["filter"]["downup"] == "filters"


def test_backend_table_names_every_backend_and_existing_tests():
    """docs/backends/index.md's invariants table lists every registered backend and pipeline
    class, and every test it names exists."""
    import re
    from pathlib import Path

    from guidance_kit import registry

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "backends" / "index.md").read_text()
    table = text[text.index("## Tested invariants") :]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    for name, backend in registry.tables()["backend"].items():
        assert any(f"| `{name}` |" in row for row in rows), f"backend {name!r} has no row"
        for pipeline in backend.pipelines:
            assert any(row.startswith(f"| `{pipeline}`") for row in rows), f"{pipeline} has no row"
    sources = "".join(p.read_text() for p in (root / "tests").glob("test_*.py"))
    for test in set(re.findall(r"`(test_\w+)`", table)):
        assert f"def {test}(" in sources, f"the table names {test}, which does not exist"
