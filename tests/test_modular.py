"""ALG on diffusers modular pipelines (guidance_kit.modular.LowPassGuidance and its guide()).

The modular pipelines are built on the very components of the tiny classic pipelines
(guidance_kit.tiny.tiny_modular_pipeline), so the two can be compared call for call.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AdaptiveProjectedGuidance

import guidance_kit as gk
from guidance_kit import modular
from guidance_kit.filters import DownUp
from guidance_kit.modular import LowPassGuidance, LowPassLTX2Guidance
from guidance_kit.schedules import Constant, StepSwitch
from guidance_kit.tiny import tiny_modular_pipeline

import reference  # the SPEC's down/up, written without guidance_kit
from conftest import pipeline

STEPS = 6
WINDOW = StepSwitch(0.0, 0.4)  # steps 0, 1, 2 of 6

_cache: dict = {}


def modular_pipeline(family: str, dtype: torch.dtype = torch.float32):
    """The modular pipeline on the components of conftest's classic ``pipeline(family, dtype)``."""
    key = (family, dtype)
    if key not in _cache:
        _cache[key] = tiny_modular_pipeline(family, dtype, base=pipeline(family, dtype))
    return _cache[key]


def run_modular(mp, kwargs, image, steps=STEPS, seed=0, **extra):
    return mp(
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output="latents",
        **{**kwargs, **extra},
    )


def run_classic(family, pipe, kwargs, image, steps=STEPS, seed=0):
    out = pipe(
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
        **kwargs,
    ).frames
    if family == "ltx-video":  # the classic LTX pipeline returns its packed token sequence
        mp, _ = modular_pipeline(family, pipe.transformer.dtype)
        out = mp.pachifier.unpack_latents(out, 3, 8, 8)
    return out


def recipe(family, schedule=WINDOW, **changes):
    return gk.recipes.get("alg", backend=family).replace(schedule=schedule, **changes)


class Calls:
    """Counts the denoiser calls per module."""

    def __init__(self, *modules):
        self.count = 0
        self.handles = [m.register_forward_pre_hook(self._hook) for m in modules]

    def _hook(self, *_):
        self.count += 1

    def close(self):
        for handle in self.handles:
            handle.remove()


# Equivalence with the classic pipeline ------------------------------------------------------------


@pytest.mark.parametrize("family", ["wan2.1", "wan2.2-a14b", "ltx-video"])
def test_float32_modular_alg_is_bit_identical_to_classic_guide(family, image):
    # In float32 the plain modular and classic pipelines agree bit for bit (checked first), so
    # the guided runs can be compared exactly: the modular guider runs the same passes (3 per
    # filtered step, 2 after) and folds them with the same guidance mode.
    mp, kw = modular_pipeline(family)
    pipe, ckw = pipeline(family, torch.float32)
    plain = run_modular(mp, kw, image)
    assert torch.equal(plain, run_classic(family, pipe, ckw, image))
    with modular.guide(mp, recipe(family)) as run:
        got = run_modular(mp, kw, image)
    with gk.guide(pipe, recipe(family), execution="sequential") as classic:
        expected = run_classic(family, pipe, ckw, image)
    assert [r.passes for r in run.trace] == [r.passes for r in classic.trace] == [3, 3, 3, 2, 2, 2]
    assert [r.filtered for r in run.trace] == [True, True, True, False, False, False]
    assert (got - plain).abs().max() > 1e-4  # ALG changes the result
    assert torch.equal(got, expected)


def test_float64_modular_alg_matches_classic_guide_to_the_plain_gap(image):
    # The modular Wan loop keeps its latents in float32 and steps the scheduler in float32
    # (WanLoopAfterDenoiser casts with .float()), the classic one in the latents' dtype after the
    # first step: in float64 the plain pipelines differ by ~6e-7, and the guided ones by as much.
    mp, kw = modular_pipeline("wan2.1", torch.float64)
    pipe, ckw = pipeline("wan2.1", torch.float64)
    plain_gap = (run_modular(mp, kw, image).double() - run_classic("wan2.1", pipe, ckw, image)).abs().max()
    with modular.guide(mp, recipe("wan2.1")):
        got = run_modular(mp, kw, image).double()
    with gk.guide(pipe, recipe("wan2.1")):
        expected = run_classic("wan2.1", pipe, ckw, image)
    effect = (expected - run_classic("wan2.1", pipe, ckw, image)).abs().max()
    assert 0 < plain_gap < 2e-6
    assert (got - expected).abs().max() < 4 * plain_gap
    assert effect > 100 * plain_gap


def _lowpass_wan(hidden, z):  # [latents z, mask 4, image latents z]
    return torch.cat([hidden[:, :-z], reference.downup(hidden[:, -z:], 0.4)], dim=1)


def _lowpass_hunyuan15(hidden, z):  # [latents z, image latents z, mask 1]
    return torch.cat([hidden[:, :z], reference.downup(hidden[:, z : 2 * z], 0.4), hidden[:, 2 * z :]], dim=1)


@pytest.mark.parametrize(
    ("family", "lowpass"), [("wan2.1", _lowpass_wan), ("hunyuan-video-1.5", _lowpass_hunyuan15)]
)
def test_float64_each_step_is_the_alg_formula(family, lowpass, image):
    # Every step's combined prediction, against an independent float64 computation from the
    # step's own inputs: U(I) + w (C(LP I) - U(LP I)) in the window, U(I) + w (C(I) - U(I)) after,
    # with the SPEC's down/up on the image latents of hidden_states. (HunyuanVideo 1.5's modular
    # blocks are not compared with its classic pipeline: in diffusers 0.42.1 the modular
    # prepare_latents step replaces the SigLIP image_embeds with zeros, so the plain results differ.)
    mp, kw = modular_pipeline(family, torch.float64)
    transformer = mp.transformer
    calls, combined = [], []

    def capture(module, args, kwargs):
        calls.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})

    handle = transformer.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with modular.guide(mp, recipe(family, filter=DownUp(0.4))) as run:
            guider = run.guiders["guider"]
            forward = guider.forward

            def recording(*args, **kwargs):
                out = forward(*args, **kwargs)
                combined.append(out.pred)
                return out

            guider.forward = recording
            run_modular(mp, kw, image)
    finally:
        handle.remove()
    w, z = guider.guidance_scale, transformer.config.out_channels
    worst, at = 0.0, 0

    def eps(call, hidden):
        with torch.no_grad():
            return transformer(**{**call, "hidden_states": hidden})[0]

    for record, pred in zip(run.trace, combined):
        cond, uncond = calls[at : at + 2]  # pred_cond, then pred_uncond (which sees the original image)
        at += record.passes
        hidden = uncond["hidden_states"]
        guiding = lowpass(hidden, z) if record.filtered else hidden
        expected = eps(uncond, hidden) + w * (eps(cond, guiding) - eps(uncond, guiding))
        worst = max(worst, ((pred - expected).abs().max() / expected.abs().max()).item())
    assert [r.passes for r in run.trace] == [3, 3, 3, 2, 2, 2]
    assert at == len(calls) == 15
    assert worst < 1e-13


def test_guidance_scale_schedule_matches_classic(image):
    # Recipe.guidance: w becomes 1 + (w - 1) g per step, in both entry points alike.
    mp, kw = modular_pipeline("wan2.1")
    pipe, ckw = pipeline("wan2.1", torch.float32)
    r = recipe("wan2.1", guidance=StepSwitch(0.0, 0.5))
    with modular.guide(mp, r) as run:
        got = run_modular(mp, kw, image)
    with gk.guide(pipe, r) as classic:
        expected = run_classic("wan2.1", pipe, ckw, image)
    assert [x.guidance for x in run.trace] == [x.guidance for x in classic.trace] == [1, 1, 1, 0, 0, 0]
    assert torch.allclose(got, expected, rtol=0, atol=1e-5)


# Plain steps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "r",
    [
        recipe("wan2.1", schedule=Constant(0.0)),  # strength 0 everywhere
        recipe("wan2.1", filter=DownUp(1.0)),  # the identity filter inside the window
        recipe("wan2.1", schedule=StepSwitch(0.45, 0.55)),  # a window that holds no step of 6
    ],
    ids=["strength-0", "identity-filter", "outside-window"],
)
def test_unfiltered_steps_are_bit_identical_to_classifier_free_guidance(r, image):
    mp, kw = modular_pipeline("wan2.1", torch.float64)
    plain = run_modular(mp, kw, image)
    calls = Calls(mp.transformer)
    try:
        with modular.guide(mp, r) as run:
            got = run_modular(mp, kw, image)
    finally:
        calls.close()
    assert calls.count == 2 * STEPS and not any(x.filtered for x in run.trace)
    assert torch.equal(got, plain)


def test_transformer_calls_per_step(image):
    mp, kw = modular_pipeline("wan2.1")
    calls = Calls(mp.transformer)
    try:
        with modular.guide(mp, recipe("wan2.1")) as run:
            run_modular(mp, kw, image)
            with_cfg = calls.count
            # Without CFG (guidance scale 1) ALG is one pass: C(LP I).
            run.guiders["guider"].guidance_scale = 1.0
            run_modular(mp, kw, image)
    finally:
        calls.close()
    assert with_cfg == 3 * 3 + 2 * 3 == 15
    assert calls.count - with_cfg == STEPS
    assert [(x.passes, x.cfg, x.filtered) for x in run.trace] == [(1, False, True)] * 3 + [
        (1, False, False)
    ] * 3
    assert len(run.calls) == 2


def test_wan22_uses_both_guiders_with_their_own_scales(image):
    mp, kw = modular_pipeline("wan2.2-a14b")
    calls = Calls(mp.transformer, mp.transformer_2)
    try:
        with modular.guide(mp, recipe("wan2.2-a14b", schedule=StepSwitch(0.0, 0.8))) as run:
            run_modular(mp, kw, image)
    finally:
        calls.close()
    assert set(run.guiders) == {"guider", "guider_2"}
    assert run.guiders["guider"].guidance_scale == 5.0 and run.guiders["guider_2"].guidance_scale == 3.0
    # The high-noise expert (guider) serves the first steps, the low-noise one (guider_2) the rest;
    # the window (p <= 0.8: steps 0-4) spans the boundary.
    assert [(x.denoiser, x.passes) for x in run.trace] == [
        ("transformer", 3),
        ("transformer", 3),
        ("transformer", 3),
        ("transformer_2", 3),
        ("transformer_2", 3),
        ("transformer_2", 2),
    ]
    assert calls.count == 17
    assert [x.step for x in run.guiders["guider_2"].trace] == [3, 4, 5]


def test_ltx_extra_pass_runs_in_a_cache_context_of_its_own(image):
    # The LTX loop opens transformer.cache_context(<batch identifier>) per batch: U(LP I) is
    # "pred_uncond_lowpass", so a cache keeps its state apart from U(I)'s and C(LP I)'s.
    mp, kw = modular_pipeline("ltx-video")
    transformer = mp.transformer
    seen = []
    original = transformer.cache_context

    def recording(name):
        seen.append(name)
        return original(name)

    transformer.cache_context = recording
    try:
        with modular.guide(mp, recipe("ltx-video")):
            run_modular(mp, kw, image)
    finally:
        del transformer.cache_context
    filtered = ["pred_cond", "pred_uncond", "pred_uncond_lowpass"]
    assert seen == filtered * 3 + ["pred_cond", "pred_uncond"] * 3


# The guider installed by hand -------------------------------------------------------------------------


def test_guider_installed_with_update_components_equals_guide(image):
    mp, kw = modular_pipeline("wan2.1")
    with modular.guide(mp, recipe("wan2.1")):
        expected = run_modular(mp, kw, image)
    previous = mp.guider
    mp.update_components(guider=LowPassGuidance(recipe=recipe("wan2.1"), guidance_scale=5.0))
    try:
        got = run_modular(mp, kw, image)
        trace = mp.guider.trace
    finally:
        mp.update_components(guider=previous)
    assert torch.equal(got, expected)
    assert [x.passes for x in trace] == [3, 3, 3, 2, 2, 2]


def public(config):
    return {k: v for k, v in config.items() if not k.startswith("_")}


def test_serialisation_round_trip(tmp_path):
    r = recipe("wan2.1", guidance=StepSwitch(0.0, 0.5))
    guider = LowPassGuidance(
        recipe=r, guidance_scale=4.0, guidance_rescale=0.3, stop=0.9, layout="wan-channel-concat"
    )
    guider.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "guider_config.json").read_text())
    assert saved["_class_name"] == "LowPassGuidance" and saved["recipe"] == r.to_dict()
    for loaded in (
        LowPassGuidance.from_pretrained(tmp_path),
        LowPassGuidance.from_config(guider.config),
        guider.new(),
    ):
        assert loaded.recipe == r
        assert public(loaded.config) == public(guider.config)
        assert (loaded.guidance_scale, loaded.guidance_rescale, loaded._stop) == (4.0, 0.3, 0.9)
    assert guider.new(guidance_scale=2.0).guidance_scale == 2.0
    # A recipe given by name or as a mapping is stored resolved.
    assert LowPassGuidance(recipe="alg").config.recipe == gk.recipes.get("alg").to_dict()
    assert LowPassGuidance(recipe=r.to_dict()).recipe == r


def test_noise_level_schedule_needs_the_scheduler(image):
    from guidance_kit.schedules import SigmaWindow

    mp, kw = modular_pipeline("wan2.1")
    by_level = recipe("wan2.1", schedule=SigmaWindow(0.9, 1.0))
    with modular.guide(mp, by_level) as run:  # guide() hands the guider the pipeline's scheduler
        run_modular(mp, kw, image)
    levels = [x.noise_level for x in run.trace]
    assert [x.filtered for x in run.trace] == [level >= 0.9 for level in levels]
    assert any(x.filtered for x in run.trace) and not all(x.filtered for x in run.trace)
    previous = mp.guider
    mp.update_components(guider=LowPassGuidance(recipe=by_level))
    try:
        with pytest.raises(gk.GuidanceKitError, match="set_scheduler"):
            run_modular(mp, kw, image)
    finally:
        mp.update_components(guider=previous)


# guide(): restoring and refusing ----------------------------------------------------------------------


def test_guide_restores_the_guiders_exactly_also_after_an_error(image):
    mp, kw = modular_pipeline("wan2.2-a14b")
    before = ({n: getattr(mp, n) for n in ("guider", "guider_2")}, dict(mp._component_specs), dict(mp.config))
    with modular.guide(mp, recipe("wan2.2-a14b")):
        assert isinstance(mp.guider, LowPassGuidance) and isinstance(mp.guider_2, LowPassGuidance)
    with pytest.raises(RuntimeError, match="boom"):
        with modular.guide(mp, recipe("wan2.2-a14b")):
            raise RuntimeError("boom")
    assert all(getattr(mp, n) is g for n, g in before[0].items())
    assert all(mp._component_specs[k] is spec for k, spec in before[1].items())
    assert dict(mp.config) == before[2]
    assert not mp.transformer._forward_pre_hooks and not mp.transformer_2._forward_pre_hooks


def test_a_failing_denoiser_call_leaves_no_hook(image):
    mp, kw = modular_pipeline("wan2.1")

    def fail(module, args, kwargs):
        raise RuntimeError("denoiser failed")

    with modular.guide(mp, recipe("wan2.1")):
        handle = mp.transformer.register_forward_pre_hook(fail, with_kwargs=True)
        try:
            with pytest.raises(RuntimeError, match="denoiser failed"):
                run_modular(mp, kw, image)
        finally:
            handle.remove()
    assert not mp.transformer._forward_pre_hooks
    plain = run_modular(mp, kw, image)
    assert torch.equal(plain, run_classic("wan2.1", *pipeline("wan2.1", torch.float32), image))


def test_bad_inputs_are_guidance_kit_errors(image):
    mp, kw = modular_pipeline("wan2.1")
    with pytest.raises(gk.InvalidParameterError, match="space 'latent'"):
        LowPassGuidance(recipe=recipe("wan2.1", space="pixel"))
    with pytest.raises(gk.UnknownNameError, match="modular layout"):
        LowPassGuidance(layout="nope")
    with pytest.raises(gk.InvalidParameterError, match="guidance_rescale"):
        LowPassGuidance(guidance_rescale=2.0)
    with pytest.raises(gk.InvalidParameterError, match="stop"):
        LowPassGuidance(start=0.5, stop=0.2)
    with pytest.raises(gk.InvalidParameterError, match="recipe must be"):
        LowPassGuidance(recipe=42)
    with pytest.raises(gk.UnknownNameError):
        LowPassGuidance(recipe="no-such-recipe")
    with pytest.raises(gk.UnsupportedPipelineError, match="ModularPipeline"):
        with modular.guide(pipeline("wan2.1", torch.float32)[0]):
            pass
    with modular.guide(mp, recipe("wan2.1")):
        with pytest.raises(gk.GuidanceKitError, match="do not nest"):
            with modular.guide(mp, recipe("wan2.1")):
                pass
    previous = mp.guider
    mp.update_components(guider=AdaptiveProjectedGuidance(guidance_scale=5.0))
    try:
        with pytest.raises(gk.UnsupportedPipelineError, match="AdaptiveProjectedGuidance"):
            with modular.guide(mp, recipe("wan2.1")):
                pass
        assert isinstance(mp.guider, AdaptiveProjectedGuidance)
    finally:
        mp.update_components(guider=previous)
    assert mp.guider is previous


def test_a_transformer_without_image_channels_is_refused(image):
    # A text-to-video Wan transformer (in_channels == out_channels) has no image latents to filter.
    from diffusers import WanTransformer3DModel

    t2v = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=1,
        rope_max_seq_len=32,
    )
    guider = LowPassGuidance(recipe=recipe("wan2.1"))
    guider.set_state(0, 4, torch.tensor(999.0))
    guider.prepare_models(t2v)
    try:
        with pytest.raises(gk.UnsupportedPipelineError, match="no image latents"):
            t2v(
                hidden_states=torch.zeros(1, 16, 1, 4, 4),
                timestep=torch.zeros(1),
                encoder_hidden_states=torch.zeros(1, 4, 32),
                return_dict=False,
            )
    finally:
        guider.cleanup_models(t2v)
    assert not t2v._forward_pre_hooks


def test_gk_guide_installs_the_guider_on_a_modular_pipeline(image):
    # gk.guide dispatches modular pipelines to guidance_kit.modular.guide (controller.guide).
    mp, kw = modular_pipeline("wan2.1")
    with modular.guide(mp, "alg") as run:
        expected = run_modular(mp, kw, image)
    previous = mp.guider
    with gk.guide(mp, "alg") as run:
        assert isinstance(mp.guider, LowPassGuidance)
        got = run_modular(mp, kw, image)
    assert mp.guider is previous
    assert torch.equal(got, expected) and run.trace


# LTX-2: LowPassLTX2Guidance (video and audio guiders; CFG, STG and modality-isolation passes) -----


def run_ltx2_modular(mp, kwargs, image, steps=STEPS, seed=0):
    """(video, audio) latents as the classic LTX-2 pipeline returns them: unpacked, denormalised."""
    pipe, _ = pipeline("ltx-2", mp.transformer.dtype)
    out = mp(
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output=["latents", "audio_latents"],
        **kwargs,
    )
    vae, audio_vae = pipe.vae, pipe.audio_vae
    video = pipe._unpack_latents(out["latents"], 5, 16, 16, 1, 1)
    video = pipe._denormalize_latents(video, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    audio = pipe._denormalize_audio_latents(
        out["audio_latents"], audio_vae.latents_mean, audio_vae.latents_std
    )
    return video, pipe._unpack_audio_latents(audio, 9, num_mel_bins=2)


def run_ltx2_classic(pipe, kwargs, image, steps=STEPS, seed=0, **extra):
    out = pipe(
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
        **{**kwargs, **extra},
    )
    return out.frames, out.audio


def gap(a, b):
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_ltx2_modular_alg_matches_classic_guide(dtype, image):
    # The modular LTX-2 loop runs every pass as a call of its own, the classic pipeline cond and
    # uncond in one batched call: in float32 the plain results differ by ~1.5e-6; in float64
    # they are bit-identical. Both loops take the predictions to float32 (.float()) before the
    # x0 combination, and the classic backend shifts the conditional prediction in velocity space
    # (in the model's dtype), the modular guider in x0 space (float32): the guided results differ
    # by float32 rounding (~2e-6 in either dtype), against an ALG effect of ~1.5e-3.
    mp, kw = modular_pipeline("ltx-2", dtype)
    pipe, ckw = pipeline("ltx-2", dtype)
    plain = run_ltx2_classic(pipe, ckw, image)
    plain_gap = gap(run_ltx2_modular(mp, kw, image), plain)
    with modular.guide(mp, recipe("ltx-2")) as run:
        got = run_ltx2_modular(mp, kw, image)
    with gk.guide(pipe, recipe("ltx-2")) as classic:
        expected = run_ltx2_classic(pipe, ckw, image)
    assert [r.passes for r in run.trace] == [r.passes for r in classic.trace] == [5, 5, 5, 4, 4, 4]
    assert [r.filtered for r in run.trace] == [True, True, True, False, False, False]
    alg_gap, effect = gap(got, expected), gap(expected, plain)
    if dtype == torch.float32:
        assert 0 < plain_gap < 3e-6 and alg_gap < 4 * plain_gap
    else:
        assert plain_gap == 0 and alg_gap < 1e-5
    assert effect > 100 * alg_gap
    assert [x.step for x in run.guiders["audio_guider"].trace] == list(range(STEPS))


def test_ltx2_each_pass_sees_its_image_and_flags(image):
    # Per batch (the loop's cache context is the identifier): the frame-0 tokens the transformer
    # saw, and its STG blocks / modality isolation. pred_uncond_lowpass is the negative text
    # with the low-passed image and, an identifier the loop does not know, no STG and no isolation.
    mp, kw = modular_pipeline("ltx-2", torch.float64)
    transformer, seen, context = mp.transformer, [], []
    original = transformer.cache_context

    def recording(name):
        context.append(name)
        return original(name)

    def capture(module, args, kwargs):
        frame0 = kwargs["hidden_states"][:, : 16 * 16].clone()
        flags = (kwargs["spatio_temporal_guidance_blocks"], kwargs["isolate_modalities"])
        seen.append((context[-1], frame0, flags, kwargs["encoder_hidden_states"]))

    transformer.cache_context = recording
    handle = transformer.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with modular.guide(mp, recipe("ltx-2", filter=DownUp(0.4))) as run:
            run_ltx2_modular(mp, kw, image)
    finally:
        handle.remove()
        del transformer.cache_context
    names = [name for name, *_ in seen]
    stock = ["pred_cond", "pred_uncond", "pred_cond_stg", "pred_cond_modality"]
    assert names == (stock + ["pred_uncond_lowpass"]) * 3 + stock * 3
    assert [r.passes for r in run.trace] == [5, 5, 5, 4, 4, 4]
    flags = {"pred_cond_stg": ([1], False), "pred_cond_modality": (None, True)}
    at = 0
    for record in run.trace:
        step = {name: rest for name, *rest in seen[at : at + record.passes]}
        at += record.passes
        sharp = step["pred_uncond"][0]
        lowpass = reference.downup(sharp.unflatten(1, (16, 16)).permute(0, 3, 1, 2).unsqueeze(2), 0.4)
        lowpass = lowpass[:, :, 0].permute(0, 2, 3, 1).flatten(1, 2)
        for name, (frame0, flag, text) in step.items():
            wants = lowpass if record.filtered and name != "pred_uncond" else sharp
            assert torch.allclose(frame0, wants, rtol=0, atol=1e-12), (record.step, name)
            assert flag == flags.get(name, (None, False)), name
            negative = name.startswith("pred_uncond")
            assert torch.equal(text, step["pred_uncond" if negative else "pred_cond"][2]), name
    assert not torch.equal(step["pred_cond"][2], step["pred_uncond"][2])


@pytest.mark.parametrize("r", [recipe("ltx-2", schedule=Constant(0.0)), recipe("ltx-2", filter=DownUp(1.0))])
def test_ltx2_unfiltered_steps_are_bit_identical_to_ltx2_guidance(r, image):
    mp, kw = modular_pipeline("ltx-2")
    plain = run_ltx2_modular(mp, kw, image)
    calls = Calls(mp.transformer)
    try:
        with modular.guide(mp, r) as run:
            got = run_ltx2_modular(mp, kw, image)
    finally:
        calls.close()
    assert calls.count == 4 * STEPS and [x.passes for x in run.trace] == [4] * STEPS
    assert all(torch.equal(x, y) for x, y in zip(got, plain))


def test_ltx2_a_pass_only_the_audio_guider_has(image):
    # Video STG off, audio STG on: the loop runs the audio guider's pred_cond_stg after the video
    # guider's batches and prepares the video guider for it; paired (as guide() does) the video
    # guider knows that batch and gives it the low-passed image. Classic: stg_scale=0.
    from diffusers import LTX2Guidance

    mp, kw = modular_pipeline("ltx-2")
    pipe, ckw = pipeline("ltx-2", torch.float32)
    previous, previous_audio = mp.guider, mp.audio_guider
    config = {k: v for k, v in previous.config.items() if not k.startswith("_")}
    mp.update_components(guider=LTX2Guidance(**{**config, "stg_scale": 0.0}))
    try:
        plain_gap = gap(run_ltx2_modular(mp, kw, image), run_ltx2_classic(pipe, ckw, image, stg_scale=0.0))
        with modular.guide(mp, recipe("ltx-2")) as run:
            got = run_ltx2_modular(mp, kw, image)
            video, audio = run.guiders["guider"], run.guiders["audio_guider"]
        with gk.guide(pipe, recipe("ltx-2")):
            expected = run_ltx2_classic(pipe, ckw, image, stg_scale=0.0)
        assert [x.passes for x in run.trace] == [5, 5, 5, 4, 4, 4]
        assert video.active_predictions() == ["pred_cond", "pred_uncond", "pred_cond_modality"]
        assert audio.active_predictions()[-2:] == ["pred_cond_stg", "pred_cond_modality"]
        assert 0 < plain_gap < 3e-6 and gap(got, expected) < 4 * plain_gap
        # Installed by hand and not paired, the video guider cannot know that batch: refused.
        mp.update_components(guider=video.new(), audio_guider=audio.new())
        with pytest.raises(gk.GuidanceKitError, match="pair the guiders"):
            run_ltx2_modular(mp, kw, image)
        # Paired, but filtering differently (the audio guider disabled): refused.
        mp.guider.pair(mp.audio_guider)
        mp.audio_guider.disable()
        with pytest.raises(gk.GuidanceKitError, match="same recipe and the same enabled state"):
            run_ltx2_modular(mp, kw, image)
    finally:
        mp.update_components(guider=previous, audio_guider=previous_audio)
    assert not mp.transformer._forward_pre_hooks


def test_ltx2_guide_restores_both_guiders_exactly_also_after_an_error(image):
    mp, kw = modular_pipeline("ltx-2")
    names = ("guider", "audio_guider")
    before = ({n: getattr(mp, n) for n in names}, dict(mp._component_specs), dict(mp.config))
    with modular.guide(mp, recipe("ltx-2")) as run:
        assert all(isinstance(getattr(mp, n), LowPassLTX2Guidance) for n in names)
        assert mp.guider._audio is mp.audio_guider
        assert (mp.audio_guider.guidance_scale, mp.guider.spatio_temporal_guidance_blocks) == (7.0, [1])
    assert run.guiders["guider"]._audio is None
    with pytest.raises(RuntimeError, match="boom"):
        with modular.guide(mp, recipe("ltx-2")):
            raise RuntimeError("boom")
    assert all(getattr(mp, n) is g for n, g in before[0].items())
    assert all(mp._component_specs[k] is spec for k, spec in before[1].items())
    assert dict(mp.config) == before[2]
    assert not mp.transformer._forward_pre_hooks


def test_ltx2_guider_serialisation_and_refusals(tmp_path):
    r = recipe("ltx-2")
    guider = LowPassLTX2Guidance(
        recipe=r,
        guidance_scale=3.0,
        stg_scale=1.0,
        modality_scale=3.0,
        guidance_rescale=0.7,
        spatio_temporal_guidance_blocks=[1],
        stop=0.9,
        layout="ltx2-frame-tokens",
    )
    guider.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "guider_config.json").read_text())
    assert saved["_class_name"] == "LowPassLTX2Guidance" and saved["recipe"] == r.to_dict()
    for loaded in (
        LowPassLTX2Guidance.from_pretrained(tmp_path),
        LowPassLTX2Guidance.from_config(guider.config),
        guider.new(),
    ):
        assert type(loaded) is LowPassLTX2Guidance and loaded.recipe == r
        assert public(loaded.config) == public(guider.config)
        assert (loaded.stg_scale, loaded.modality_scale, loaded.spatio_temporal_guidance_blocks) == (
            1.0,
            3.0,
            [1],
        )
    with pytest.raises(gk.InvalidParameterError, match="space 'latent'"):
        LowPassLTX2Guidance(recipe=recipe("ltx-2", space="pixel"))
    with pytest.raises(gk.InvalidParameterError, match="guidance-scale schedule"):
        LowPassLTX2Guidance(recipe=recipe("ltx-2", guidance=StepSwitch(0.0, 0.5)))
    with pytest.raises(gk.InvalidParameterError, match="spatio_temporal_guidance_blocks"):
        LowPassLTX2Guidance(spatio_temporal_guidance_blocks="28")


def test_ltx2_forward_is_the_alg_formula_in_float64():
    # The combination alone, on random float64 predictions: a filtered step gives
    # U(I) + w (C(LP I) - U(LP I)) + s (C(LP I) - STG(LP I)) + (m - 1)(C(LP I) - MOD(LP I)),
    # rescaled against c = C(LP I) + U(I) - U(LP I); an unfiltered one LTX2Guidance's result, bit for bit.
    from diffusers import LTX2Guidance
    from diffusers.guiders.guider_utils import rescale_noise_cfg

    scales = dict(guidance_scale=3.0, stg_scale=1.0, modality_scale=3.0, guidance_rescale=0.7)
    guider, stock = LowPassLTX2Guidance(recipe=recipe("ltx-2"), **scales), LTX2Guidance(**scales)
    g = torch.Generator().manual_seed(0)
    C, U, S, M, UL = (torch.randn(1, 64, 4, generator=g, dtype=torch.float64) for _ in range(5))
    guider.set_state(0, STEPS, torch.tensor(1000.0))
    assert guider.active_predictions() == [
        "pred_cond",
        "pred_uncond",
        "pred_cond_stg",
        "pred_cond_modality",
        "pred_uncond_lowpass",
    ]
    out = guider.forward(C, U, S, M, pred_uncond_lowpass=UL)
    alg = U + 3.0 * (C - UL) + 1.0 * (C - S) + 2.0 * (C - M)
    expected = rescale_noise_cfg(alg, C + U - UL, 0.7)
    assert torch.allclose(out.pred, expected, rtol=1e-13, atol=0)
    for guided in (guider, stock):
        guided.set_state(5, STEPS, torch.tensor(100.0))
    assert guider.active_predictions() == stock.active_predictions()
    assert torch.equal(guider.forward(C, U, S, M).pred, stock.forward(C, U, S, M).pred)
