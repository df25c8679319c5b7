"""ALG through guide() equals the independent reference loops in tests/reference.py."""

import pytest
import torch

import guidance_kit as gk

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
    "motif-video": reference.motif,
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
