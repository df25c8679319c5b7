"""Fuzzing the public inputs: whatever goes into Recipe.from_dict, a recipe or sweep file, or any
registered filter or schedule parameter, only GuidanceKitError subclasses (with bounded messages)
come out; what is accepted works (finite filter output, schedule strengths in [0, 1])."""

import math

import attrs
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guidance_kit as gk
from guidance_kit import ablation, registry

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e-23, 0.5, 1.0, 1.5, 2.0, 3, 5, 64, 65, 1e308]),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)
KINDS = ("filter", "schedule")


def field_names(kind: str, name: str) -> list[str]:
    return [a.name for a in attrs.fields(registry.lookup(kind, name))]


@st.composite
def component(draw, kind: str):
    """A filter or schedule spec: usually a registered name with plausible parameter names."""
    names = registry.names(kind)
    name = draw(st.one_of(st.sampled_from(names), st.text(max_size=6), NASTY))
    if not isinstance(name, str) or name not in names:
        return draw(st.one_of(st.just(name), st.fixed_dictionaries({"name": st.just(name)})))
    keys = st.one_of(st.sampled_from(field_names(kind, name)), st.text(max_size=5))
    params = draw(st.dictionaries(keys, NASTY, max_size=3))
    return draw(st.sampled_from([name, {"name": name, **params}]))


RECIPES = st.fixed_dictionaries(
    {"filter": component("filter"), "schedule": component("schedule")},
    optional={
        "space": st.one_of(st.sampled_from(["latent", "pixel"]), NASTY),
        "mode": st.one_of(st.sampled_from(["alg", "replace", "cond_only"]), NASTY),
        "extra": NASTY,
    },
)


def only_named_errors(build, *args, **kwargs):
    """``build(*args, **kwargs)``; any exception must be a GuidanceKitError with a bounded message."""
    try:
        return build(*args, **kwargs)
    except gk.GuidanceKitError as exc:
        assert len(str(exc)) < 2000, str(exc)[:300]
        return None


def check_accepted(recipe: gk.Recipe) -> None:
    assert gk.Recipe.from_dict(recipe.to_dict()) == recipe
    x = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
    for strength in (0.0, 0.3, 1.0):
        out = only_named_errors(recipe.filter, x, strength)  # e.g. a kernel larger than the image
        assert out is None or (out.shape == x.shape and torch.isfinite(out).all())
    for step in range(4):
        assert 0.0 <= recipe.schedule(step, 4) <= 1.0


@FUZZ
@given(PLAIN)
def test_from_dict_on_anything_raises_only_named_errors(data):
    only_named_errors(gk.Recipe.from_dict, data)


@FUZZ
@given(RECIPES)
def test_from_dict_on_near_valid_recipes(data):
    recipe = only_named_errors(gk.Recipe.from_dict, data)
    if recipe is not None:
        check_accepted(recipe)


@FUZZ
@given(
    kind=st.sampled_from(KINDS),
    data=st.data(),
)
def test_every_registered_parameter_raises_only_named_errors(kind, data):
    name = data.draw(st.sampled_from(registry.names(kind)))
    params = data.draw(st.dictionaries(st.sampled_from(field_names(kind, name)), NASTY, max_size=3))
    built = only_named_errors(gk.get_filter if kind == "filter" else gk.get_schedule, name, **params)
    if built is not None:
        other = {"filter": gk.filters.DownUp(0.5), "schedule": gk.schedules.Constant(1.0)}
        check_accepted(gk.Recipe(**{**other, kind: built}))
        for value in built.params().values():
            assert not isinstance(value, bool) and (not isinstance(value, float) or math.isfinite(value))


TEXTS = st.one_of(
    st.text(max_size=60),
    RECIPES.map(lambda d: yaml.safe_dump(d, default_flow_style=True) if _dumpable(d) else "{}"),
    st.sampled_from(["filter: &a [1]\nschedule: *a\n", "filter = [" * 40, "a: 1\na: 2\n", "\x00"]),
)


def _dumpable(data) -> bool:
    try:
        yaml.safe_dump(data)
        return True
    except yaml.YAMLError:
        return False


@FUZZ
@given(
    text=TEXTS,
    raw=st.binary(max_size=40),
    suffix=st.sampled_from([".toml", ".yaml", ".yml", ".json", ".txt"]),
)
def test_recipe_and_sweep_files_raise_only_named_errors(tmp_path_factory, text, raw, suffix):
    folder = tmp_path_factory.mktemp("files", numbered=True)
    for i, content in enumerate((text.encode("utf-8", "surrogatepass"), raw)):
        path = folder / f"f{i}{suffix}"
        path.write_bytes(content)
        recipe = only_named_errors(gk.Recipe.load, path)
        if recipe is not None:
            check_accepted(recipe)
        only_named_errors(ablation.Sweep.load, path)


SWEEP_FIELDS = {
    "grid": st.one_of(
        st.dictionaries(
            st.sampled_from(["schedule.end", "filter.factor", "recipe", "x.y"]), st.lists(NASTY, max_size=2)
        ),
        NASTY,
    ),
    "steps": NASTY,
    "seeds": st.one_of(NASTY, st.lists(NASTY, max_size=2)),
    "images": st.one_of(st.sampled_from([["tiny:0"], "tiny:0", ["tiny:x"], ["nope.png"]]), NASTY),
    "prompts": st.one_of(st.lists(st.text(max_size=5), max_size=2), NASTY),
    "call": st.one_of(
        st.dictionaries(st.sampled_from(["guidance_scale", "num_frames", "prompt"]), NASTY), NASTY
    ),
    "model": NASTY,
    "recipe": st.one_of(st.sampled_from(["alg", "nope"]), RECIPES, NASTY),
}


@FUZZ
@given(st.fixed_dictionaries({}, optional=SWEEP_FIELDS))
def test_sweeps_raise_only_named_errors(data):
    only_named_errors(ablation.Sweep.from_dict, data)
