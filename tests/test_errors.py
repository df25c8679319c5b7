"""Bad inputs get a named GuidanceKitError that names the field, the (bounded) value or the file."""

import time

import numpy as np
import pytest
import torch

import guidance_kit as gk
from guidance_kit import metrics
from guidance_kit.errors import (
    InputFileError,
    MissingFileError,
    NonFiniteVideoError,
    shown,
)
from guidance_kit.plugins.filters import Butterworth, DownUp, Gaussian

GOOD = "schedule: constant\n"

ALIAS_BOMB = """filter: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "filter: {name: downup, factor: yes}\n" + GOOD,
            r"DownUp factor must be in .* got True of type bool",
        ),
        ("filter: {name: downup, factor: abc}\n" + GOOD, r"DownUp factor .* got 'abc' of type str"),
        ("filter: {name: gaussian, sigma: on}\n" + GOOD, r"Gaussian sigma .* got True"),
        ("filter: {name: [downup]}\n" + GOOD, r"filter name must be a string, got \['downup'\]"),
        ("filter: {name: downup, factor: 0.4, 3: 1}\n" + GOOD, r"no parameter\(s\) \['3'\]"),
        (
            "filter: {name: downup, factor: 0.4}\nschedule: {name: step_switch, end: true}\n",
            r"StepSwitch end must be in \[0, 1\].*got True",
        ),
        (
            "filter: {name: downup, factor: 0.4}\nfilter: {name: downup, factor: 0.5}\n" + GOOD,
            "duplicate key 'filter'",
        ),
        (ALIAS_BOMB + GOOD, r"aliases \(\*name\) are not allowed"),
        ("filter: " + "[" * 5000, "nested deeper than 32 levels"),
        ("[1, 2]", "must hold a mapping, got list"),
        ("filter: !!python/object:os.system {}\n", "cannot parse YAML recipe"),
    ],
)
def test_bad_yaml_recipes_are_named_errors(text, match):
    start = time.perf_counter()
    with pytest.raises(gk.GuidanceKitError, match=match) as caught:
        gk.Recipe.from_yaml(text)
    assert time.perf_counter() - start < 2 and len(str(caught.value)) < 600


def test_bad_toml_recipes_are_named_errors():
    with pytest.raises(InputFileError, match="cannot parse TOML recipe"):
        gk.Recipe.from_toml('filter = "downup"\nfilter = "gaussian"\n')  # TOML refuses duplicates itself
    with pytest.raises(InputFileError, match="nested"):
        gk.Recipe.from_toml("a = " + "[" * 5000)


def test_bad_recipe_files_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="is a directory, not a file"):
        gk.Recipe.load(tmp_path)
    binary = tmp_path / "r.yaml"
    binary.write_bytes(b"filter: \xff\xfe\n")
    with pytest.raises(InputFileError, match=r"r.yaml is not UTF-8 text \(byte 8\)"):
        gk.Recipe.load(binary)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20))
    with pytest.raises(InputFileError, match="over 1048576 bytes"):
        gk.Recipe.load(big)
    with pytest.raises(gk.InvalidParameterError, match="must be a str or Path"):
        gk.Recipe.load(42)


def test_messages_never_echo_unbounded_values():
    huge = {"name": "downup", "factor": 0.4, **{f"k{i}": "x" * 1000 for i in range(1000)}}
    with pytest.raises(gk.InvalidParameterError) as caught:
        gk.Recipe.from_dict({"filter": {"factor": huge}, "schedule": "constant"})
    assert len(str(caught.value)) < 400
    nested: list = []
    nested.append(nested)
    assert len(shown(nested)) <= 120 and len(shown("x" * 10**6)) <= 120


@pytest.mark.parametrize(
    "data,match",
    [
        ([1, 2], "a recipe must be a mapping"),
        ({1: "a", "filter": "downup"}, r"unknown key\(s\) \['1'\]"),
        (
            {"filter": {"name": "downup", "factor": 0.4}, "schedule": "constant", "space": ["x"]},
            "space must be",
        ),
        (
            {"filter": {"name": "downup", "factor": 0.4}, "schedule": "constant", "mode": ["alg"]},
            "unknown mode",
        ),
        ({"filter": {"name": "butterworth", "cutoff": 0.1, "order": 1.5}, "schedule": "constant"}, "an int"),
        ({"filter": {"name": "downup", "factor": 10**400}, "schedule": "constant"}, "DownUp factor"),
        ({"filter": {"name": "gaussian", "sigma": float("inf")}, "schedule": "constant"}, "finite"),
    ],
)
def test_bad_recipe_dicts_are_named_errors(data, match):
    with pytest.raises(gk.GuidanceKitError, match=match):
        gk.Recipe.from_dict(data)


@pytest.mark.parametrize("cutoff", [1e-23, 1e-300, 5e-324])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_butterworth_tiny_cutoff_keeps_only_the_mean_instead_of_nan(cutoff, dtype):
    x = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = Butterworth(cutoff)(x, 1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, x.mean(dim=(-2, -1), keepdim=True).expand_as(x))


def test_gaussian_subnormal_sigma_is_finite():
    x = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(Gaussian(1e-320, 3)(x, 0.5)).all()
    assert torch.isfinite(DownUp(1e-300)(x, 1.0)).all()


def frames(dtype=np.float32, low=0.0, high=1.0):
    rng = np.random.default_rng(0)
    return (low + (high - low) * rng.random((4, 16, 16, 3))).astype(dtype)


@pytest.mark.parametrize(
    "video,error,match",
    [
        (
            frames(high=255.0),
            gk.InvalidParameterError,
            r"in \[0, 1\], got values in \[.*, 25\d.*divide .* by 255",
        ),
        (frames(low=-1.0), gk.InvalidParameterError, r"map \[-1, 1\] frames"),
        (frames(np.int64), gk.InvalidParameterError, "got dtype int64"),
        ((frames() * 65535).astype(np.uint16), gk.InvalidParameterError, "got dtype uint16"),
        (frames() > 0.5, gk.InvalidParameterError, "got dtype bool"),
        (np.full((4, 16, 16, 3), np.nan, np.float32), NonFiniteVideoError, "3072 NaN or infinite values"),
        (np.zeros((0, 16, 16, 3), np.float32), gk.InvalidParameterError, "no empty axis"),
        ([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))], gk.InvalidParameterError, "equal-sized frames"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.complex64), gk.InvalidParameterError, "real-valued"),
    ],
)
def test_metrics_refuse_wrong_dtypes_ranges_and_non_finite_videos(video, error, match):
    with pytest.raises(error, match=match):
        metrics.summarize(video)


def test_metrics_accept_the_documented_inputs():
    video = frames()
    assert metrics.as_frames(video).dtype == np.float32
    np.testing.assert_allclose(metrics.as_frames((video * 255).round().astype(np.uint8)), video, atol=1 / 255)
    assert metrics.as_frames(torch.from_numpy(video).to(torch.bfloat16)).shape == (4, 16, 16, 3)
    with pytest.raises(gk.InvalidParameterError, match="fps must be a finite number > 0"):
        metrics.dynamic_degree([video], fps=float("nan"))


def test_an_observer_failing_on_exit_does_not_mask_the_runs_own_error():
    from conftest import pipeline

    pipe, _ = pipeline("cogvideox")

    class Observer:
        @gk.hookimpl
        def on_guide_exit(self, run, error):
            raise RuntimeError("observer broke")

    observer = Observer()
    gk.register_plugin(observer, name="failing-observer")
    try:
        with (
            pytest.warns(RuntimeWarning, match="observer raised RuntimeError: observer broke"),
            pytest.raises(ValueError, match="the run's own"),
            gk.guide(pipe, "alg"),
        ):
            raise ValueError("the run's own")
    finally:
        gk.unregister_plugin(observer)


def test_other_public_entry_points_raise_named_errors():
    recipe = gk.recipes.get("alg")
    with pytest.raises(gk.InvalidParameterError, match=r"recipe has no field\(s\) \['filtr'\]"):
        recipe.replace(filtr="downup")
    with pytest.raises(gk.InvalidParameterError, match="flow estimator 'farneback': TypeError"):
        metrics.flow_estimator("farneback", speed=2)
    with pytest.raises(gk.UnknownNameError, match="unknown recipe 42"):
        gk.recipes.get(42)
    from guidance_kit import ablation

    with pytest.raises(gk.InvalidParameterError, match="a sweep is a file path or a built-in name, got None"):
        ablation.resolve_sweep(None)
    from guidance_kit.generate import load

    with pytest.raises(gk.InvalidParameterError, match="model must be a non-empty string, got 42"):
        load(42)


def test_call_arguments_the_pipeline_does_not_take_are_refused_before_it_runs():
    from guidance_kit.generate import generate, load

    loaded = load("tiny:wan2.1")
    loaded.pipe.transformer.forward = lambda *a, **k: pytest.fail("the pipeline ran")
    with pytest.raises(
        gk.InvalidParameterError,
        match=r"WanImageToVideoPipeline takes no call argument\(s\) \['guidance_scal'\]",
    ):
        generate(loaded, gk.tiny.tiny_image(32, 0), None, guidance_scal=3.0)
