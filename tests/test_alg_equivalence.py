"""ALG through guide() equals the independent reference loops in tests/reference.py."""

import pytest
import torch

import guidance_kit as gk
from guidance_kit.tiny import tiny_image

import reference
from conftest import pipeline, run_pipe

STEPS, FACTOR, END = 6, 0.5, 0.4  # steps 0, 1, 2 are filtered

# CogVideoX, LTX-Video and Sana-Video cast every prediction to float32 inside the pipeline before
# the CFG combination (Sana-Video also keeps its latents in float32), so any implementation differs
# from a float64 reference by float32 rounding there.
TOLERANCE = {"cogvideox": 1e-6, "ltx-video": 1e-6, "sana-video": 1e-6}  # measured: 1.1e-7, 6.2e-8, 1.2e-7
# Kandinsky 5 computes its time embedding in float32: a merged two-row call (execution="batched")
# rounds there differently from one-row calls. Measured: 1.2e-7 batched, 0 sequential.
TOLERANCE["kandinsky5"] = 1e-6
# Cosmos 2 rounds each prediction to float32 before its x0 conversion; ALG's correction reaches
# the pipeline through the unconditional prediction (scaled by (1 + w) / w there), which rounds
# differently from the reference's three predictions. Measured: 3.1e-7 (plain CFG: 0).
TOLERANCE["cosmos2"] = 1e-6
# Cosmos 2.5 keeps its latents in float32: the correction through the unconditional prediction
# rounds differently from the reference's three predictions before that. Measured 1.2e-7 (plain: 0).
TOLERANCE["cosmos2.5"] = 1e-6
LOOPS = {
    "wan2.1": reference.wan,
    "wan2.2-a14b": reference.wan,
    "wan2.2-ti2v": reference.wan,
    "skyreels-v2": reference.wan,
    "cogvideox": reference.cogvideox,
    "ltx-video": reference.ltx,
    "hunyuan-video": reference.hunyuan,
    "hunyuan-video-token-replace": reference.hunyuan,
    "svd": reference.svd,
    "sana-video": reference.sana,
    "hunyuan-skyreels": reference.hunyuan_skyreels,
    "chronoedit": reference.chronoedit,
    "kandinsky5": reference.kandinsky5,
    "cosmos2": reference.cosmos2,
    "cosmos2.5": reference.cosmos25,
    "motif-video": reference.motif,
    "hunyuan-video-1.5": reference.hunyuan15,
    "skyreels-v2-df": reference.skyreels_df,
    "ltx-condition": reference.ltx_condition,
    "wan-vace": reference.wan_vace,
    "wan-vace-a14b": reference.wan_vace,
    "wan-animate": reference.wan_animate,
}


def recipe(space="latent", mode="alg"):
    return gk.Recipe(
        filter=gk.filters.DownUp(FACTOR), schedule=gk.schedules.StepSwitch(0.0, END), space=space, mode=mode
    )


def max_rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("family", list(LOOPS))
def test_alg_matches_reference_loop(family, execution, image):
    pipe, kwargs = pipeline(family)
    expected = LOOPS[family](pipe, kwargs, image, STEPS, FACTOR, END, seed=0)
    with gk.guide(pipe, recipe(), execution=execution) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
    assert run.last.filtered_steps == [0, 1, 2]
    plain = run_pipe(pipe, kwargs, image, STEPS)
    assert max_rel(plain, expected) > 1e-6, "ALG must change the result, or the comparison proves nothing"
    assert max_rel(got, expected) < TOLERANCE.get(family, 1e-12)


def test_hunyuan_true_cfg_alg_matches_reference(image):
    pipe, kwargs = pipeline("hunyuan-video")
    negative = {
        "negative_prompt_embeds": torch.randn(
            1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(9)
        ),
        "negative_prompt_attention_mask": torch.ones(1, 16, dtype=torch.float64),
        "negative_pooled_prompt_embeds": torch.randn(
            1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(8)
        ),
    }
    w = 3.0
    neg = (
        negative["negative_prompt_embeds"],
        negative["negative_prompt_attention_mask"],
        negative["negative_pooled_prompt_embeds"],
    )
    expected = reference.hunyuan(pipe, kwargs, image, STEPS, FACTOR, END, 0, true_cfg=(w, neg))
    with gk.guide(pipe, recipe()) as run:
        got = run_pipe(pipe, kwargs, image, STEPS, true_cfg_scale=w, **negative)
    assert run.last.passes == 2 * STEPS + 3
    assert max_rel(got, expected) < 1e-12


def test_hunyuan_skyreels_without_true_cfg_is_one_pass(image):
    # true_cfg_scale <= 1: embedded guidance only, so ALG is eps = C(LP I) with no extra pass.
    pipe, kwargs = pipeline("hunyuan-skyreels")
    kwargs = {**kwargs, "true_cfg_scale": 1.0}
    expected = reference.hunyuan_skyreels(pipe, kwargs, image, STEPS, FACTOR, END, 0)
    with gk.guide(pipe, recipe()) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
    assert run.last.passes == STEPS and run.last.filtered_steps == [0, 1, 2]
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12


@pytest.mark.parametrize("execution", ["batched", "sequential"])
def test_chronoedit_temporal_reasoning_matches_reference(execution, image):
    # Temporal reasoning keeps latent frames [0, -1] from step 2 on, a filtered step here.
    pipe, kwargs = pipeline("chronoedit")
    call = {"num_frames": 9, "enable_temporal_reasoning": True, "num_temporal_reasoning_steps": 2}
    kwargs = {**kwargs, "num_frames": 9}
    expected = reference.chronoedit(pipe, kwargs, image, STEPS, FACTOR, END, 0, reasoning_steps=2)
    with gk.guide(pipe, recipe(), execution=execution) as run:
        got = run_pipe(pipe, kwargs, image, STEPS, **call)
    assert run.last.passes == 2 * STEPS + 3
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS, **call), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12
    with gk.guide(pipe, recipe(space="pixel")) as run:  # the pixel condition keeps frames [0, -1] too
        pixel = run_pipe(pipe, kwargs, image, STEPS, **call)
    assert torch.isfinite(pixel).all() and run.last.passes == 2 * STEPS + 3


@pytest.fixture
def swap_guider():
    """A tiny guider-driven pipeline with another guider (the original restored afterwards)."""
    swapped = []

    def swap(family, guider):
        pipe, kwargs = pipeline(family)
        swapped.append((pipe, pipe.guider))
        pipe.guider = guider
        return pipe, kwargs

    yield swap
    for pipe, original in reversed(swapped):
        pipe.guider = original


@pytest.mark.parametrize(
    "original, start, stop, passes",
    [
        (False, 0.2, 0.7, [1, 3, 3, 2, 1, 1]),  # CFG on steps 1-3: step 0 is filtered without CFG
        (True, 0.0, 0.4, [3, 3, 1, 1, 1, 1]),  # c + w (c - u) on steps 0-1: step 2 filtered, one pass
    ],
)
def test_hunyuan15_guider_turning_cfg_on_and_off_matches_reference(
    swap_guider, image, original, start, stop, passes
):
    from diffusers import ClassifierFreeGuidance

    guider = ClassifierFreeGuidance(
        guidance_scale=3.0, use_original_formulation=original, start=start, stop=stop
    )
    pipe, kwargs = swap_guider("hunyuan-video-1.5", guider)
    expected = reference.hunyuan15(pipe, kwargs, image, STEPS, FACTOR, END, 0)
    with gk.guide(pipe, recipe()) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
    assert [r.passes for r in run.trace] == passes
    assert [r.cfg for r in run.trace] == [p > 1 for p in passes]
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12


@pytest.mark.parametrize("kind", ["rescaled", "projected"])
def test_hunyuan15_refuses_a_guider_that_is_not_affine(swap_guider, image, kind):
    from diffusers import AdaptiveProjectedGuidance, ClassifierFreeGuidance

    if kind == "rescaled":
        guider, match = (
            ClassifierFreeGuidance(guidance_scale=5.0, guidance_rescale=0.7),
            "guidance_rescale=0.7",
        )
    else:
        guider, match = AdaptiveProjectedGuidance(guidance_scale=5.0), "got AdaptiveProjectedGuidance"
    pipe, kwargs = swap_guider("hunyuan-video-1.5", guider)
    with pytest.raises(gk.GuidanceKitError, match=f"hunyuan-video-1.5: ALG needs .*affine.*{match}"):
        with gk.guide(pipe, recipe()):
            run_pipe(pipe, kwargs, image, 2)


def test_hunyuan15_pixel_space_encodes_the_filtered_image(image):
    # prepare_cond_latents_and_mask takes the resized PIL image: the backend hands it the filtered
    # image as a [0, 1] tensor. Down/up commutes with the map to [-1, 1], so the condition must be
    # the VAE mode of LP(preprocessed image) on frame 0 and zeros after it.
    pipe, kwargs = pipeline("hunyuan-video-1.5")
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["hidden_states"][:, 4:8].clone()), with_kwargs=True
    )
    try:
        with gk.guide(pipe, recipe(space="pixel")) as run:
            run_pipe(pipe, kwargs, image, 2)
    finally:
        hook.remove()
    assert run.last.vae_encodes == 2
    resized = pipe.video_processor.resize(image, height=32, width=32, resize_mode="crop")
    pixels = pipe.video_processor.preprocess(resized, height=32, width=32).to(torch.float64)
    filtered = gk.filters.DownUp(FACTOR)(pixels, 1.0).unsqueeze(2)
    expected = pipe.vae.encode(filtered).latent_dist.mode() * pipe.vae.config.scaling_factor
    torch.testing.assert_close(seen[0][:, :, :1], expected, atol=1e-12, rtol=1e-12)  # step 0, conditional
    assert not seen[0][:, :, 1:].any()
    assert not torch.allclose(seen[0], seen[-1], atol=1e-3)  # the last step sees the sharp image


def test_hunyuan15_meanflow_matches_reference(image):
    # A meanflow transformer also gets timestep_r (the next timestep, 0 at the end), one per row.
    from diffusers import HunyuanVideo15Transformer3DModel

    pipe, kwargs = pipeline("hunyuan-video-1.5")
    original = pipe.transformer
    torch.manual_seed(0)
    config = {**original.config, "use_meanflow": True}
    pipe.transformer = HunyuanVideo15Transformer3DModel.from_config(config).to(torch.float64)
    try:
        expected = reference.hunyuan15(pipe, kwargs, image, STEPS, FACTOR, END, 0)
        with gk.guide(pipe, recipe()) as run:
            got = run_pipe(pipe, kwargs, image, STEPS)
        plain = run_pipe(pipe, kwargs, image, STEPS)
    finally:
        pipe.transformer = original
    assert [r.passes for r in run.trace] == [3, 3, 3, 2, 2, 2]
    assert max_rel(plain, expected) > 1e-6
    assert max_rel(got, expected) < 1e-12


@pytest.mark.parametrize("family", ["hunyuan-video-1.5", "skyreels-v2-df"])
def test_guidance_schedule_reads_the_scale_of_the_new_backends(family, swap_guider, image):
    # g = 0.5 at every step: the pipeline's w = 5 acts as 1 + (5 - 1) * 0.5 = 3.
    from diffusers import ClassifierFreeGuidance

    pipe, kwargs = pipeline(family)
    halved = gk.Recipe(
        filter=gk.filters.DownUp(FACTOR), schedule=gk.schedules.Constant(0.0), guidance=gk.schedules.Constant(0.5)
    )
    with gk.guide(pipe, halved):
        got = run_pipe(pipe, kwargs, image, STEPS)
    plain = run_pipe(pipe, kwargs, image, STEPS)
    if family == "hunyuan-video-1.5":
        expected = run_pipe(*swap_guider(family, ClassifierFreeGuidance(guidance_scale=3.0)), image, STEPS)
    else:
        expected = run_pipe(pipe, kwargs, image, STEPS, guidance_scale=3.0)
    assert max_rel(got, expected) < 1e-12
    assert max_rel(got, plain) > 1e-6


def test_skyreels_df_per_frame_timesteps_match_reference(image):
    # ar_step=1: each generated frame starts one iteration after the one before it, so a
    # transformer call sees several timesteps (999 for frames not started) and the loop has
    # 6 + 2 = 8 iterations; ALG's window is over the iterations (p = i / 7: 0, 1, 2 filtered).
    pipe, kwargs = pipeline("skyreels-v2-df")
    expected = reference.skyreels_df(pipe, kwargs, image, STEPS, FACTOR, END, 0, ar_step=1)
    timesteps = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, args, kw: timesteps.append(kw["timestep"].clone()), with_kwargs=True
    )
    try:
        with gk.guide(pipe, recipe()) as run:
            got = run_pipe(pipe, kwargs, image, STEPS, ar_step=1)
    finally:
        hook.remove()
    # From iteration 2 on: the image at 0, frames 1-3 at three different timesteps.
    assert len(set(timesteps[6][0].tolist())) == 4
    assert [r.passes for r in run.trace] == [3, 3, 3] + [2] * 5
    assert run.trace[0].num_steps == 8 and run.last.filtered_steps == [0, 1, 2]
    assert [r.timestep for r in run.trace[6:]] == [0.0, 0.0]  # frame 1 is clean after 6 iterations
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS, ar_step=1), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12


@pytest.mark.parametrize("execution", ["batched", "sequential"])
def test_skyreels_df_last_image_matches_reference(execution, image):
    # last_image is encoded with the image and appended as the last latent frame: ALG filters both.
    from guidance_kit.tiny import tiny_image

    pipe, kwargs = pipeline("skyreels-v2-df")
    last = tiny_image(32, seed=1)
    expected = reference.skyreels_df(pipe, kwargs, image, STEPS, FACTOR, END, 0, last_image=last)
    with gk.guide(pipe, recipe(), execution=execution) as run:
        got = run_pipe(pipe, kwargs, image, STEPS, last_image=last)
    assert [r.passes for r in run.trace] == [3, 3, 3, 2, 2, 2]
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS, last_image=last), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12
    with gk.guide(pipe, recipe(space="pixel")) as run:  # one encode of both filtered images
        pixel = run_pipe(pipe, kwargs, image, STEPS, last_image=last)
    assert torch.isfinite(pixel).all() and run.last.vae_encodes == 2 and run.last.passes == 2 * STEPS + 3


def test_skyreels_df_without_cfg_is_one_pass(image):
    pipe, kwargs = pipeline("skyreels-v2-df")
    kwargs = {**kwargs, "guidance_scale": 1.0}
    expected = reference.skyreels_df(pipe, kwargs, image, STEPS, FACTOR, END, 0)
    with gk.guide(pipe, recipe()) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
    assert [r.passes for r in run.trace] == [1] * STEPS and run.last.filtered_steps == [0, 1, 2]
    assert max_rel(got, expected) < 1e-12


def test_skyreels_df_long_video_guides_the_first_chunk_only(image):
    # 6 latent frames in chunks of 4 overlapping by 2: the second chunk is conditioned on the first
    # chunk's last two latent frames, not on the image, and runs as the plain pipeline.
    pipe, kwargs = pipeline("skyreels-v2-df")
    long = {"num_frames": 21, "overlap_history": 5}
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda *args: calls.append(1))
    try:
        with gk.guide(pipe, recipe()) as run:
            got = run_pipe(pipe, kwargs, image, STEPS, **long)
            first_chunk = run_pipe(pipe, kwargs, image, STEPS)  # the same 4 frames as a short video
    finally:
        hook.remove()
    assert got.shape[2] == 6 and len(run.calls) == 2
    assert [r.passes for r in run.calls[0].steps] == [3, 3, 3, 2, 2, 2]
    assert len(calls) == (2 * STEPS + 3) + 2 * STEPS + (2 * STEPS + 3)  # chunk 2: no extra pass
    assert torch.equal(got[:, :, :4], first_chunk)
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS, **long)[:, :, :4], first_chunk) > 1e-6


def test_skyreels_df_refuses_what_hides_the_clean_image(image):
    pipe, kwargs = pipeline("skyreels-v2-df")
    with pytest.raises(gk.GuidanceKitError, match="addnoise_condition > 0 noises the image"):
        with gk.guide(pipe, recipe()):
            run_pipe(pipe, kwargs, image, 2, addnoise_condition=20)
    try:  # the pipeline writes causal_block_size into the transformer's config
        with pytest.raises(gk.GuidanceKitError, match="causal_block_size > 1"):
            with gk.guide(pipe, recipe()):
                run_pipe(pipe, kwargs, image, 2, causal_block_size=2, ar_step=1)
    finally:
        pipe.transformer.register_to_config(num_frame_per_block=1)


@pytest.fixture
def motif_guider():
    """Motif-Video's tiny pipeline with a guider swapped in (restored afterwards)."""
    pipe, kwargs = pipeline("motif-video")
    original = pipe.guider

    def swap(guider):
        pipe.guider = guider
        return pipe, kwargs

    yield swap
    pipe.guider = original


def test_motif_original_formulation_and_cfg_window_match_reference(motif_guider, image):
    # c + w (c - u) (a = 1 + w on the unconditional side) on steps 0, 1 only: step 2 is filtered
    # without CFG (one pass), steps 3-5 are plain conditional passes.
    from diffusers import ClassifierFreeGuidance

    def fresh():
        # diffusers 0.42's Motif reads guider.num_conditions before set_state, i.e. from the
        # previous call's last step: a windowed guider serves one pipeline call only.
        return motif_guider(
            ClassifierFreeGuidance(guidance_scale=3.0, use_original_formulation=True, stop=0.4)
        )

    pipe, kwargs = fresh()
    expected = reference.motif(pipe, kwargs, image, STEPS, FACTOR, END, 0)
    with gk.guide(pipe, recipe()) as run:
        got = run_pipe(*fresh(), image, STEPS)
    assert [r.passes for r in run.trace] == [3, 3, 1, 1, 1, 1]
    assert max_rel(run_pipe(*fresh(), image, STEPS), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12


def test_motif_refuses_a_guider_that_is_not_affine(motif_guider, image):
    from diffusers import ClassifierFreeGuidance

    pipe, kwargs = motif_guider(ClassifierFreeGuidance(guidance_scale=5.0, guidance_rescale=0.7))
    with pytest.raises(gk.GuidanceKitError, match="affine.*guidance_rescale=0.7"):
        with gk.guide(pipe, recipe()):
            run_pipe(pipe, kwargs, image, 2)


# LTX-2 rounds its predictions to float32 and combines them in float32 x0 space (plain pipeline
# against the reference without a window: 3.3e-7 video, 5.8e-7 audio).
LTX2_CALLS = {
    "release defaults (CFG, STG, modality)": {},
    "CFG only": {"stg_scale": 0.0, "audio_stg_scale": 0.0, "modality_scale": 1.0, "audio_modality_scale": 1.0},
    "no CFG, STG and modality": {"guidance_scale": 1.0, "audio_guidance_scale": 1.0},
}


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("call", list(LTX2_CALLS))
def test_ltx2_video_and_audio_match_reference(call, execution, image):
    # The STG and modality-isolation passes see the low-passed image and the shift
    # U(I) - U(LP I) the conditional prediction got, on both outputs.
    pipe, kwargs = pipeline("ltx-2")
    kwargs = {**kwargs, **LTX2_CALLS[call]}
    expected = reference.ltx2(pipe, kwargs, image, STEPS, FACTOR, END, seed=0)

    def run_both():
        out = pipe(
            image=image,
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            **kwargs,
        )
        return out.frames, out.audio

    plain = run_both()
    with gk.guide(pipe, recipe(), execution=execution) as run:
        got = run_both()
    cfg = kwargs["guidance_scale"] > 1
    extra = int(kwargs["stg_scale"] > 0) + int(kwargs["modality_scale"] > 1)
    own = (2 if cfg else 1) + extra
    assert [r.passes for r in run.trace] == [own + cfg] * 3 + [own] * 3
    for output in range(2):  # video, audio
        assert max_rel(plain[output], expected[output]) > 1e-5, "ALG must change both outputs"
        assert max_rel(got[output], expected[output]) < 1e-6


# LTX2ConditionPipeline: as LTX-2 (float32 x0-space combination), every token stepped, frame 0
# held clean by the x0 blend with the clean latents; the image given as one condition with crf=0.
LTX2_CONDITION_CALLS = {
    **LTX2_CALLS,
    "separate audio scheduler (shift 3)": {},
}


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("call", list(LTX2_CONDITION_CALLS))
def test_ltx2_condition_video_and_audio_match_reference(call, execution, image):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    pipe, kwargs = pipeline("ltx2-condition")
    kwargs = {**kwargs, **LTX2_CONDITION_CALLS[call]}

    def run_both():
        out = pipe(
            conditions=[LTX2VideoCondition(frames=image, index=0, strength=1.0, crf=0)],
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            **kwargs,
        )
        return out.frames, out.audio

    if call.startswith("separate audio scheduler"):
        pipe.register_modules(audio_scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    try:
        expected = reference.ltx2_condition(pipe, kwargs, image, STEPS, FACTOR, END, seed=0)
        plain = run_both()
        with gk.guide(pipe, recipe(), execution=execution) as run:
            got = run_both()
        zero = gk.Recipe(filter=gk.filters.DownUp(FACTOR), schedule=gk.schedules.Constant(0.0))
        with gk.guide(pipe, zero) as unfiltered:
            same = run_both()
    finally:
        pipe.register_modules(audio_scheduler=None)
    cfg = kwargs["guidance_scale"] > 1 or kwargs["audio_guidance_scale"] > 1
    stg = kwargs["stg_scale"] > 0 or kwargs["audio_stg_scale"] > 0
    extra = int(stg) + int(kwargs["modality_scale"] > 1 or kwargs["audio_modality_scale"] > 1)
    own = (2 if cfg else 1) + extra
    assert [r.passes for r in run.trace] == [own + cfg] * 3 + [own] * 3
    assert [r.passes for r in unfiltered.trace] == [own] * STEPS and unfiltered.last.filtered_steps == []
    for output in range(2):  # video, audio
        assert torch.equal(same[output], plain[output]), "strength 0 must be the plain pipeline, bit for bit"
        assert max_rel(plain[output], expected[output]) > 1e-5, "ALG must change both outputs"
        assert max_rel(got[output], expected[output]) < 1e-6


def _framepack_negative():
    return {
        "negative_prompt_embeds": torch.randn(
            1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(9)
        ),
        "negative_prompt_attention_mask": torch.ones(1, 16, dtype=torch.float64),
        "negative_pooled_prompt_embeds": torch.randn(
            1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(8)
        ),
    }


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("sampling_type", ["inverted_anti_drifting", "vanilla"])
@pytest.mark.parametrize("true_cfg", [False, True])
def test_framepack_sections_match_reference(true_cfg, sampling_type, execution, image):
    # Two sections, each a loop of its own (one trace per section, the window applied per
    # section); embedded guidance is one pass per step, true CFG 2N + filtered passes.
    pipe, kwargs = pipeline("hunyuan-framepack")
    w, negative = 3.0, _framepack_negative()
    call = {"sampling_type": sampling_type, **({"true_cfg_scale": w, **negative} if true_cfg else {})}
    cfg = (w, tuple(negative.values())) if true_cfg else None
    expected = reference.framepack(pipe, kwargs, image, STEPS, FACTOR, END, 0, cfg, sampling_type)
    with gk.guide(pipe, recipe(), execution=execution) as run:
        got = run_pipe(pipe, kwargs, image, STEPS, **call)
    assert len(expected) == len(got) == len(run.calls) == 2
    for section in run.calls:
        assert section.filtered_steps == [0, 1, 2]
        assert section.passes == (2 * STEPS + 3 if true_cfg else STEPS)
    plain = run_pipe(pipe, kwargs, image, STEPS, **call)
    assert max(max_rel(p, e) for p, e in zip(plain, expected)) > 1e-6
    assert max(max_rel(g, e) for g, e in zip(got, expected)) < 1e-12


@pytest.mark.parametrize("space", ["latent", "pixel"])
def test_framepack_last_image_stays_sharp_and_pixel_space_encodes_the_first_image(space, image):
    # With an end keyframe the pipeline encodes two images; ALG filters the first image only
    # (frame 0 of latents_clean), in pixel space through a replay of the first encode.
    pipe, kwargs = pipeline("hunyuan-framepack")
    last = tiny_image(seed=3)
    pixel = space == "pixel"
    expected = reference.framepack(pipe, kwargs, image, STEPS, FACTOR, END, 0, last_image=last, pixel=pixel)
    with gk.guide(pipe, recipe(space=space)) as run:
        got = run_pipe(pipe, kwargs, image, STEPS, last_image=last)
    assert run.calls[0].vae_encodes == (3 if pixel else 2)
    assert (
        max(max_rel(p, e) for p, e in zip(run_pipe(pipe, kwargs, image, STEPS, last_image=last), expected))
        > 1e-6
    )
    assert max(max_rel(g, e) for g, e in zip(got, expected)) < 1e-12
    if pixel:
        expected = reference.framepack(pipe, kwargs, image, STEPS, FACTOR, END, 0, pixel=True)
        with gk.guide(pipe, recipe(space=space)):
            got = run_pipe(pipe, kwargs, image, STEPS)
        assert max(max_rel(g, e) for g, e in zip(got, expected)) < 1e-12


# LTXConditionPipeline: the call variants beyond the release defaults (image=, noise scale 0.15,
# CFG): the same image given as a condition, no re-noising, guidance rescale, no CFG, pixel space.
LTX_CONDITION_CALLS = {
    "conditions=[LTXVideoCondition(image)]": ({}, {}),
    "image_cond_noise_scale=0": ({"image_cond_noise_scale": 0.0}, {"noise_scale": 0.0}),
    "guidance_rescale=0.7": ({"guidance_rescale": 0.7}, {"rescale": 0.7}),
    "no CFG": ({"guidance_scale": 1.0}, {}),
    "pixel space": ({}, {"pixel": True}),
}


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("call", list(LTX_CONDITION_CALLS))
def test_ltx_condition_variants_match_reference(call, execution, image):
    # The conditioning tokens are re-noised from the clean initial latents every step: ALG
    # low-passes the clean image latent and keeps the added noise (filtering the noisy tokens
    # instead differs from the reference by ~2e-6 here).
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    pipe, kwargs = pipeline("ltx-condition")
    extra, options = LTX_CONDITION_CALLS[call]
    kwargs = {**kwargs, **{k: v for k, v in extra.items() if k == "guidance_scale"}}
    extra = {k: v for k, v in extra.items() if k != "guidance_scale"}
    expected = reference.ltx_condition(pipe, kwargs, image, STEPS, FACTOR, END, 0, **options)
    space = "pixel" if options.get("pixel") else "latent"

    def call_pipe():
        if call.startswith("conditions="):
            return pipe(
                conditions=[LTXVideoCondition(image=image, frame_index=0, strength=1.0)],
                num_inference_steps=STEPS,
                generator=torch.Generator().manual_seed(0),
                output_type="latent",
                **kwargs,
            ).frames
        return run_pipe(pipe, kwargs, image, STEPS, **extra)

    plain = call_pipe()
    with gk.guide(pipe, recipe(space=space), execution=execution) as run:
        got = call_pipe()
    cfg = kwargs["guidance_scale"] > 1
    assert [r.passes for r in run.trace] == ([3, 3, 3, 2, 2, 2] if cfg else [1] * STEPS)
    assert run.last.vae_encodes == (2 if space == "pixel" else 1)
    assert max_rel(plain, expected) > 1e-6, "ALG must change the result, or the comparison proves nothing"
    assert max_rel(got, expected) < 1e-12
    if call.startswith("conditions="):  # the same call as image=
        with gk.guide(pipe, recipe(), execution=execution):
            assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), got)


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("family", ["wan-vace", "wan-vace-a14b"])
def test_wan_vace_pixel_space_and_both_experts_match_reference(family, execution, image):
    # Pixel space low-passes frame 0 of the preprocessed video and replays prepare_video_latents:
    # only the inactive latent changes. With two experts, both run (high noise, then low noise).
    pipe, kwargs = pipeline(family)
    expected = reference.wan_vace(pipe, kwargs, image, STEPS, FACTOR, END, 0, pixel=True)
    calls = {name: 0 for name in ("transformer", "transformer_2")}
    hooks = [
        getattr(pipe, name).register_forward_pre_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
        for name in calls
        if getattr(pipe, name) is not None
    ]
    try:
        with gk.guide(pipe, recipe(space="pixel"), execution=execution) as run:
            got = run_pipe(pipe, kwargs, image, STEPS)
    finally:
        for hook in hooks:
            hook.remove()
    assert [r.passes for r in run.trace] == [3, 3, 3, 2, 2, 2]
    if family == "wan-vace-a14b":
        assert calls["transformer"] > 0 and calls["transformer_2"] > 0
        assert sum(calls.values()) == (15 if execution == "sequential" else 12)
    plain = run_pipe(pipe, kwargs, image, STEPS)
    assert max_rel(plain, expected) > 1e-6, "ALG must change the result, or the comparison proves nothing"
    assert max_rel(got, expected) < 1e-12


def _animate_case(case):
    """Wan-Animate call arguments beyond the tiny family's (two segments of 5 frames, CFG)."""
    from PIL import Image

    if case == "replace":  # the background video and a character mask (white: the character)
        mask = Image.new("L", (32, 32), 0)
        mask.paste(255, (8, 4, 24, 28))
        return {
            "mode": "replace",
            "background_video": [tiny_image(32, seed=300 + i) for i in range(9)],
            "mask_video": [mask] * 9,
        }
    if case == "no-cfg":
        return {"guidance_scale": 1.0}
    if case == "prev-5":  # five previous frames carried over: segments of 13 frames, 21 in all
        pipe, kwargs = pipeline("wan-animate")
        return {
            "segment_frame_length": 13,
            "prev_segment_conditioning_frames": 5,
            "pose_video": (kwargs["pose_video"] * 3)[:21],
            "face_video": (kwargs["face_video"] * 3)[:21],
        }
    return {}


@pytest.mark.parametrize(
    ("case", "execution"),
    [("pixel", "sequential"), ("replace", "batched"), ("no-cfg", "batched"), ("prev-5", "sequential")],
)
def test_wan_animate_every_segment_matches_reference(case, execution, image):
    # Every segment is a loop of its own: ALG filters steps 0-2 of each, on the reference image
    # latent only; the unconditional call keeps its blanked face for U(I) and U(LP I).
    pipe, kwargs = pipeline("wan-animate")
    kwargs = {**kwargs, **_animate_case(case)}
    pixel = case == "pixel"
    expected = reference.wan_animate(pipe, kwargs, image, STEPS, FACTOR, END, 0, pixel=pixel)
    with gk.guide(pipe, recipe("pixel" if pixel else "latent"), execution=execution) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
    assert [c.filtered_steps for c in run.calls] == [[0, 1, 2], [0, 1, 2]]
    per_segment = STEPS if case == "no-cfg" else 2 * STEPS + 3
    assert [c.passes for c in run.calls] == [per_segment, per_segment]
    assert max_rel(run_pipe(pipe, kwargs, image, STEPS), expected) > 1e-6
    assert max_rel(got, expected) < 1e-12


@pytest.mark.parametrize("execution", ["batched", "sequential"])
def test_wan_animate_two_rows_match_the_reference_row_by_row(execution, image):
    # Two prompts with a generator each: row k is the one-row reference with seed k.
    pipe, kwargs = pipeline("wan-animate")
    two = {k: kwargs[k].repeat(2, 1, 1) for k in ("prompt_embeds", "negative_prompt_embeds")}
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    with gk.guide(pipe, recipe(), execution=execution) as run:
        got = pipe(
            image=image,
            num_inference_steps=STEPS,
            generator=generators,
            output_type="latent",
            **{**kwargs, **two},
        ).frames
    assert [c.passes for c in run.calls] == [2 * STEPS + 3] * 2
    for row in (0, 1):
        expected = reference.wan_animate(pipe, kwargs, image, STEPS, FACTOR, END, row)
        assert max_rel(got[row : row + 1], expected) < 1e-12


# Kandinsky 6: the transformer returns video and audio predictions; the audio scheduler is a deep
# copy of the video scheduler (it must not advance the step clock); the image latent sits on the
# appended tail frame.
KANDINSKY6_CALLS = {  # family, call arguments, passes per step
    "CFG": ("kandinsky6", {}, [3] * 3 + [2] * 3),
    "no CFG": ("kandinsky6", {"guidance_scale": 1.0}, [1] * 6),
    # the distilled checkpoints: PiflowScheduler (n_grid predictions per channel), no CFG
    "distilled": ("kandinsky6-distill", {}, [1] * 6),
}


def _kandinsky6(pipe, kwargs, image, **extra):
    out = pipe(
        image=image,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        **kwargs,
        **extra,
    )
    return out.frames, out.audio


@pytest.mark.parametrize("space", ["latent", "pixel"])
@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("call", list(KANDINSKY6_CALLS))
def test_kandinsky6_video_and_audio_match_reference(call, execution, space, image):
    family, extra, passes = KANDINSKY6_CALLS[call]
    pipe, kwargs = pipeline(family)
    kwargs = {**kwargs, **extra}
    expected = reference.kandinsky6(pipe, kwargs, image, STEPS, FACTOR, END, seed=0, pixel=space == "pixel")
    plain = _kandinsky6(pipe, kwargs, image)
    with gk.guide(pipe, recipe(space=space), execution=execution) as run:
        got = _kandinsky6(pipe, kwargs, image)
    assert [r.passes for r in run.trace] == passes and run.last.filtered_steps == [0, 1, 2]
    for output in range(2):  # video, audio
        assert max_rel(plain[output], expected[output]) > 1e-5, "ALG must change both outputs"
        assert max_rel(got[output], expected[output]) < 1e-12
    zero = gk.Recipe(filter=gk.filters.DownUp(FACTOR), schedule=gk.schedules.Constant(0.0), space=space)
    with gk.guide(pipe, zero, execution=execution):
        unfiltered = _kandinsky6(pipe, kwargs, image)
    assert all(torch.equal(a, b) for a, b in zip(unfiltered, plain))
