"""guide() inside the stacks people run: diffusers caches, offloading, hooks added or removed
inside the block, torch.compile, pipelines sharing components, threads, deep-copied schedulers."""

import copy
import threading

import attrs
import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig

import guidance_kit as gk
from guidance_kit.tiny import cache_configs, tiny_pipeline

from conftest import pipeline, run_pipe

STEPS = 6
FAMILIES = ["wan2.1", "cogvideox"]
RECIPE = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=gk.schedules.StepSwitch(0.0, 0.4))


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def hooks_of(module):
    return (list(module._forward_pre_hooks), list(module._forward_hooks))


@pytest.fixture(scope="module")
def results():
    """Plain and ALG outputs per family (float64, no cache), computed once."""
    out = {}
    for family in FAMILIES:
        pipe, kwargs = pipeline(family)
        plain = run_pipe(pipe, kwargs, _image(), STEPS)
        with gk.guide(pipe, RECIPE):
            alg = run_pipe(pipe, kwargs, _image(), STEPS)
        out[family] = plain, alg
    return out


def _image():
    from guidance_kit.tiny import tiny_image

    return tiny_image(32, seed=0)


# Caches ------------------------------------------------------------------------------------------

# Skipping caches approximate; a non-skipping one must leave ALG exact.
PER_CONTEXT = ["first-block-exact", "first-block", "mag", "taylorseer"]


@pytest.mark.parametrize("execution", ["batched", "sequential"])
@pytest.mark.parametrize("cache", PER_CONTEXT)
@pytest.mark.parametrize("family", FAMILIES)
def test_alg_under_a_cache(family, cache, execution, image, results):
    pipe, kwargs = pipeline(family)
    plain, alg = results[family]
    config, skips = cache_configs(pipe, STEPS)[cache]
    pipe.transformer.enable_cache(config)
    try:
        cached = run_pipe(pipe, kwargs, image, STEPS)
        with gk.guide(pipe, RECIPE, execution=execution) as run:
            both = run_pipe(pipe, kwargs, image, STEPS)
        # The extra pass runs as a call of its own, in its own cache context.
        assert (
            sum(r.calls for r in run.trace)
            == (3 if family == "wan2.1" else 2) * 3 + (2 if family == "wan2.1" else 1) * 3
        )
        assert run.last.passes == 2 * STEPS + 3
        assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), cached), (
            "the cache works as before after guide()"
        )
    finally:
        pipe.transformer.disable_cache()
    error = rel(cached, plain)
    if skips:
        assert error > 0, "this cache configuration must skip work, or the comparison proves nothing"
        assert rel(both, alg) < 10 * error  # of the order of the cache's own error (measured <= 3.6x)
    else:
        assert rel(both, alg) <= 1e-6


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_serves_each_pass_its_own_state(family, image, results):
    # A FirstBlockCache that reuses everything it can, sharing one context between the passes,
    # would hand U(I)'s residual to U(LP I): ALG would change nothing at its filtered steps.
    pipe, kwargs = pipeline(family)
    plain, alg = results[family]
    pipe.transformer.enable_cache(cache_configs(pipe, STEPS)["first-block"][0])
    try:
        cached = run_pipe(pipe, kwargs, image, STEPS)
        with gk.guide(pipe, RECIPE, execution="sequential"):
            both = run_pipe(pipe, kwargs, image, STEPS)
    finally:
        pipe.transformer.disable_cache()
    assert rel(both, cached) > 0.5 * rel(alg, plain)


@pytest.mark.parametrize("cache", ["pyramid-attention", "faster-cache"])
def test_single_state_caches_are_refused_by_name(cache, image):
    pipe, kwargs = pipeline("cogvideox")
    pipe.transformer.enable_cache(cache_configs(pipe, STEPS)[cache][0])
    try:
        cached_before = run_pipe(pipe, kwargs, image, STEPS)
        with pytest.raises(
            gk.GuidanceKitError, match="(PyramidAttentionBroadcast|FasterCache).*keeps one state"
        ):
            with gk.guide(pipe, RECIPE):
                pass
        # Enabled inside the block: refused at the first filtered step; the pipeline is not poisoned.
        pipe.transformer.disable_cache()
        with pytest.raises(gk.GuidanceKitError, match="keeps one state"):
            with gk.guide(pipe, RECIPE):
                pipe.transformer.enable_cache(cache_configs(pipe, STEPS)[cache][0])
                run_pipe(pipe, kwargs, image, STEPS)
        assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), cached_before)
        # Modes without extra passes work under them.
        with gk.guide(pipe, attrs.evolve(RECIPE, mode="cond_only")) as run:
            run_pipe(pipe, kwargs, image, STEPS)
        assert run.last.passes == 2 * STEPS
    finally:
        pipe.transformer.disable_cache()


def test_cache_enabled_inside_the_block_stays_after_it(image, results):
    pipe, kwargs = pipeline("wan2.1")
    before = hooks_of(pipe.transformer)
    try:
        with gk.guide(pipe, RECIPE) as run:
            pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.0))
            both = run_pipe(pipe, kwargs, image, STEPS)
        assert rel(both, results["wan2.1"][1]) <= 1e-6 and run.last.passes == 2 * STEPS + 3
        assert pipe.transformer.is_cache_enabled and hooks_of(pipe.transformer) == before
        with gk.guide(pipe, RECIPE):  # and removed inside the block
            pipe.transformer.disable_cache()
            again = run_pipe(pipe, kwargs, image, STEPS)
        assert torch.equal(again, both) or rel(again, both) <= 1e-6
        assert not pipe.transformer.is_cache_enabled
    finally:
        if pipe.transformer.is_cache_enabled:
            pipe.transformer.disable_cache()


def test_failed_call_leaves_no_cache_state_behind(image):
    pipe, kwargs = pipeline("wan2.1")
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.05))
    try:
        cached = run_pipe(pipe, kwargs, image, STEPS)

        def boom(pipe_, i, t, callback_kwargs):
            if i == 1:
                raise RuntimeError("boom")
            return callback_kwargs

        with pytest.raises(RuntimeError, match="boom"):
            with gk.guide(pipe, RECIPE):
                run_pipe(pipe, kwargs, image, STEPS, callback_on_step_end=boom)
        assert torch.equal(run_pipe(pipe, kwargs, image, STEPS), cached)
    finally:
        pipe.transformer.disable_cache()


# Offloading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_model_cpu_offload_guides_every_call(family, image, results):
    pipe, kwargs = tiny_pipeline(family, torch.float64)
    pipe.enable_model_cpu_offload(device="cpu")
    _, alg = results[family]
    with gk.guide(pipe, RECIPE) as run:
        first = run_pipe(pipe, kwargs, image, STEPS)
        second = run_pipe(pipe, kwargs, image, STEPS)
    assert [c.passes for c in run.calls] == [2 * STEPS + 3] * 2
    assert rel(first, alg) <= 1e-12 and torch.equal(first, second)
    assert hooks_of(pipe.transformer) == ([], []) and hasattr(pipe.transformer, "_hf_hook")


def test_group_offload(image, results):
    _, alg = results["wan2.1"]
    pipe, kwargs = tiny_pipeline("wan2.1", torch.float64)
    pipe.transformer.enable_group_offload(
        torch.device("cpu"),
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
    )
    with gk.guide(pipe, RECIPE) as run:
        grouped = run_pipe(pipe, kwargs, image, STEPS)
    assert run.last.passes == 2 * STEPS + 3 and rel(grouped, alg) <= 1e-12
    assert pipe.transformer._diffusers_hook.get_hook("group_offloading") is not None


def test_offload_enabled_inside_the_block(image, results):
    _, alg = results["cogvideox"]
    pipe, kwargs = tiny_pipeline("cogvideox", torch.float64)
    with gk.guide(pipe, RECIPE) as run:
        pipe.enable_model_cpu_offload(device="cpu")
        calls = [run_pipe(pipe, kwargs, image, STEPS) for _ in range(2)]
    assert [c.passes for c in run.calls] == [2 * STEPS + 3] * 2
    assert all(rel(c, alg) <= 1e-12 for c in calls)
    assert hasattr(pipe.transformer, "_hf_hook") and hooks_of(pipe.transformer) == ([], [])


# Components shared between pipelines, threads, copies --------------------------------------------


def test_from_pipe_siblings_are_guided_one_at_a_time(image):
    pipe, kwargs = tiny_pipeline("cogvideox", torch.float64)
    sibling = type(pipe).from_pipe(pipe, torch_dtype=torch.float64)
    with gk.guide(pipe, RECIPE):
        with pytest.raises(
            gk.GuidanceKitError, match=r"CogVideoXImageToVideoPipeline\.transformer .*already guided"
        ):
            with gk.guide(sibling, RECIPE):
                pass
        first = run_pipe(pipe, kwargs, image, STEPS)
    with gk.guide(sibling, RECIPE) as run:  # the first block released every component
        second = run_pipe(sibling, kwargs, image, STEPS)
    assert torch.equal(first, second) and run.last.passes == 2 * STEPS + 3


def test_second_thread_is_refused_and_first_call_is_unharmed(image, results):
    pipe, kwargs = pipeline("wan2.1")
    _, alg = results["wan2.1"]
    inside, release = threading.Event(), threading.Event()
    errors = []

    def pause(pipe_, i, t, callback_kwargs):
        if i == 1:
            inside.set()
            release.wait(30)
        return callback_kwargs

    def other():
        inside.wait(30)
        try:
            run_pipe(pipe, kwargs, image, STEPS)
        except gk.GuidanceKitError as exc:
            errors.append(str(exc))
        finally:
            release.set()

    thread = threading.Thread(target=other)
    thread.start()
    with gk.guide(pipe, RECIPE):
        got = run_pipe(pipe, kwargs, image, STEPS, callback_on_step_end=pause)
    thread.join()
    assert len(errors) == 1 and "second thread" in errors[0]
    assert torch.equal(got, alg)


def test_deep_copied_scheduler_steps_itself_and_not_the_clock(image):
    pipe, kwargs = pipeline("wan2.1")
    copies = []

    def copy_scheduler(pipe_, i, t, callback_kwargs):
        if i == 0:
            twin = copy.deepcopy(pipe_.scheduler)
            twin.set_timesteps(3)
            twin.step(
                torch.zeros(1, 4, 2, 4, 4, dtype=torch.float64),
                twin.timesteps[0],
                torch.zeros(1, 4, 2, 4, 4, dtype=torch.float64),
            )
            copies.append(twin)
        return callback_kwargs

    with gk.guide(pipe, RECIPE) as run:
        run_pipe(pipe, kwargs, image, STEPS, callback_on_step_end=copy_scheduler)
    assert [r.step for r in run.trace] == list(range(STEPS)) and len(run.calls) == 1
    twin = copies[0]
    assert "step" not in vars(twin) or vars(twin)["step"].__self__ is twin
    assert twin.step_index == 1 and len(twin.timesteps) == 3


def test_step_clock_exposes_timestep_and_noise_level(image):
    pipe, kwargs = pipeline("wan2.1")
    with gk.guide(pipe, RECIPE) as run:
        run_pipe(pipe, kwargs, image, STEPS)
    levels = [r.noise_level for r in run.trace]
    assert levels == sorted(levels, reverse=True) and 0 < levels[-1] < levels[0] <= 1
    sigmas = pipe.scheduler.sigmas[:STEPS].tolist()
    assert [r.sigma for r in run.trace] == pytest.approx(sigmas)
    assert [r.timestep for r in run.trace] == pytest.approx(pipe.scheduler.timesteps.tolist())
    # DDIM-style schedulers: sqrt(1 - alpha_bar_t).
    cog, cog_kwargs = pipeline("cogvideox")
    with gk.guide(cog, RECIPE) as run:
        run_pipe(cog, cog_kwargs, image, STEPS)
    expected = [float((1 - cog.scheduler.alphas_cumprod[int(t)]) ** 0.5) for t in cog.scheduler.timesteps]
    assert [r.noise_level for r in run.trace] == pytest.approx(expected)


# torch.compile -----------------------------------------------------------------------------------


def _compiled(how, module, counter):
    if how == "module.compile":
        module.compile(backend=counter)
        return module
    if how == "torch.compile":
        return torch.compile(module, backend=counter)
    module.compile_repeated_blocks(backend=counter)
    return module


@pytest.mark.parametrize("how", ["module.compile", "torch.compile", "compile_repeated_blocks"])
def test_compile_matches_eager_with_one_graph_per_layout(how, image, recwarn):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    pipe, kwargs = tiny_pipeline("wan2.1", torch.float32)
    with gk.guide(pipe, RECIPE):
        eager = run_pipe(pipe, kwargs, image, 4)
    counter = CompileCounter()
    pipe.transformer = _compiled(how, pipe.transformer, counter)
    plain = run_pipe(pipe, kwargs, image, 4)
    graphs = [counter.frame_count]
    calls = []
    with gk.guide(pipe, RECIPE) as run:
        for _ in range(3):
            calls.append(run_pipe(pipe, kwargs, image, 4))
            graphs.append(counter.frame_count)
    assert torch.equal(run_pipe(pipe, kwargs, image, 4), plain)
    graphs.append(counter.frame_count)
    assert run.last.filtered_steps == [0, 1]
    assert all(torch.allclose(c, eager, rtol=1e-5, atol=1e-6) for c in calls)
    # Filtered steps run the unconditional call on 2 rows instead of 1: one more graph per
    # compiled frame for that layout, none per step or per call, none for plain calls after.
    per_layout = graphs[0] if how == "compile_repeated_blocks" else 1
    assert graphs[1] <= graphs[0] + per_layout and graphs[1:] == [graphs[1]] * 4, graphs
    assert not any(
        "recompile_limit" in str(w.message) or "cache_size_limit" in str(w.message) for w in recwarn
    )
    torch._dynamo.reset()


# Modes and corrections as extension points ----------------------------------------------------


class HalfALG(gk.GuidanceMode):
    """A plugin formula: half of ALG's correction, c = C(LP I) + (U(I) - U(LP I)) / 2."""

    name = "half_alg"
    description = "test plugin"

    def predictions(self, cfg):
        from guidance_kit.types import C_LP, U_I, U_LP

        return (U_I, U_LP, C_LP) if cfg else (C_LP,)

    def forward(self, preds, cfg):
        from guidance_kit.types import C_LP, U_I, U_LP

        if not cfg:
            return {"cond": preds[C_LP]}
        return {"uncond": preds[U_I], "cond": preds[C_LP] + 0.5 * (preds[U_I] - preds[U_LP])}


class _ModePlugin:
    @gk.hookimpl
    def register_modes(self):
        return [HalfALG()]


@pytest.mark.parametrize("family", FAMILIES)
def test_plugin_mode_defines_a_new_formula(family, image):
    # One step: the output latent is affine in the prediction, so half ALG's correction lands
    # exactly halfway between cond_only (no correction) and ALG.
    pipe, kwargs = pipeline(family)
    name = gk.register_plugin(_ModePlugin(), name="half-alg-test")
    try:
        outs = {}
        for mode in ("alg", "cond_only", "half_alg"):
            with gk.guide(pipe, attrs.evolve(RECIPE, mode=mode, schedule=gk.schedules.Constant(1.0))) as run:
                outs[mode] = run_pipe(pipe, kwargs, image, 1)
            assert run.last.passes == (3 if mode != "cond_only" else 2)
    finally:
        gk.unregister_plugin(name)
    halfway = (outs["alg"] + outs["cond_only"]) / 2
    # (CogVideoX casts predictions to float32 inside the pipeline.)
    assert (
        rel(outs["half_alg"], halfway) < (1e-6 if family == "cogvideox" else 1e-9)
        and rel(outs["alg"], outs["cond_only"]) > 1e-6
    )


def test_correction_on_the_unconditional_side_matches_in_place(image, results):
    # For pipelines that copy the conditional prediction before the unconditional call.
    from guidance_kit.plugins.backends.wan import Wan21Backend

    class CopyingWan(Wan21Backend):
        name = "wan2.1-uncond-affine-test"
        correction = "uncond_affine"

        def guidance_weight(self, pipe, denoiser):
            return pipe.guidance_scale

    class Plugin:
        @gk.hookimpl
        def register_backends(self):
            return [CopyingWan()]

    pipe, kwargs = pipeline("wan2.1")
    name = gk.register_plugin(Plugin(), name="uncond-affine-test")
    try:
        with gk.guide(pipe, RECIPE, backend="wan2.1-uncond-affine-test") as run:
            got = run_pipe(pipe, kwargs, image, STEPS)
        assert run.last.passes == 2 * STEPS + 3
        assert rel(got, results["wan2.1"][1]) < 1e-10
        with pytest.raises(gk.GuidanceKitError, match="guidance scale 1 leaves no unconditional term"):
            with gk.guide(pipe, RECIPE, backend="wan2.1-uncond-affine-test"):
                CopyingWan.guidance_weight = lambda self, pipe, denoiser: 1.0
                run_pipe(pipe, kwargs, image, STEPS)
    finally:
        gk.unregister_plugin(name)


def test_every_batch_shaped_output_is_folded(image, results):
    # A denoiser that returns two batch-shaped outputs (as LTX-2's video and audio): a hook
    # installed before guide() makes the second output twice the first; guide() must fold both,
    # so twice the folded first output is the folded second, and the pipeline's result is ALG's.
    pipe, kwargs = pipeline("wan2.1")
    seen = []
    two = pipe.transformer.register_forward_hook(lambda m, a, out: (out[0], 2 * out[0]))
    try:
        with gk.guide(pipe, RECIPE) as run:
            spy = pipe.transformer.register_forward_hook(lambda m, a, out: seen.append(out))
            got = run_pipe(pipe, kwargs, image, STEPS)
            spy.remove()
    finally:
        two.remove()
    assert run.last.passes == 2 * STEPS + 3 and rel(got, results["wan2.1"][1]) <= 1e-12
    assert len(seen) == 2 * STEPS and all(torch.equal(2 * first, second) for first, second in seen)


def test_lora_adapters_compose_with_guide(image, results):
    from peft import LoraConfig

    _, alg = results["wan2.1"]
    pipe, kwargs = tiny_pipeline("wan2.1", torch.float64)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    pipe.transformer.add_adapter(config, adapter_name="motion")
    with gk.guide(pipe, RECIPE) as run:
        with_lora = run_pipe(pipe, kwargs, image, STEPS)
        pipe.transformer.set_adapters("motion", weights=0.0)  # toggled inside the block
        scaled_off = run_pipe(pipe, kwargs, image, STEPS)
        pipe.transformer.set_adapters("motion", weights=1.0)
    assert [c.passes for c in run.calls] == [2 * STEPS + 3] * 2
    assert rel(with_lora, alg) > 1e-3 and rel(scaled_off, alg) <= 1e-12
    pipe.transformer.fuse_lora(lora_scale=1.0)
    with gk.guide(pipe, RECIPE):
        fused = run_pipe(pipe, kwargs, image, STEPS)
    assert rel(fused, with_lora) <= 1e-10
