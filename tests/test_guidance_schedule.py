"""Guidance-scale schedules: the pipeline's scale w becomes 1 + (w - 1) * g per step, alone or with
ALG, checked against the pipelines' own loops with the scale changed from a step callback."""

import attrs
import pytest
import torch

import guidance_kit as gk
from guidance_kit.schedules import Constant, Linear, StepSwitch

from conftest import pipeline, run_pipe

STEPS = 6
NO_FILTER = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=Constant(0.0))
ALG = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=StepSwitch(0.0, 0.4))


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def scale_from_step(g, w):
    """A step callback setting the pipeline's scale for the next step to 1 + (w - 1) g(i + 1)."""

    def callback(pipe, i, t, callback_kwargs):
        if i + 1 < STEPS:
            pipe._guidance_scale = 1 + (w - 1) * g(i + 1, STEPS)
        return callback_kwargs

    return callback


@pytest.mark.parametrize("recipe", [NO_FILTER, ALG], ids=["cfg-only-early", "with-alg"])
def test_cfg_only_in_the_first_steps_on_wan(recipe, image):
    # Wan skips its unconditional call once its scale is 1: the reference turns CFG off after step 2.
    pipe, kwargs = pipeline("wan2.1")
    window = StepSwitch(0.0, 0.4)
    with gk.guide(pipe, attrs.evolve(recipe, guidance=window)) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
    assert [r.guidance for r in run.trace] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    w = kwargs.get("guidance_scale", 5.0)
    if recipe is NO_FILTER:
        expected = run_pipe(pipe, kwargs, image, STEPS, callback_on_step_end=scale_from_step(window, w))
    else:
        with gk.guide(pipe, ALG):
            expected = run_pipe(pipe, kwargs, image, STEPS, callback_on_step_end=scale_from_step(window, w))
    assert rel(got, expected) < 1e-12
    assert rel(got, run_pipe(pipe, kwargs, image, STEPS)) > 1e-6


def test_linear_guidance_ramp_on_ltx(image):
    # LTX-Video reads its scale every step: the reference sets it from a step callback.
    pipe, kwargs = pipeline("ltx-video")
    # (Not down to 0: at a scale of exactly 1 the reference loop would drop its CFG batch mid-run.)
    ramp = Linear(start_weight=1.0, end_weight=0.2)
    w = kwargs.get("guidance_scale", 3.0)
    with gk.guide(pipe, attrs.evolve(NO_FILTER, guidance=ramp)) as run:
        got = run_pipe(pipe, kwargs, image, STEPS, guidance_scale=w)
    expected = run_pipe(
        pipe, kwargs, image, STEPS, guidance_scale=w, callback_on_step_end=scale_from_step(ramp, w)
    )
    assert [r.guidance for r in run.trace] == pytest.approx([ramp(i, STEPS) for i in range(STEPS)])
    assert rel(got, expected) < 1e-6  # LTX-Video casts predictions to float32
    assert rel(got, run_pipe(pipe, kwargs, image, STEPS, guidance_scale=w)) > 1e-4


def test_guidance_schedule_at_one_changes_nothing(image):
    pipe, kwargs = pipeline("wan2.1")
    plain = run_pipe(pipe, kwargs, image, STEPS)
    with gk.guide(pipe, attrs.evolve(NO_FILTER, guidance=Constant(1.0))) as run:
        assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), plain)
    assert run.last.passes == 2 * STEPS


# LTX-2 applies separate video and audio scales: no one factor rescales both.
@pytest.mark.parametrize("family", ["cogvideox", "hunyuan-video", "ltx-2", "ltx2-condition"])
def test_backends_that_cannot_read_the_scale_refuse(family, image):
    pipe, _ = pipeline(family)
    with pytest.raises(gk.UnsupportedPipelineError, match="cannot read the scale"):
        with gk.guide(pipe, attrs.evolve(ALG, guidance=StepSwitch(0.0, 0.5))):
            pass


def test_guidance_round_trips_and_stays_out_of_plain_recipes():
    recipe = attrs.evolve(ALG, guidance=StepSwitch(0.0, 0.3))
    assert gk.Recipe.from_dict(recipe.to_dict()) == recipe
    assert gk.Recipe.from_toml(recipe.to_toml()) == recipe
    assert "guidance" not in ALG.to_dict()
    with pytest.raises(gk.GuidanceKitError, match="recipe guidance must be a Schedule"):
        gk.Recipe.from_dict({**ALG.to_dict(), "guidance": 3})
