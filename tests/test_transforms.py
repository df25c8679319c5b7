"""Condition transforms beyond low-pass filters: noise augmentation, condition strength, motion
amplitude and chains — formulas, identity at strength 0, errors, round trips, use under guide()."""

import pytest
import torch

import guidance_kit as gk
from guidance_kit.filters import Chain, DownUp, MotionAmplitude, Noise, Scale

from conftest import pipeline, run_pipe

X = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_noise_is_seeded_gaussian_scaled_by_strength():
    n = torch.randn(X.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float32).double()
    assert torch.equal(Noise(std=0.2, seed=7)(X, 0.5), X + 0.1 * n)
    assert torch.equal(Noise(std=0.2, seed=7)(X, 0.5), Noise(std=0.2, seed=7)(X, 0.5))
    assert not torch.equal(Noise(std=0.2, seed=7)(X, 1.0), Noise(std=0.2, seed=8)(X, 1.0))
    assert Noise(std=0.2)(X, 0.0) is X


def test_scale_towards_zero_and_towards_the_mean():
    assert torch.allclose(Scale(factor=0.25)(X, 1.0), 0.25 * X)
    assert torch.allclose(Scale(factor=0.25)(X, 0.5), 0.625 * X)
    mean = X.mean(dim=(-2, -1), keepdim=True)
    toward_mean = Scale(factor=0.0, toward="mean")(X, 1.0)
    assert torch.allclose(toward_mean, mean.expand_as(X))
    assert Scale(factor=0.25)(X, 0.0) is X and Scale(factor=1.0).is_identity(1.0)


def test_motion_amplitude_pushes_padding_frames_away_from_the_first():
    out = MotionAmplitude(amplitude=1.2)(X, 0.5)  # m = 1.1
    assert torch.equal(out[:, :, 0], X[:, :, 0])
    assert torch.allclose(out[:, :, 1:], X[:, :, :1] + 1.1 * (X[:, :, 1:] - X[:, :, :1]))
    with pytest.raises(gk.InvalidParameterError, match="needs a .* image condition with padding frames"):
        MotionAmplitude()(X[:, :, :1], 1.0)


def test_chain_applies_in_order_and_round_trips():
    chain = Chain([DownUp(0.5), {"name": "noise", "std": 0.05, "seed": 3}])
    assert torch.equal(chain(X, 0.7), Noise(std=0.05, seed=3)(DownUp(0.5)(X, 0.7), 0.7))
    recipe = gk.Recipe(filter=chain, schedule=gk.schedules.StepSwitch(0.0, 0.2))
    assert gk.Recipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.to_dict()["filter"]["filters"][1] == {"name": "noise", "std": 0.05, "seed": 3}
    assert Chain([DownUp(1.0), Scale(1.0)]).is_identity(1.0) and not chain.is_identity(1.0)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: Noise(std=0.0), "Noise std"),
        (lambda: Noise(std=True), "Noise std"),
        (lambda: Noise(seed=-1), "Noise seed"),
        (lambda: Scale(toward="middle"), r"Scale toward must be one of \['zero', 'mean'\]"),
        (lambda: MotionAmplitude(amplitude=100), "MotionAmplitude amplitude"),
        (lambda: Chain([]), "Chain filters must be a non-empty list"),
        (lambda: Chain("downup"), "Chain filters must be a non-empty list"),
        (lambda: Chain([{"factor": 0.5}]), "each item must be a filter or a mapping with a 'name'"),
        (lambda: Chain([{"name": "nope"}]), "nope"),
    ],
)
def test_bad_parameters_are_named(build, match):
    with pytest.raises(gk.GuidanceKitError, match=match):
        build()


def test_transforms_under_guide(image):
    pipe, kwargs = pipeline("wan2.1")
    window = gk.schedules.StepSwitch(0.0, 0.4)
    outs = {}
    for name, f in {
        "downup": DownUp(0.5),
        "chain": Chain([DownUp(0.5), Noise(std=0.5)]),
        "amplitude": MotionAmplitude(1.15),
    }.items():
        with gk.guide(pipe, gk.Recipe(filter=f, schedule=window)) as run:
            outs[name] = run_pipe(pipe, kwargs, image, 6)
        assert run.last.passes == 15 and run.last.filtered_steps == [0, 1, 2]
    assert not torch.equal(outs["chain"], outs["downup"]) and not torch.equal(
        outs["amplitude"], outs["downup"]
    )
    ti2v, ti2v_kwargs = pipeline("wan2.2-ti2v")
    plain = run_pipe(ti2v, ti2v_kwargs, image, 3)
    with pytest.raises(gk.InvalidParameterError, match="single latent frame"):
        with gk.guide(ti2v, gk.Recipe(filter=MotionAmplitude(1.15), schedule=window)):
            run_pipe(ti2v, ti2v_kwargs, image, 3)
    assert torch.equal(run_pipe(ti2v, ti2v_kwargs, image, 3), plain)
