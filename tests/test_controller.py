"""guide(): pass counts, restoration, strength-0 identity, pixel-space encodes, modes, errors."""

from contextlib import contextmanager

import pytest
import torch

import guidance_kit as gk

from conftest import pipeline, run_pipe

STEPS = 6
CFG = [
    "wan2.1",
    "wan2.2-a14b",
    "wan2.2-ti2v",
    "skyreels-v2",
    "cogvideox",
    "ltx-video",
    "sana-video",
    "hunyuan-skyreels",
    "chronoedit",
    "kandinsky5",
    "kandinsky6",
    "cosmos2",
    "cosmos2.5",
    "motif-video",
    "hunyuan-video-1.5",
    "skyreels-v2-df",
    "ltx-condition",
]
# HunyuanVideo Framepack runs one loop per section: run.last is its last section, run.calls[0] its
# first, and its latent output is a list (the history after each section).
ONE_PASS = ["hunyuan-video", "hunyuan-video-token-replace", "hunyuan-framepack"]
# LTX-2 adds spatio-temporal guidance and modality-isolation passes (tests/test_alg_equivalence.py)
ALL = CFG + ONE_PASS + ["svd", "ltx-2"]
# LTX2ConditionPipeline refuses pixel space (its H.264 re-compression sits inside prepare_latents).
LATENT_ONLY = ["ltx2-condition"]
# Wan VACE encodes two latents (inactive, reactive) per prepare_video_latents: its own pixel test.
VACE = ["wan-vace", "wan-vace-a14b"]
# Wan-Animate runs one loop per segment (two here): run.last is its last segment; it encodes the
# pose and previous-segment frames too, so it has its own pixel test.
ANIMATE = ["wan-animate"]


def window(end=0.4, space="latent", mode="alg", factor=0.5):
    return gk.Recipe(
        filter=gk.filters.DownUp(factor), schedule=gk.schedules.StepSwitch(0.0, end), space=space, mode=mode
    )


def denoisers(pipe):
    return [
        m for m in (getattr(pipe, n, None) for n in ("transformer", "transformer_2", "unet")) if m is not None
    ]


def snapshot(pipe):
    """The instance attributes of everything guide() patches, the identity of its methods and the
    denoisers' torch hooks."""
    objs = [pipe, pipe.scheduler, pipe.vae, *denoisers(pipe)]
    state = [(id(o), sorted(vars(o))) for o in objs]
    methods = [pipe.scheduler.step, pipe.scheduler.set_timesteps, pipe.vae.encode, pipe.prepare_latents]
    hooks = [(dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in denoisers(pipe)]
    return (
        state,
        [(m.__func__, m.__self__) for m in methods],
        [m.forward.__func__ for m in denoisers(pipe)],
        hooks,
    )


@pytest.mark.parametrize("family", CFG + VACE + ANIMATE)
def test_pass_count_with_cfg_is_2n_plus_filtered(family, image):
    pipe, kwargs = pipeline(family)
    with gk.guide(pipe, window(end=0.4)) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    filtered = len(run.last.filtered_steps)
    assert filtered == 3
    assert run.last.passes == 2 * STEPS + filtered
    assert [r.passes for r in run.trace] == [3, 3, 3, 2, 2, 2]
    assert all(r.cfg for r in run.trace)


@pytest.mark.parametrize("family", ONE_PASS)
def test_pass_count_without_cfg_is_n(family, image):
    pipe, kwargs = pipeline(family)
    with gk.guide(pipe, window(end=0.4)) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    assert run.last.passes == STEPS and run.last.filtered_steps == [0, 1, 2]
    assert not any(r.cfg for r in run.trace)


def test_wan_without_cfg_is_one_pass(image):
    pipe, kwargs = pipeline("wan2.1")
    with gk.guide(pipe, window()) as run:
        run_pipe(pipe, kwargs, image, STEPS, guidance_scale=1.0)
    assert run.last.passes == STEPS


def test_svd_alg_needs_no_extra_pass(image):
    # SVD's unconditional branch sees a zero image latent: U(LP I) = U(I), nothing extra to run.
    pipe, kwargs = pipeline("svd")
    with gk.guide(pipe, window()) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    assert run.last.passes == 2 * STEPS


@pytest.mark.parametrize("family", ALL + LATENT_ONLY + VACE + ANIMATE)
def test_strength_zero_everywhere_is_bit_identical(family, image):
    pipe, kwargs = pipeline(family)
    plain = run_pipe(pipe, kwargs, image, STEPS)
    zero = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=gk.schedules.Constant(0.0))
    with gk.guide(pipe, zero) as run:
        guided = run_pipe(pipe, kwargs, image, STEPS)
    if isinstance(plain, list):  # Framepack: the history after each section
        assert len(plain) == len(guided) and all(torch.equal(p, g) for p, g in zip(plain, guided))
    else:
        assert torch.equal(plain, guided)
    assert run.last.filtered_steps == []


@pytest.mark.parametrize("family", ["wan2.2-a14b", "cogvideox"])
def test_guided_and_plain_calls_alternate(family, image):
    pipe, kwargs = pipeline(family)
    plain = run_pipe(pipe, kwargs, image, STEPS)
    with gk.guide(pipe, window()):
        first = run_pipe(pipe, kwargs, image, STEPS)
    assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), plain)
    with gk.guide(pipe, window()) as run:
        second = run_pipe(pipe, kwargs, image, STEPS)
        third = run_pipe(pipe, kwargs, image, STEPS)  # two calls in one block
    assert torch.equal(first, second) and torch.equal(second, third)
    assert len(run.calls) == 2 and not torch.equal(first, plain)


@pytest.mark.parametrize(
    "family", ["wan2.1", "cogvideox", "svd", "ltx-condition", *LATENT_ONLY, "wan-vace", *ANIMATE]
)
def test_pipeline_restored_after_exception(family, image):
    pipe, kwargs = pipeline(family)
    space = "latent" if family in LATENT_ONLY else "pixel"
    plain = run_pipe(pipe, kwargs, image, STEPS)
    before = snapshot(pipe)

    def boom(pipe_, i, t, callback_kwargs):
        if i == 1:
            raise RuntimeError("boom")
        return callback_kwargs

    with pytest.raises(RuntimeError, match="boom"):
        with gk.guide(pipe, window(space=space)):
            run_pipe(pipe, kwargs, image, STEPS, callback_on_step_end=boom)
    assert snapshot(pipe) == before
    assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), plain)


def test_exception_inside_denoiser_restores(image):
    pipe, kwargs = pipeline("wan2.1")
    run_pipe(pipe, kwargs, image, 2)
    before = snapshot(pipe)
    with pytest.raises(RuntimeError):
        with gk.guide(pipe, window()):
            run_pipe(pipe, kwargs, image, STEPS, prompt_embeds=torch.zeros(1, 16, 7, dtype=torch.float64))
    assert snapshot(pipe) == before


@pytest.mark.parametrize("family", ALL)
def test_pixel_space_encodes_once_per_distinct_strength(family, image):
    pipe, kwargs = pipeline(family)
    with gk.guide(pipe, window(end=0.4, space="pixel")) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    # The pipeline's own encode, plus one for the single distinct strength 1.0 (3 filtered steps).
    first = run.calls[0]  # the loop that encodes (Framepack's first section; the only one elsewhere)
    assert first.vae_encodes == 2
    assert [r.vae_encodes for r in first.steps] == [1, 0, 0, 0, 0, 0]
    linear = gk.Recipe(
        filter=gk.filters.DownUp(0.5), schedule=gk.schedules.Linear(1.0, 0.0, end=0.5), space="pixel"
    )
    with gk.guide(pipe, linear) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    strengths = {r.strength for r in run.calls[0].steps if r.strength > 0}
    assert len(strengths) == 3 and run.calls[0].vae_encodes == 1 + len(strengths)


def test_pixel_space_replay_leaves_given_latents_alone(image):
    # Sana-Video's prepare_latents writes the image latent into the latents it is given; the
    # filtered re-encode must not write into the latents the pipeline is denoising.
    pipe, kwargs = pipeline("sana-video")
    with gk.guide(pipe, window(space="pixel")):
        drawn = run_pipe(pipe, kwargs, image, STEPS)
    noise = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with gk.guide(pipe, window(space="pixel")):
        given = run_pipe(pipe, kwargs, image, STEPS, latents=noise)
    assert torch.equal(drawn, given)


@contextmanager
def image_conditions(pipe):
    """The Wan image condition (last 16 channels) of every transformer call, as the model sees it."""
    seen = []
    original = pipe.transformer.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["hidden_states"][:, -16:].clone())
        return original(*args, **kwargs)

    pipe.transformer.forward = spy
    try:
        yield seen
    finally:
        del pipe.transformer.forward


def test_pixel_space_filters_the_image_before_encoding(image):
    # Pixel space at strength s uses exactly the pipeline's own encode of LP_s(image).
    pipe, kwargs = pipeline("wan2.1")
    with image_conditions(pipe) as seen, gk.guide(pipe, window(end=0.0, space="pixel", factor=0.25)):
        run_pipe(pipe, kwargs, image, 2)
    pixels = pipe.video_processor.preprocess(image, height=32, width=32).to(torch.float32)
    filtered = gk.filters.DownUp(0.25)(pixels, 1.0)
    _, condition = pipe.prepare_latents(
        filtered, 1, 16, 32, 32, 9, torch.float32, "cpu", torch.Generator().manual_seed(0)
    )
    expected = condition[:, -16:].double()
    assert torch.allclose(seen[0], expected, atol=1e-6)  # step 0, conditional branch
    assert not torch.allclose(seen[0], seen[-1], atol=1e-3)  # last step is unfiltered


@pytest.mark.parametrize("mode", ["replace", "cond_only"])
def test_ablation_modes_pass_counts_and_differ_from_alg(mode, image):
    pipe, kwargs = pipeline("cogvideox")
    with gk.guide(pipe, window()) as run:
        alg = run_pipe(pipe, kwargs, image, STEPS)
    with gk.guide(pipe, window(mode=mode)) as run_mode:
        out = run_pipe(pipe, kwargs, image, STEPS)
    assert run.last.passes == 2 * STEPS + 3
    assert run_mode.last.passes == 2 * STEPS
    assert not torch.allclose(alg, out)


def test_replace_mode_matches_filtered_cfg(image):
    # "replace" is plain CFG where both branches see LP(I): equal to ALG's formula with U(LP I) as anchor.
    pipe, kwargs = pipeline("wan2.1")
    with image_conditions(pipe) as seen, gk.guide(pipe, window(mode="replace")):
        run_pipe(pipe, kwargs, image, STEPS)
    assert len(seen) == 2 * STEPS  # no extra pass
    assert torch.equal(seen[0], seen[1])  # both branches filtered at step 0
    assert not torch.equal(seen[0], seen[-1])


def test_trace_records_filter_parameters(image):
    pipe, kwargs = pipeline("wan2.1")
    with gk.guide(pipe, window(factor=0.4)) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    first, last = run.trace[0], run.trace[-1]
    assert first.filter == {"strength": 1.0, "factor": 0.4, "height": 2}  # round(4 * 0.4) = 2
    assert last.strength == 0.0 and last.progress == 1.0
    assert first.denoiser == "transformer" and first.calls == 2
    assert run.to_dict()["calls"][0]["filtered_steps"] == [0, 1, 2]


def test_wan22_uses_both_experts(image):
    pipe, kwargs = pipeline("wan2.2-a14b")
    with gk.guide(pipe, window()) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    assert {r.denoiser for r in run.trace} == {"transformer", "transformer_2"}


def test_unsupported_pipeline_lists_supported():
    class NotAPipeline:
        pass

    with pytest.raises(gk.UnsupportedPipelineError, match="NotAPipeline.*wan2.1.*WanImageToVideoPipeline"):
        with gk.guide(NotAPipeline(), window()):
            pass


def test_bad_execution_and_nesting(image):
    pipe, _ = pipeline("wan2.1")
    with pytest.raises(gk.InvalidParameterError, match="batched.*sequential.*'fast'"):
        with gk.guide(pipe, window(), execution="fast"):
            pass
    with gk.guide(pipe, window()):
        with pytest.raises(gk.GuidanceKitError, match="already inside"):
            with gk.guide(pipe, window()):
                pass


def test_recipe_name_resolves_to_backend_default(image):
    pipe, kwargs = pipeline("cogvideox")
    with gk.guide(pipe, "alg") as run:
        assert run.recipe == gk.recipes.get("alg", backend="cogvideox")
        assert run.recipe.filter == gk.filters.DownUp(0.25)
        run_pipe(pipe, kwargs, image, 26)
    assert run.last.filtered_steps == [0, 1]  # p = i / 25 <= 0.04


def test_observer_hooks_see_every_step(image):
    pipe, kwargs = pipeline("ltx-video")
    events = []

    class Observer:
        @gk.hookimpl
        def on_guide_enter(self, run):
            events.append("enter")

        @gk.hookimpl
        def on_step(self, run, record):
            events.append(record.step)

        @gk.hookimpl
        def on_guide_exit(self, run, error):
            events.append(("exit", error))

    observer = Observer()
    gk.register_plugin(observer, name="test-observer")
    try:
        with gk.guide(pipe, window()):
            run_pipe(pipe, kwargs, image, 3)
    finally:
        gk.unregister_plugin(observer)
    assert events == ["enter", 0, 1, 2, ("exit", None)]


def test_identity_filter_costs_nothing_and_changes_nothing(image):
    # DownUp(1.0) is the identity at every strength: no extra pass, bit-identical output.
    pipe, kwargs = pipeline("cogvideox")
    plain = run_pipe(pipe, kwargs, image, STEPS)
    with gk.guide(pipe, window(factor=1.0)) as run:
        out = run_pipe(pipe, kwargs, image, STEPS)
    assert torch.equal(out, plain)
    assert run.last.passes == 2 * STEPS and run.last.filtered_steps == []
    assert run.trace[0].strength == 1.0


def test_third_party_backend_through_the_hookspec(image):
    from guidance_kit.plugins.backends.cogvideox import CogVideoXBackend

    class MarkedCog(CogVideoXBackend):
        name = "marked-cog"

    class Plugin:
        @gk.hookimpl
        def register_backends(self):
            return [MarkedCog()]

    pipe, kwargs = pipeline("cogvideox")
    plugin = Plugin()
    gk.register_plugin(plugin, name="marked")
    try:
        assert gk.find_backend(pipe).name == "cogvideox"  # built-ins are tried first
        with gk.guide(pipe, window(), backend="marked-cog") as run:
            run_pipe(pipe, kwargs, image, STEPS)
        assert run.backend.name == "marked-cog" and run.last.passes == 2 * STEPS + 3
    finally:
        gk.unregister_plugin(plugin)


def test_batch_of_videos_matches_single_videos(image):
    # Two videos per prompt on a split backend: every row is guided like a single video.
    pipe, kwargs = pipeline("wan2.1")
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    with gk.guide(pipe, window()) as run:
        both = pipe(
            image=image,
            num_inference_steps=STEPS,
            generator=generators,
            num_videos_per_prompt=2,
            output_type="latent",
            **kwargs,
        ).frames
        singles = [run_pipe(pipe, kwargs, image, STEPS, seed=seed) for seed in (0, 1)]
    assert run.calls[0].passes == run.calls[1].passes == 2 * STEPS + 3  # per CFG branch, not per row
    for row, single in zip(both, singles):
        torch.testing.assert_close(row[None], single, atol=1e-10, rtol=1e-10)


def test_batched_backend_with_two_prompts(image):
    # LTX-Video with a batch of two prompts and two images: 2B rows per call, 3B on ALG steps.
    from guidance_kit.tiny import tiny_image

    pipe, kwargs = pipeline("ltx-video")
    kwargs = {
        k: torch.cat([v, v.flip(0) if v.ndim > 2 else v]) if torch.is_tensor(v) else v
        for k, v in kwargs.items()
    }
    images = [image, tiny_image(32, seed=1)]
    plain = run_pipe(pipe, kwargs, images, STEPS)
    zero = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=gk.schedules.Constant(0.0))
    with gk.guide(pipe, zero):
        assert torch.equal(run_pipe(pipe, kwargs, images, STEPS), plain)
    for execution in ("batched", "sequential"):
        with gk.guide(pipe, window(), execution=execution) as run:
            guided = run_pipe(pipe, kwargs, images, STEPS)
        assert guided.shape == plain.shape == (2, 192, 8) and not torch.allclose(guided, plain)
        assert run.last.passes == 2 * STEPS + 3
        assert [r.calls for r in run.trace] == [1 if execution == "batched" else 2] * 3 + [1] * 3
    with gk.guide(pipe, window(), execution="batched"):
        torch.testing.assert_close(run_pipe(pipe, kwargs, images, STEPS), guided, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", ["wan2.1", "cogvideox", "svd"])
@pytest.mark.parametrize("space", ["latent", "pixel"])
def test_low_precision_pipelines(family, space, image):
    pipe, kwargs = pipeline(family, torch.bfloat16)
    with gk.guide(pipe, window(space=space)) as run:
        out = run_pipe(pipe, kwargs, image, 3)
    assert torch.isfinite(out.float()).all() and run.last.filtered_steps == [0]  # p = 0, 0.5, 1


def test_kandinsky5_pixel_space_encodes_the_filtered_image(image):
    # prepare_latents takes a raw image and preprocesses it itself: the backend hands it the
    # filtered image as a [0, 1] tensor. Down/up commutes with that affine map, so the condition
    # must be the VAE encode of LP(preprocessed image), drawn with the pipeline's generator.
    from diffusers.utils.torch_utils import randn_tensor

    pipe, kwargs = pipeline("kandinsky5")
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["hidden_states"][:, :1, :, :, :4].clone()), with_kwargs=True
    )
    try:
        with gk.guide(pipe, window(end=0.0, space="pixel", factor=0.25)):
            run_pipe(pipe, kwargs, image, 2)
    finally:
        hook.remove()
    pixels = pipe.video_processor.preprocess(image, height=32, width=32).to(torch.float64)
    generator = torch.Generator().manual_seed(0)
    randn_tensor((1, 5, 4, 4, 4), generator=generator, dtype=torch.float64)  # the noise drawn first
    encoded = pipe.vae.encode(gk.filters.DownUp(0.25)(pixels, 1.0).unsqueeze(2)).latent_dist.sample(generator)
    expected = (encoded * pipe.vae.config.scaling_factor).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(seen[0], expected, atol=1e-10, rtol=1e-10)  # step 0, conditional
    assert not torch.allclose(seen[0], seen[-1], atol=1e-3)  # the last step sees the sharp image
    with pytest.raises(gk.GuidanceKitError, match="encodes no image when latents are given"):
        with gk.guide(pipe, window(space="pixel")):
            run_pipe(pipe, kwargs, image, 2, latents=torch.zeros(1, 5, 4, 4, 9, dtype=torch.float64))


def test_cosmos25_text2world_has_no_image_to_filter(image):
    pipe, kwargs = pipeline("cosmos2.5")
    with pytest.raises(gk.GuidanceKitError, match="no conditioning frames"):
        with gk.guide(pipe, window()):
            pipe(num_inference_steps=2, output_type="latent", **kwargs)
    assert run_pipe(pipe, kwargs, image, 2).shape[2] == 3  # the image call still works afterwards


def _ltx_conditions(image, **fields):
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    return {"conditions": [LTXVideoCondition(**{"image": image, **fields})]}


def _two_images(image):
    # (image=[a, b] is not two conditions: diffusers 0.42 zips it with video=[None] and keeps a)
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    from guidance_kit.tiny import tiny_image

    second = LTXVideoCondition(image=tiny_image(seed=1), frame_index=8)
    return {"conditions": [LTXVideoCondition(image=image), second]}


LTX_CONDITION_REFUSALS = {
    "video": (lambda img: _ltx_conditions(None, video=[img] * 5), r"a video condition \(5 frames\)"),
    "two conditions": (_two_images, "conditions: 2 conditions"),
    "frame index": (lambda img: _ltx_conditions(img, frame_index=8), "frame_index=8"),
    "strength": (lambda img: {"image": img, "strength": 0.5}, "strength=0.5"),
    "denoise strength": (
        lambda img: {
            "image": img,
            "denoise_strength": 0.5,
            "latents": torch.zeros(1, 8, 3, 8, 8, dtype=torch.float64),
        },
        "denoise_strength < 1",
    ),
    "text to video": (lambda img: {}, r"no image or video condition \(text-to-video\)"),
}


def _same(a, b):
    """Equal outputs: a tensor, or a tuple of tensors (video and audio)."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def assert_refused_and_restored(pipe, run, match, spaces=("latent",), extra=lambda: (), strength_zero=True):
    """``run()`` (a pipeline call, returning its outputs) runs plain; under a filtering guide()
    it raises GuidanceKitError matching ``match`` in every space of ``spaces``, and leaves the
    pipeline as it was (``snapshot`` plus ``extra()``); afterwards it runs as before, plain and
    (``strength_zero``) under a strength-0 recipe, which never reads the condition."""
    plain = run()
    before = snapshot(pipe), extra()
    for space in spaces:
        with pytest.raises(gk.GuidanceKitError, match=match):
            with gk.guide(pipe, window(space=space)):
                run()
        assert (snapshot(pipe), extra()) == before
    assert _same(run(), plain)
    if strength_zero:
        zero = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=gk.schedules.Constant(0.0))
        with gk.guide(pipe, zero):  # nothing to filter: the call runs as the plain pipeline
            assert _same(run(), plain)


@pytest.mark.parametrize("case", list(LTX_CONDITION_REFUSALS))
def test_ltx_condition_refuses_what_it_cannot_guide_exactly(case, image):
    pipe, kwargs = pipeline("ltx-condition")
    arguments, message = LTX_CONDITION_REFUSALS[case]
    call = {**kwargs, **arguments(image), "num_inference_steps": 2, "output_type": "latent"}
    run = lambda: pipe(**call, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    assert_refused_and_restored(pipe, run, f"ltx-condition: .*{message}.*")


def _ltx2_conditions(*conditions):
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    return {"conditions": [LTX2VideoCondition(**{"crf": 0, **fields}) for fields in conditions]}


def _ltx2_two_images(image):
    from guidance_kit.tiny import tiny_image

    return _ltx2_conditions({"frames": image}, {"frames": tiny_image(seed=1), "index": 2})


# The tiny LTX-2 video has 5 latent frames (9 frames, temporal compression 2).
LTX2_CONDITION_REFUSALS = {
    "video": (lambda img: _ltx2_conditions({"frames": [img] * 5}), r"frames: a video condition \(5 frames\)"),
    "two conditions": (_ltx2_two_images, "conditions: 2 conditions"),
    "keyframe index": (
        lambda img: _ltx2_conditions({"frames": img, "index": 2}),
        "index=2: .*keyframe tokens",
    ),
    "strength": (lambda img: _ltx2_conditions({"frames": img, "strength": 0.5}), "strength=0.5"),
    "index past the end": (
        lambda img: _ltx2_conditions({"frames": img, "index": 7}),
        "index=7: the pipeline skipped the condition",
    ),
    "text to video": (lambda img: {}, r"conditions: none in this call \(text-to-video\)"),
}


def _ltx2_run(pipe, call):
    torch.manual_seed(0)  # a stochastic scheduler draws its noise from the global generator
    return pipe(**call, generator=torch.Generator().manual_seed(0)).frames


def _ltx2_refused(pipe, call, message, strength_zero=True):
    run = lambda: _ltx2_run(pipe, call)  # noqa: E731
    assert_refused_and_restored(pipe, run, f"ltx2-condition: .*{message}.*", strength_zero=strength_zero)


@pytest.mark.parametrize("case", list(LTX2_CONDITION_REFUSALS))
def test_ltx2_condition_refuses_what_it_cannot_guide_exactly(case, image):
    pipe, kwargs = pipeline("ltx2-condition")
    arguments, message = LTX2_CONDITION_REFUSALS[case]
    call = {**kwargs, **arguments(image), "num_inference_steps": 2, "output_type": "latent"}
    _ltx2_refused(pipe, call, message)


def test_ltx2_condition_refuses_a_stochastic_scheduler(image):
    # stochastic_sampling re-noises every token at every step: frame 0 is no clean image latent.
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe, kwargs = pipeline("ltx2-condition")
    call = {
        **kwargs,
        **_ltx2_conditions({"frames": image}),
        "num_inference_steps": 2,
        "output_type": "latent",
    }
    scheduler = pipe.scheduler
    pipe.register_modules(scheduler=FlowMatchEulerDiscreteScheduler(stochastic_sampling=True))
    try:
        _ltx2_refused(pipe, call, "scheduler stochastic_sampling=True", strength_zero=False)
    finally:
        pipe.register_modules(scheduler=scheduler)


def test_ltx2_condition_refuses_pixel_space_before_attaching(image):
    pipe, kwargs = pipeline("ltx2-condition")
    before = snapshot(pipe)
    with pytest.raises(
        gk.UnsupportedPipelineError, match=r"'ltx2-condition' cannot filter in pixel space.*crf"
    ):
        with gk.guide(pipe, window(space="pixel")):
            pass
    assert snapshot(pipe) == before


def test_ltx2_condition_refuses_frame_0_tokens_that_are_not_the_clean_image_latent(image):
    # A step callback that moves the latents leaves frame 0 off the clean image latent.
    pipe, kwargs = pipeline("ltx2-condition")
    call = {
        **kwargs,
        **_ltx2_conditions({"frames": image}),
        "num_inference_steps": 6,
        "output_type": "latent",
    }

    def nudge(pipe_, i, t, callback_kwargs):
        return {"latents": callback_kwargs["latents"] + 1e-3}

    _ltx2_refused(
        pipe,
        {**call, "callback_on_step_end": nudge},
        "do not hold the clean image latent",
        strength_zero=False,
    )


def _vace_video(image, kept=(0,), partial=(), frames=9, grey=(128, 128, 128)):
    """A VACE conditioning video (the image on the kept frames, grey elsewhere) and its mask."""
    from PIL import Image

    video = [image if f in kept else Image.new("RGB", (32, 32), grey) for f in range(frames)]
    half = Image.new("L", (32, 32), 255)
    half.paste(0, (0, 0, 16, 32))
    mask = [
        half if f in partial else Image.new("L", (32, 32), 0 if f in kept else 255) for f in range(frames)
    ]
    return {"video": video, "mask": mask}


VACE_REFUSALS = {
    "reference image": (
        lambda img: {**_vace_video(img), "reference_images": [img]},
        r"reference_images: 1 reference image\(s\)",
    ),
    "first and last frame": (
        lambda img: _vace_video(img, kept=(0, 8)),
        r"mask: of 9 frames the mask keeps frames \[0, 8\] \(2 frames\) and partly keeps frames \[\] \(0 frames\)",
    ),
    "kept frame away from 0": (lambda img: _vace_video(img, kept=(4,)), r"keeps frames \[4\] \(1 frames\)"),
    "partial mask": (lambda img: _vace_video(img, partial=(0,)), r"partly keeps frames \[0\] \(1 frames\)"),
    "no mask": (lambda img: {"video": _vace_video(img)["video"]}, "the mask keeps no frame"),
    "text to video": (lambda img: {}, "the mask keeps no frame"),
}


@pytest.mark.parametrize("case", list(VACE_REFUSALS))
def test_wan_vace_refuses_what_it_cannot_guide_exactly(case, image):
    pipe, kwargs = pipeline("wan-vace")
    arguments, message = VACE_REFUSALS[case]
    call = {**kwargs, **arguments(image), "num_inference_steps": 2, "output_type": "latent"}
    run = lambda: pipe(**call, generator=torch.Generator().manual_seed(0)).frames  # noqa: E731
    assert_refused_and_restored(
        pipe, run, f"wan-vace: .*{message}.*without reference_images", spaces=("latent", "pixel")
    )


def test_wan_vace_guides_a_hand_made_video_and_mask_as_image_arguments(image):
    # The documented video=/mask= (diffusers' own VACE example) is the call image_arguments builds;
    # a control video on the generated frames reaches the reactive latent unfiltered.
    pipe, kwargs = pipeline("wan-vace")
    with gk.guide(pipe, window()) as run:
        got = run_pipe(pipe, kwargs, image, STEPS)
        hand = pipe(
            **kwargs,
            **_vace_video(image),
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        ).frames
        control = pipe(
            **kwargs,
            **_vace_video(image, grey=(30, 200, 90)),
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        ).frames
    assert torch.equal(got, hand)
    assert not torch.equal(got, control) and [c.filtered_steps for c in run.calls] == [[0, 1, 2]] * 3


def test_wan_vace_image_arguments_follow_the_call_size(image):
    backend = gk.controller.find_backend(pipeline("wan-vace")[0])
    pipe = pipeline("wan-vace")[0]
    args = gk.controller.image_arguments(pipe, image, {"num_frames": 10, "height": 48, "width": 64})
    assert len(args["video"]) == len(args["mask"]) == 9  # rounded as the pipeline rounds num_frames
    assert args["video"][0].size == (64, 48) and args["mask"][0].getextrema() == (0, 0)
    assert all(m.getextrema() == (255, 255) for m in args["mask"][1:])
    default = backend.image_arguments(pipe, image)  # the pipeline's defaults: 81 frames of 832 x 480
    assert len(default["video"]) == 81 and default["video"][0].size == (832, 480)


@pytest.mark.parametrize("family", VACE)
def test_wan_vace_pixel_space_encodes_the_video_once_per_distinct_strength(family, image):
    # prepare_video_latents encodes two latents (inactive, reactive) each time it runs.
    pipe, kwargs = pipeline(family)
    with gk.guide(pipe, window(end=0.4, space="pixel")) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    assert run.calls[0].vae_encodes == 4
    assert [r.vae_encodes for r in run.calls[0].steps] == [2, 0, 0, 0, 0, 0]
    linear = gk.Recipe(
        filter=gk.filters.DownUp(0.5), schedule=gk.schedules.Linear(1.0, 0.0, end=0.5), space="pixel"
    )
    with gk.guide(pipe, linear) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    strengths = {r.strength for r in run.calls[0].steps if r.strength > 0}
    assert len(strengths) == 3 and run.calls[0].vae_encodes == 2 + 2 * len(strengths)


def test_wan_animate_pixel_space_encodes_the_reference_once_per_distinct_strength(image):
    pipe, kwargs = pipeline("wan-animate")
    with gk.guide(pipe, window(end=0.4, space="pixel")) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    # Segment 1: the pipeline's reference, pose and previous-frame encodes, plus one of the filtered
    # reference at step 0; segment 2: pose and previous frames, its filtered reference from the cache.
    assert [c.vae_encodes for c in run.calls] == [4, 2]
    assert [r.vae_encodes for r in run.calls[0].steps] == [1, 0, 0, 0, 0, 0]
    assert [c.filtered_steps for c in run.calls] == [[0, 1, 2], [0, 1, 2]]


def test_wan_animate_keeps_the_blanked_face_and_filters_only_the_reference(image):
    # Conditional calls see the face video, unconditional ones (U(I) and U(LP I)) the blanked face;
    # only channels [-z:] of latent frame 0 change between the original and the low-passed image.
    pipe, kwargs = pipeline("wan-animate")
    seen = []
    original = pipe.transformer.forward

    def spy(*args, **kw):
        seen.append((kw["hidden_states"].clone(), kw["face_pixel_values"].clone()))
        return original(*args, **kw)

    pipe.transformer.forward = spy
    try:
        with gk.guide(pipe, window(end=0.0), execution="sequential"):
            run_pipe(pipe, kwargs, image, 2)
    finally:
        del pipe.transformer.forward
    # step 0 of segment 1: C(LP I), U(I), U(LP I); step 1: C(I), U(I)
    (c_lp, c_face), (u, u_face), (u_lp, u_lp_face), (c1, _), _ = seen[:5]
    assert torch.equal(u_face, u_lp_face) and bool((u_face == -1).all()) and not bool((c_face == -1).all())
    diff = (u - u_lp).abs().sum(dim=(0, 3, 4))  # [channels, frames]
    assert diff[-16:, 0].gt(0).all() and diff[:-16].eq(0).all() and diff[:, 1:].eq(0).all()
    assert torch.equal(c_lp[:, -16:, :1], u_lp[:, -16:, :1]) and torch.equal(c_lp[:, :, 1:], u[:, :, 1:])
    assert len(seen) == 2 * 5  # two segments of 3 + 2 calls


def test_wan_animate_image_arguments_build_driving_videos_of_the_call_size(image):
    pipe, kwargs = pipeline("wan-animate")
    call = {k: v for k, v in kwargs.items() if k not in ("pose_video", "face_video")}
    call.update(height=48, width=32, segment_frame_length=9)
    built = gk.controller.image_arguments(pipe, image, call)
    assert built["image"] is image
    assert len(built["pose_video"]) == 9 and built["pose_video"][0].size == (32, 48)
    assert len(built["face_video"]) == 9 and built["face_video"][0].size == (16, 16)
    # Driving videos the call gives are left to it; a guided call with the built ones runs.
    assert set(gk.controller.image_arguments(pipe, image, kwargs)) == {"image"}
    call.update(height=32, segment_frame_length=5)
    with gk.guide(pipe, window()) as run:
        run_pipe(pipe, call, image, 2)
    assert [c.passes for c in run.calls] == [2 * 2 + 1]


def test_wan_animate_refuses_a_hidden_state_of_another_layout(image):
    pipe, _ = pipeline("wan-animate")
    backend = gk.controller.find_backend(pipe)
    with pytest.raises(gk.GuidanceKitError, match=r"wan-animate: hidden_states of shape \(1, 16, 3, 4, 4\)"):
        backend.get_condition(pipe, {"hidden_states": torch.zeros(1, 16, 3, 4, 4)})


def test_kandinsky6_refuses_text_to_video_and_leaves_the_pipeline_as_it_was():
    # Without image= there is no tail frame holding an image latent: nothing to low-pass exactly.
    pipe, kwargs = pipeline("kandinsky6")

    def call():
        out = pipe(
            **kwargs, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent"
        )
        return out.frames, out.audio

    assert_refused_and_restored(  # the pipeline runs it plain (text-to-video-and-audio)
        pipe,
        call,
        r"kandinsky6: .*image=None.*supported: image-to-video",
        spaces=("latent", "pixel"),
        extra=lambda: pipe.encode_image.__func__,
    )
