"""Schedule formulas and edge cases; recipes: validation and round trips."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import guidance_kit as gk
from guidance_kit.schedules import Constant, Cosine, Exponential, Linear, StepSwitch


def strengths(schedule, n):
    return [schedule(i, n) for i in range(n)]


def test_step_switch_inclusive_window_spec_example():
    assert strengths(StepSwitch(0.0, 0.2), 11) == [1.0, 1.0, 1.0] + [0.0] * 8


def test_step_switch_released_defaults_at_50_steps():
    # p = i / 49: [0, 0.2] filters steps 0..9, [0, 0.04] steps 0..1, [0, 0.1] steps 0..4
    assert sum(strengths(StepSwitch(0.0, 0.2), 50)) == 10
    assert sum(strengths(StepSwitch(0.0, 0.04), 50)) == 2
    assert sum(strengths(StepSwitch(0.0, 0.1), 50)) == 5


def test_step_switch_interval_inside_the_run():
    assert strengths(StepSwitch(0.3, 0.5), 11) == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]


def test_single_step_run_has_progress_zero():
    assert StepSwitch(0.0, 0.0)(0, 1) == 1.0
    assert Linear(0.8, 0.2, 0.5)(0, 1) == 0.8


def test_linear_formula():
    sched = Linear(1.0, 0.0, end=0.5)
    assert strengths(sched, 11) == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0, 0, 0, 0, 0])
    assert Linear(0.2, 0.6, end=1.0)(5, 11) == pytest.approx(0.4)


def test_cosine_formula():
    sched = Cosine(1.0, 0.0, end=0.5)
    got = strengths(sched, 11)
    expected = [0.5 * (1 + math.cos(math.pi * (i / 10) / 0.5)) if i <= 5 else 0.0 for i in range(11)]
    assert got == pytest.approx(expected)
    assert got[0] == 1.0 and got[5] == pytest.approx(0.0)
    assert Cosine(0.9, 0.1, 1.0)(10, 21) == pytest.approx(0.5)


def test_exponential_and_constant():
    assert strengths(Exponential(2.0), 3) == pytest.approx([1.0, math.exp(-1.0), math.exp(-2.0)])
    assert strengths(Constant(0.3), 4) == [0.3] * 4


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.builds(StepSwitch, st.just(0.0), st.floats(0, 1)),
        st.builds(Linear, st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1)),
        st.builds(Cosine, st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1)),
        st.builds(Exponential, st.floats(0, 50)),
        st.builds(Constant, st.floats(0, 1)),
    ),
    st.integers(1, 200),
)
def test_every_schedule_stays_in_unit_interval(schedule, n):
    assert all(0.0 <= s <= 1.0 for s in strengths(schedule, n))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: StepSwitch(0.5, 0.2), r"start must be <= end, got start=0.5, end=0.2"),
        (lambda: StepSwitch(0.0, 1.5), r"end must be in \[0, 1\].*got 1.5"),
        (lambda: Linear(1.2, 0.0), r"start_weight must be in \[0, 1\].*got 1.2"),
        (lambda: Cosine(1.0, 0.0, end=0.0), r"end must be in \(0, 1\].*got 0.0"),
        (lambda: Exponential(-1.0), r"rate must be a finite number >= 0, got -1.0"),
        (lambda: Constant(2.0), r"value must be in \[0, 1\].*got 2.0"),
        (lambda: StepSwitch()(5, 5), r"0 <= step < num_steps.*step=5, num_steps=5"),
        (
            lambda: gk.get_schedule("warmup"),
            r"unknown schedule 'warmup'; registered schedules: constant, cosine, ",
        ),
    ],
)
def test_invalid_schedules_name_value_and_choices(build, match):
    with pytest.raises(gk.GuidanceKitError, match=match):
        build()


RECIPES = st.builds(
    gk.Recipe,
    filter=st.one_of(
        st.builds(gk.filters.DownUp, st.floats(0.05, 1.0)),
        st.builds(gk.filters.Gaussian, st.floats(0, 5), st.sampled_from([3, 5, 0.05])),
        st.builds(gk.filters.Butterworth, st.floats(0.01, 0.5), st.integers(1, 8)),
    ),
    schedule=st.one_of(
        st.builds(StepSwitch, st.just(0.0), st.floats(0, 1)),
        st.builds(Cosine, st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1)),
        st.builds(Exponential, st.floats(0, 20)),
    ),
    space=st.sampled_from(["latent", "pixel"]),
    mode=st.sampled_from(["alg", "replace", "cond_only"]),
)


@settings(max_examples=50, deadline=None)
@given(RECIPES)
def test_recipe_round_trips(recipe):
    assert gk.Recipe.from_dict(recipe.to_dict()) == recipe
    assert gk.Recipe.from_toml(recipe.to_toml()) == recipe
    assert gk.Recipe.from_yaml(recipe.to_yaml()) == recipe


def test_recipe_from_mappings_and_files(tmp_path):
    recipe = gk.Recipe(filter={"name": "downup", "factor": 0.4}, schedule={"name": "step_switch", "end": 0.2})
    assert recipe.filter == gk.filters.DownUp(0.4) and recipe.schedule == StepSwitch(0.0, 0.2)
    assert recipe.space == "latent" and recipe.mode == "alg"
    (tmp_path / "r.toml").write_text(recipe.to_toml())
    (tmp_path / "r.yaml").write_text(recipe.to_yaml())
    assert gk.Recipe.load(tmp_path / "r.toml") == recipe == gk.Recipe.load(tmp_path / "r.yaml")


def test_recipe_is_frozen():
    recipe = gk.recipes.get("alg")
    with pytest.raises(AttributeError):
        recipe.space = "pixel"
    assert recipe.replace(space="pixel").space == "pixel"


@pytest.mark.parametrize(
    "data,match",
    [
        (
            {"filter": "downup", "schedule": "constant"},
            r"filter 'downup': .*factor.*valid parameters: \['factor'\]",
        ),
        ({"filter": {"factor": 0.4}, "schedule": "constant"}, r"needs a 'name' key"),
        (
            {"filter": {"name": "downup", "factor": 0.4}, "schedule": "constant", "space": "rgb"},
            r"space must be one of \['latent', 'pixel'\], got 'rgb'",
        ),
        (
            {"filter": {"name": "downup", "factor": 0.4}, "schedule": "constant", "mode": "fancy"},
            r"unknown mode 'fancy'; registered modes: alg, cond_only, replace",
        ),
        ({"filter": {"name": "downup", "factor": 0.4}}, r"missing \['schedule'\]"),
        (
            {"filter": {"name": "downup", "factor": 0.4}, "schedule": "constant", "steps": 5},
            r"unknown key\(s\) \['steps'\]",
        ),
    ],
)
def test_invalid_recipes(data, match):
    with pytest.raises(gk.GuidanceKitError, match=match):
        gk.Recipe.from_dict(data)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe file not found"):
        gk.Recipe.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("filter = [unclosed")
    with pytest.raises(gk.InvalidParameterError, match="cannot parse recipe file"):
        gk.Recipe.load(bad)
    other = tmp_path / "r.ini"
    other.write_text("x")
    with pytest.raises(
        gk.InvalidParameterError, match=r"must end in .toml, .yaml, .yml or .json, got '.ini'"
    ):
        gk.Recipe.load(other)


def test_builtin_recipes_match_released_defaults():
    get = gk.recipes.get
    assert get("alg", backend="wan2.1") == gk.Recipe(
        filter=gk.filters.DownUp(0.4), schedule=StepSwitch(0, 0.2)
    )
    assert get("alg", backend="cogvideox") == gk.Recipe(
        filter=gk.filters.DownUp(0.25), schedule=StepSwitch(0, 0.04)
    )
    assert get("alg", backend="hunyuan-video").filter == gk.filters.DownUp(0.625)
    assert get("alg", backend="ltx-video").filter == gk.filters.DownUp(0.25)
    assert get("alg", backend="wan2.2-a14b").schedule == StepSwitch(0, 0.1)
    assert get("alg") == gk.Recipe(filter=gk.filters.DownUp(0.4), schedule=StepSwitch(0, 0.1))
    assert get("naive-blur").mode == "replace" and get("naive-blur").schedule == Constant(1.0)
    with pytest.raises(gk.UnknownNameError, match="unknown backend 'sora'"):
        get("alg", backend="sora")
    assert "alg@wan2.1" in gk.recipes.names()


def test_builtin_modes_declare_their_passes_and_own_their_formula():
    from guidance_kit.types import C_LP, U_I, U_LP

    u_i, u_lp, c_lp = (torch.full((1, 2), v, dtype=torch.float64) for v in (1.0, 3.0, 10.0))
    preds = {U_I: u_i, U_LP: u_lp, C_LP: c_lp}
    alg, replace, cond_only = (gk.get_mode(n) for n in ("alg", "replace", "cond_only"))
    assert alg.predictions(True) == (U_I, U_LP, C_LP) and alg.predictions(False) == (C_LP,)
    folded = alg.forward(preds, cfg=True)
    assert torch.equal(folded["uncond"], u_i) and torch.equal(folded["cond"], c_lp + u_i - u_lp)
    # With the pipeline's u + w (c - u): U(I) + w (C(LP I) - U(LP I)).
    w = 5.0
    eps = folded["uncond"] + w * (folded["cond"] - folded["uncond"])
    assert torch.equal(eps, u_i + w * (c_lp - u_lp))
    assert torch.equal(replace.forward(preds, cfg=True)["uncond"], u_lp)
    assert torch.equal(cond_only.forward(preds, cfg=True)["cond"], c_lp)
    assert set(replace.predictions(True)) == {U_LP, C_LP} and set(cond_only.predictions(True)) == {U_I, C_LP}
    assert all(set(m.forward(preds, cfg=False)) == {"cond"} for m in (alg, replace, cond_only))
