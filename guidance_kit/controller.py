"""``guide(pipe, recipe)``: apply a recipe to a stock diffusers pipeline without copying it.

How it attaches (all undone on exit, also after an exception):

* each denoiser module gets a torch forward pre-hook and forward hook (``register_forward_pre_hook``
  / ``register_forward_hook``). They sit outside ``module.forward``, so they compose with
  whatever replaces ``forward`` (diffusers ``HookRegistry`` caches and group offloading,
  accelerate's offload hooks) in any order, survive ``maybe_free_model_hooks`` re-installing
  accelerate's hooks, and are removed through their own handles without cutting anyone out;
* a :class:`~guidance_kit.clock.StepClock` taps ``scheduler.set_timesteps`` and ``scheduler.step``
  to know step i of N (deep copies of the scheduler get their own methods back);
* ``vae.encode`` is wrapped to count encodes; in pixel space the pipeline's own image-encoding
  method (``backend.pixel_method``) is wrapped to record its inputs, so a filtered image can be
  encoded through the very same path, once per distinct strength;
* the backend's own method wrappers (``backend.wraps``) are installed last.

On a step with s == 0 the denoiser is called with the pipeline's own arguments: bit-identical
to the plain pipeline. On a filtered step the controller executes the guidance mode's pass plan:
the pipeline's own call computes one prediction per CFG branch it holds (the original image
where the mode needs it, else the filtered one); the mode's other predictions run as extra
passes, merged into the same call (``execution="batched"``) or as calls of their own, each in a
cache context of its own (``execution="sequential"``, and always when the denoiser carries a
stateful diffusers hook such as a cache, whose per-context state must keep its rows). The mode's
``forward`` folds the predictions into the pair (u, c) the pipeline combines as u + w * (c - u),
so whatever scale the pipeline applies (per step, per frame, per expert) ALG gives
U(I) + w * (C(LP I) - U(LP I)).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import attrs
import torch

from guidance_kit import registry
from guidance_kit.backend import Backend
from guidance_kit.clock import StepClock, StepState
from guidance_kit.errors import GuidanceKitError, InvalidParameterError, UnsupportedPipelineError
from guidance_kit.recipe import Recipe
from guidance_kit.types import C_I, U_I, Branch, GuidanceMode, Prediction, check_strength

EXECUTIONS = ("batched", "sequential")

# Components held by a live guide() block, by id: two blocks sharing a denoiser or a scheduler
# (``from_pipe`` siblings) would install two sets of hooks on one module.
_claims: dict[int, tuple[str, Any]] = {}
_claims_lock = threading.Lock()
# Set while a controller runs an extra pass, so its own hooks let that call through.
_local = threading.local()


@attrs.define
class StepRecord:
    """What happened at one denoising step."""

    step: int
    num_steps: int
    progress: float
    strength: float
    filter: dict[str, Any]
    timestep: float | None = None
    sigma: float | None = None
    noise_level: float | None = None  # normalised to [0, 1] across schedulers (see guidance_kit.clock)
    guidance: float | None = None  # the recipe's guidance-scale schedule g at this step, if it has one
    passes: int = 0  # denoiser passes, counted per CFG branch (a batched uncond+cond call is 2)
    calls: int = 0  # denoiser module calls
    vae_encodes: int = 0
    denoiser: str = ""
    cfg: bool | None = None
    filtered: bool = False  # strength > 0 and the filter is not the identity there

    @classmethod
    def at(
        cls, state: StepState, recipe: Recipe, strength: float, guidance: float | None, **more: Any
    ) -> StepRecord:
        """The record of the step ``state`` describes, where ``recipe`` has ``strength`` (and the
        guidance-scale schedule ``guidance``)."""
        return cls(
            step=state.step,
            num_steps=state.num_steps,
            progress=state.progress,
            strength=strength,
            filter=recipe.filter.effective(strength),
            timestep=state.timestep,
            sigma=state.sigma,
            noise_level=state.noise_level,
            guidance=guidance,
            **more,
        )

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class CallTrace:
    """The trace of one pipeline call."""

    steps: list[StepRecord] = attrs.Factory(list)
    setup_vae_encodes: int = 0  # encodes outside the denoising loop (the pipeline's own)

    @property
    def passes(self) -> int:
        return sum(r.passes for r in self.steps)

    @property
    def vae_encodes(self) -> int:
        return self.setup_vae_encodes + sum(r.vae_encodes for r in self.steps)

    @property
    def filtered_steps(self) -> list[int]:
        return [r.step for r in self.steps if r.filtered]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "vae_encodes": self.vae_encodes,
            "setup_vae_encodes": self.setup_vae_encodes,
            "filtered_steps": self.filtered_steps,
            "steps": [r.to_dict() for r in self.steps],
        }


class CallTraces:
    """The traces of the pipeline calls made inside one guide() block (``calls``); ``trace`` is
    the latest call's steps. Subclasses say what else ``to_dict`` holds."""

    def __init__(self) -> None:
        self.calls: list[CallTrace] = []

    @property
    def trace(self) -> list[StepRecord]:
        return self.calls[-1].steps if self.calls else []

    @property
    def last(self) -> CallTrace:
        if not self.calls:
            raise GuidanceKitError("no pipeline call has run inside this guide() block yet")
        return self.calls[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"calls": [c.to_dict() for c in self.calls]}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


class Run(CallTraces):
    """Handle returned by :func:`guide`; ``run.trace`` is the latest pipeline call's trace."""

    def __init__(self, pipe: Any, recipe: Recipe, backend: Backend, mode: GuidanceMode, execution: str):
        super().__init__()
        self.pipe, self.recipe, self.backend, self.mode = pipe, recipe, backend, mode
        self.execution = execution

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "recipe": self.recipe.to_dict(),
            "execution": self.execution,
            **super().to_dict(),
        }


def find_backend(pipe: Any, name: str | None = None) -> Backend:
    """The registered backend for ``pipe`` (or the one called ``name``)."""
    backends: dict[str, Backend] = registry.tables()["backend"]
    if name is not None:
        backend = registry.lookup("backend", name)
        if not backend.matches(pipe):
            raise UnsupportedPipelineError(
                f"backend {name!r} does not support {type(pipe).__name__}; it supports {list(backend.pipelines)}"
            )
        return backend
    for backend in backends.values():
        if backend.matches(pipe):
            return backend
    supported = "; ".join(b.describe() for b in backends.values())
    raise UnsupportedPipelineError(
        f"no guidance_kit backend supports {type(pipe).__name__}. Supported: {supported}. "
        "A plugin can add one through the register_backends hook."
    )


def image_arguments(pipe: Any, image: Any, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The call arguments that pass ``image`` as ``pipe``'s conditioning image (``image=`` for a
    pipeline no backend supports). ``call`` holds the call's other arguments (Wan VACE builds a
    video of the call's size from the image)."""
    try:
        backend = find_backend(pipe)
    except UnsupportedPipelineError:
        return {"image": image}
    return backend.image_arguments(pipe, image, call)


def resolve_recipe(recipe: Recipe | str | Mapping[str, Any], backend: Backend) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        from guidance_kit import recipes

        return recipes.get(recipe, backend=backend.name)
    if isinstance(recipe, Mapping):
        return Recipe.from_dict(recipe)
    raise InvalidParameterError(
        f"recipe must be a Recipe, a registered recipe name or a mapping, got {recipe!r}"
    )


@contextmanager
def guide(
    pipe: Any,
    recipe: Recipe | str | Mapping[str, Any] = "alg",
    *,
    backend: str | None = None,
    execution: Literal["batched", "sequential"] = "batched",
) -> Iterator[Run]:
    """Apply ``recipe`` to every call of ``pipe`` inside the block.

    ``recipe``: a :class:`Recipe`, a registered recipe name (``"alg"`` picks the attached
    backend's released default) or a mapping. ``execution``: run ALG's extra pass in the same
    call as the pipeline's own (``"batched"``, fast) or as a call of its own in its own cache
    context (``"sequential"``, lower peak memory; chosen automatically for a denoiser that
    carries a stateful diffusers hook such as a cache). The pipeline is restored exactly on
    exit, also after an exception.

    A diffusers modular pipeline gets its CFG guiders swapped for low-pass guiders instead
    (:func:`guidance_kit.modular.guide`, which yields a ``ModularRun``).
    """
    if execution not in EXECUTIONS:
        raise InvalidParameterError(f"execution must be one of {list(EXECUTIONS)}, got {execution!r}")
    from guidance_kit import modular  # lazy: guidance_kit.modular imports this module

    if modular.is_modular(pipe):  # a guider swap, not hooks (every guider batch is a call of its own)
        with modular.guide(pipe, recipe, backend=backend) as modular_run:
            yield modular_run
        return
    chosen = find_backend(pipe, backend)
    recipe = resolve_recipe(recipe, chosen)
    mode = registry.lookup("mode", recipe.mode)
    run = Run(pipe, recipe, chosen, mode, execution)
    controller = _Controller(run)
    controller.attach()
    error: BaseException | None = None
    try:
        registry.call_observers("on_guide_enter")(run=run)
        yield run
    except BaseException as exc:
        error = exc
        raise
    finally:
        controller.detach(error)
        try:
            registry.call_observers("on_guide_exit")(run=run, error=error)
        except Exception as observer_error:
            if error is None:
                raise
            # The run's own exception is the one the caller must see.
            warnings.warn(
                f"an on_guide_exit observer raised {type(observer_error).__name__}: {observer_error} "
                f"while guide() was handling {type(error).__name__}",
                RuntimeWarning,
                stacklevel=3,
            )


# Denoiser outputs ---------------------------------------------------------------------------------


def _batch_outputs(output: Any, rows: int) -> list[Any]:
    """Keys of the tensors in a denoiser output (tuple or diffusers ``BaseOutput``) whose first
    axis is the batch: every one is sliced and folded (LTX-2 returns video and audio)."""
    items = enumerate(output) if isinstance(output, tuple) else output.items()
    return [k for k, v in items if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == rows]


def _replace_outputs(output: Any, new: Mapping[Any, torch.Tensor]) -> Any:
    if isinstance(output, tuple):
        return tuple(new.get(i, v) for i, v in enumerate(output))
    for key, value in new.items():
        output[key] = value
    return output


def _generators(value: Any) -> list[torch.Generator]:
    if isinstance(value, torch.Generator):
        return [value]
    if isinstance(value, list | tuple):
        return [g for g in value if isinstance(g, torch.Generator)]
    return []


# diffusers cache state ----------------------------------------------------------------------------


def _stateful_hooks(module: torch.nn.Module) -> list[tuple[str, Any]]:
    """``(name, hook)`` for every stateful diffusers hook on ``module`` and its submodules."""
    found = []
    for sub in module.modules():
        hooks = getattr(getattr(sub, "_diffusers_hook", None), "hooks", {})
        found += [(name, hook) for name, hook in hooks.items() if getattr(hook, "_is_stateful", False)]
    return found


def _cache_states(module: torch.nn.Module) -> bool:
    """Whether ``module`` carries stateful diffusers hooks; raises for those that cannot keep a
    state per pass.

    Hooks that keep their state in a ``StateManager`` (FirstBlockCache, MagCache, TaylorSeer)
    keep one state per cache context, so extra passes in contexts of their own are served
    correctly. Hooks with a single state (PyramidAttentionBroadcast, FasterCache) would serve
    one pass's cached activations to another (of other rows, or of the other image).
    """
    from diffusers.hooks.hooks import StateManager

    hooks = _stateful_hooks(module)
    for name, hook in hooks:
        if not any(isinstance(v, StateManager) for v in vars(hook).values()):
            raise GuidanceKitError(
                f"{type(hook).__name__} ({name!r}) on {type(module).__name__} keeps one state for every "
                "denoiser call, so the guidance mode's extra passes would be served another pass's cached "
                "activations; disable it inside guide() (transformer.disable_cache()) or use a cache with "
                "per-context state (FirstBlockCache, MagCache, TaylorSeerCache)"
            )
    return bool(hooks)


@contextmanager
def _own_cache_context(module: torch.nn.Module, label: str) -> Iterator[None]:
    """Run an extra pass in a cache context of its own, next to the one the pipeline set.

    A stateful hook keeps one state per context name; an extra pass sharing the pipeline's
    context would be served the other pass's cache (or change its rows). The denoiser's own
    ``cache_context`` clears the context on exit instead of restoring it, so this sets and
    restores every hook's ``StateManager`` directly.
    """
    from diffusers.hooks.hooks import StateManager

    managers = [
        value
        for _, hook in _stateful_hooks(module)
        for value in vars(hook).values()
        if isinstance(value, StateManager)
    ]
    previous = [m._context for m in managers]
    try:
        for manager, context in zip(managers, previous):
            if context is None:  # the pipeline set none: the hook raises its own clear error
                continue
            if isinstance(context, str):  # older diffusers name contexts by a string
                manager.set_context(f"{context}|gk:{label}")
            else:
                manager.set_context(dataclasses.replace(context, name=f"{context.name}|gk:{label}"))
        yield
    finally:
        for manager, context in zip(managers, previous):
            manager.set_context(context)


@contextmanager
def _extra_pass() -> Iterator[None]:
    _local.extra = True
    try:
        yield
    finally:
        _local.extra = False


class _Plain(GuidanceMode):
    """The pipeline's own predictions, for steps that only rescale the guidance."""

    name = "plain"

    def predictions(self, cfg: bool) -> tuple[Prediction, ...]:
        return (U_I, C_I) if cfg else (C_I,)

    def forward(self, preds: Mapping[Prediction, torch.Tensor], cfg: bool) -> dict[Branch, torch.Tensor]:
        return {"uncond": preds[U_I], "cond": preds[C_I]} if cfg else {"cond": preds[C_I]}


_PLAIN = _Plain()


@attrs.define
class _Call:
    """A guided denoiser call between its pre-hook and its hook."""

    mode: GuidanceMode
    scale: Any  # k in c' = u + k (c - u): what the guidance-scale schedule leaves of the pipeline's w
    branches: tuple[Branch, ...]
    cfg: bool
    per_branch: int
    arguments: dict[str, Any]
    positional: list[str]
    images: dict[str, torch.Tensor]
    batch: list[Prediction]  # the predictions the (possibly merged) call computes, in row order
    extras: list[Prediction]  # the predictions left to calls of their own
    aliases: dict[Prediction, Prediction]  # requested -> computed (an unconditional branch without image)

    def rows_of(self, branch: Branch) -> slice:
        k = self.branches.index(branch)
        return slice(k * self.per_branch, (k + 1) * self.per_branch)


@attrs.frozen
class _Shift:
    """An extra conditional pass (``Backend.extra_pass``) between its pre-hook and its hook: the
    shift the step's conditional prediction got, by output key, added to the pass's outputs."""

    label: str
    by_output: dict[Any, torch.Tensor]

    def apply(self, output: Any, backend: str) -> Any:
        rows = next(iter(self.by_output.values())).shape[0]
        keys = _batch_outputs(output, rows)
        if set(keys) != set(self.by_output):
            raise GuidanceKitError(
                f"backend {backend!r}: the extra conditional pass {self.label!r} returned batch outputs "
                f"{keys} of {rows} rows, the step's guidance call {sorted(self.by_output, key=str)}"
            )
        return _replace_outputs(output, {k: output[k] + s for k, s in self.by_output.items()})


class _Controller:
    def __init__(self, run: Run):
        self.run = run
        self.pipe, self.backend, self.recipe, self.mode = run.pipe, run.backend, run.recipe, run.mode
        self.clock = StepClock(
            self.pipe.scheduler,
            self.backend.step_calls_per_step,
            driver=self.backend.step_clock,
            loop_length=lambda n: self.backend.loop_length(self.pipe, n),
        )
        self.clock.on_begin = self._begin
        self.clock.on_step_end = self._end_step
        self._patches: list[tuple[Any, str, bool, Any]] = []
        self._handles: list[Any] = []
        self._claimed: list[int] = []
        self._latent_cache: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pixel_source: tuple[Callable[..., Any], dict[str, Any], list[torch.Tensor]] | None = None
        self._pixel_cache: dict[float, torch.Tensor] = {}
        self._pixel_taken = False  # backend.pixel_first_call: recorded since the last loop began
        self._extra_passes = self.backend.has_extra_passes()
        self._reset_step()
        self._cfg: bool | None = None

    def _reset_step(self) -> None:
        """Per-step state, reset in one place."""
        self._record: StepRecord | None = None
        self._calls_in_step = 0
        self._pending: dict[int, _Call | _Shift | None] = {}
        # Split backends: the conditional call's predictions and the tensors the pipeline holds.
        self._held: tuple[list[dict[Prediction, torch.Tensor]], list[torch.Tensor]] | None = None
        # Backends with extra conditional passes: the image of the conditional prediction the
        # pipeline holds and its shift from that image's prediction, by output key.
        self._extra_basis: tuple[str, dict[Any, torch.Tensor]] | None = None

    # Attaching ---------------------------------------------------------------------------------

    def _components(self) -> dict[str, Any]:
        found = dict(self.backend.denoisers(self.pipe))
        found.update(scheduler=self.pipe.scheduler, vae=getattr(self.pipe, "vae", None))
        return {name: c for name, c in found.items() if c is not None}

    def _claim(self) -> None:
        with _claims_lock:
            for name, component in self._components().items():
                holder = _claims.get(id(component))
                if holder is not None:
                    other_name, other = holder
                    if other.pipe is self.pipe:
                        raise GuidanceKitError(
                            f"{type(self.pipe).__name__} is already inside a guide() block; nesting is not supported"
                        )
                    raise GuidanceKitError(
                        f"{type(self.pipe).__name__}.{name} ({type(component).__name__}) is already guided by "
                        f"another guide() block (on {type(other.pipe).__name__}.{other_name}); pipelines that share "
                        "components (from_pipe) can be guided one at a time, and guide() blocks do not nest"
                    )
            for name, component in self._components().items():
                _claims[id(component)] = (name, self.run)
                self._claimed.append(id(component))

    def _patch(self, obj: Any, attr: str, new: Any) -> None:
        own = attr in vars(obj)
        self._patches.append((obj, attr, own, vars(obj).get(attr)))
        setattr(obj, attr, new)

    def attach(self) -> None:
        if self.recipe.guidance is not None and not self.backend.reads_guidance_weight():
            raise UnsupportedPipelineError(
                f"the recipe schedules the guidance scale, and backend {self.backend.name!r} cannot read the scale "
                f"{type(self.pipe).__name__} applies; drop the recipe's guidance schedule for this pipeline"
            )
        if self.recipe.space == "pixel" and self.backend.pixel_refusal is not None:
            raise UnsupportedPipelineError(
                f"backend {self.backend.name!r} cannot filter in pixel space (space='pixel'): "
                f"{self.backend.pixel_refusal}; use space='latent'"
            )
        self._claim()
        try:
            for attr, tap in self.clock.taps().items():
                self._patch(self.pipe.scheduler, attr, tap)
            vae = getattr(self.pipe, "vae", None)
            if vae is not None:
                self._patch(vae, "encode", self._wrap_encode(vae.encode))
            if self.recipe.space == "pixel":
                method = getattr(self.pipe, self.backend.pixel_method)
                self._patch(self.pipe, self.backend.pixel_method, self._wrap_pixel(method))
            # After the pixel wrapper: its replays call the method without the backend's wrapper.
            for attr, wrap in self.backend.wraps(self.pipe).items():
                self._patch(self.pipe, attr, wrap(getattr(self.pipe, attr)))
            _, extras, _ = self._plan(self.mode, ("uncond", "cond"), cfg=True)
            for name, module in self.backend.denoisers(self.pipe).items():
                if extras:  # refuse a cache that cannot serve extra passes before any compute
                    _cache_states(module)
                self._hook_denoiser(name, module)
        except BaseException:
            self.detach(None)
            raise

    def detach(self, error: BaseException | None) -> None:
        while self._handles:
            self._handles.pop().remove()
        while self._patches:
            obj, attr, own, old = self._patches.pop()
            if own:
                setattr(obj, attr, old)
            else:
                try:
                    delattr(obj, attr)
                except AttributeError:
                    pass
        if error is not None:
            # A call that died mid-loop leaves cache hooks holding its state (the pipeline resets
            # them only at the end of a call): the next call must start clean.
            for module in self.backend.denoisers(self.pipe).values():
                registry_ = getattr(module, "_diffusers_hook", None)
                if registry_ is not None:
                    registry_.reset_stateful_hooks()
        # A scheduler reset after a call's last loop (Wan-Animate resets it after every segment,
        # the last one too) began a trace that records nothing: no steps, no encodes. Drop it.
        calls = self.run.calls
        while calls and not calls[-1].steps and not calls[-1].setup_vae_encodes:
            calls.pop()
        self.clock.reset()
        self._reset_step()
        with _claims_lock:
            for key in self._claimed:
                _claims.pop(key, None)
            self._claimed.clear()

    def _hook_denoiser(self, name: str, module: torch.nn.Module) -> None:
        # Positional parameter names of the module's forward (without self), to read arguments
        # by name and to call back in the same positional/keyword style the pipeline used.
        inner = getattr(module, "_orig_mod", module)  # torch.compile's OptimizedModule
        params = [
            p.name
            for p in list(inspect.signature(type(inner).forward).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        # The hooks run eagerly under torch.compile: dynamo would otherwise guard on the
        # controller's per-step state and recompile every step.
        before = torch.compiler.disable(functools.partial(self._before_call, name, params))
        after = torch.compiler.disable(functools.partial(self._after_hook, name))
        self._handles.append(module.register_forward_pre_hook(before, with_kwargs=True, prepend=True))
        self._handles.append(module.register_forward_hook(after, with_kwargs=True))

    def _after_hook(self, name: str, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        result = self._after_call(name, module, args, kwargs, output)
        # A denoiser-driven clock: the step ends with its last CFG branch's call.
        if self.clock.driver == "denoiser" and not getattr(_local, "extra", False) and self.clock.active:
            branches = len(self.backend.split_order) if self.backend.call_style == "split" else 1
            if self._calls_in_step >= (branches if self.backend.cfg_active(self.pipe) else 1):
                self.clock.advance()
        return result

    # Steps -------------------------------------------------------------------------------------

    def _begin(self, num_steps: int) -> None:
        # A trace with no steps yet belongs to this call (encodes counted ahead of set_timesteps,
        # or set_timesteps called twice before the loop).
        if not self.run.calls or self.run.calls[-1].steps:
            self.run.calls.append(CallTrace())
        self._reset_step()
        self._cfg = None
        self._pixel_taken = False

    def _end_step(self) -> None:
        record = self._current_record()
        self._reset_step()
        registry.call_observers("on_step")(run=self.run, record=record)

    def _current_record(self) -> StepRecord:
        if self._record is None:
            state = self.clock.state()
            s = check_strength(self.recipe.schedule.strength(state))
            guidance = self.recipe.guidance
            g = None if guidance is None else check_strength(guidance.strength(state))
            self._record = StepRecord.at(state, self.recipe, s, g)
            self.run.calls[-1].steps.append(self._record)
        return self._record

    def _wrap_encode(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(inner)
        def encode(*args: Any, **kwargs: Any) -> Any:
            self.clock.check_thread("vae.encode")
            if self.clock.active and self._record is not None:
                self._record.vae_encodes += 1
            elif self.run.calls and not self.run.calls[-1].steps:
                self.run.calls[-1].setup_vae_encodes += 1
            else:  # encodes before set_timesteps (e.g. SVD): count them for the coming call
                self.run.calls.append(CallTrace(setup_vae_encodes=1))
            return inner(*args, **kwargs)

        return encode

    # Pixel space -------------------------------------------------------------------------------

    def _wrap_pixel(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(inner)

        @functools.wraps(inner)
        def encode_image(*args: Any, **kwargs: Any) -> Any:
            self.clock.check_thread(self.backend.pixel_method)
            if self.backend.pixel_first_call and self._pixel_taken:
                return inner(*args, **kwargs)  # a later image of the same call (an end keyframe)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            states = [g.get_state() for g in _generators(arguments.get("generator"))]
            out = inner(*args, **kwargs)
            self._pixel_source = (inner, arguments, states)
            self._pixel_cache = {}
            self._pixel_taken = True
            return out

        return encode_image

    def _pixel_condition(self, strength: float) -> torch.Tensor:
        if strength in self._pixel_cache:
            return self._pixel_cache[strength]
        if self._pixel_source is None:
            raise GuidanceKitError(
                f"pixel space: {type(self.pipe).__name__}.{self.backend.pixel_method} was not called before the "
                "denoising loop, so there is no preprocessed image to filter"
            )
        encode_image, arguments, states = self._pixel_source
        # The encode may write into its tensor arguments (Sana-Video's prepare_latents sets frame 0
        # of the latents it is given, which the pipeline is denoising): replay it on copies.
        arguments = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in arguments.items()}
        for name in self.backend.pixel_image_args:
            if arguments.get(name) is not None:
                arguments[name] = self.backend.filter_pixel_image(
                    self.pipe, arguments[name], arguments, lambda x: self.recipe.filter(x, strength)
                )
        generators = _generators(arguments.get("generator"))
        current = [g.get_state() for g in generators]
        # Replay the encode with the generator state it first saw: a sampled VAE posterior draws
        # the same noise for the filtered image, and the pipeline's random stream is untouched.
        for g, state in zip(generators, states):
            g.set_state(state)
        try:
            output = encode_image(**arguments)
        finally:
            for g, state in zip(generators, current):
                g.set_state(state)
        condition = self.backend.pixel_condition(self.pipe, output, arguments)
        self._pixel_cache[strength] = condition
        return condition

    def _filtered(self, condition: torch.Tensor, strength: float) -> torch.Tensor:
        """The image condition at ``strength``, with the rows and frames of ``condition``."""
        if self.recipe.space == "pixel":
            encoded = self._pixel_condition(strength).to(device=condition.device, dtype=condition.dtype)
            rows, enc_rows = condition.shape[0], encoded.shape[0]
            if enc_rows != rows:
                if rows % enc_rows:
                    raise GuidanceKitError(
                        f"pixel space: cannot match {enc_rows} encoded rows to {rows} denoiser rows"
                    )
                encoded = encoded.repeat(rows // enc_rows, *([1] * (encoded.ndim - 1)))
            encoded = self.backend.match_pixel_condition(self.pipe, encoded, condition)
            return encoded.expand_as(condition) if encoded.shape[2] == 1 else encoded
        cached = self._latent_cache.get(strength)
        if cached is not None and cached[0].shape == condition.shape and torch.equal(cached[0], condition):
            return cached[1]
        filtered = self.recipe.filter(condition, strength)
        if len(self._latent_cache) >= 8:
            self._latent_cache.clear()
        self._latent_cache[strength] = (condition, filtered)
        return filtered

    # The pass plan -----------------------------------------------------------------------------

    def _branches(self, record: StepRecord) -> tuple[tuple[Branch, ...], bool]:
        """The CFG branches this denoiser call holds, and whether the step runs CFG."""
        if self.backend.call_style == "batched":
            if self._cfg is None:  # fixed for the whole pipeline call (read before any update)
                self._cfg = self.backend.cfg_active(self.pipe)
            record.cfg = self._cfg
            return (("uncond", "cond") if self._cfg else ("cond",)), self._cfg
        order = self.backend.split_order
        if self._calls_in_step >= len(order):
            raise GuidanceKitError(
                f"backend {self.backend.name!r}: {self._calls_in_step + 1} denoiser calls in step {record.step}, "
                f"expected at most {len(order)} ({', '.join(order)})"
            )
        record.cfg = self._calls_in_step > 0
        return (order[self._calls_in_step],), record.cfg

    def _plan(
        self, mode: GuidanceMode, branches: tuple[Branch, ...], cfg: bool
    ) -> tuple[list[Prediction], list[Prediction], dict]:
        """The predictions the pipeline's own call computes (one per branch, in its row order),
        those left to extra passes, and aliases for predictions that need no pass of their own."""
        split_first = self.backend.call_style == "split" and branches == ("cond",)
        if split_first:  # whether an unconditional call follows is known only after this one
            wanted = {*mode.predictions(True), *mode.predictions(False)}
        else:
            wanted = set(mode.predictions(cfg))
        aliases = {}
        for p in wanted:
            # A branch that never sees the image (SVD's zero unconditional latent) is the same
            # prediction with either image.
            if p.branch == "uncond" and p.image == "lowpass" and not self.backend.uncond_sees_image:
                aliases[p] = Prediction("uncond", "original")
        needed = sorted({aliases.get(p, p) for p in wanted if p.branch in branches}, key=str)
        primary = []
        for branch in branches:
            own = [p for p in needed if p.branch == branch]
            originals = [p for p in own if p.image == "original"]
            # Keep the branch on the original image when the mode needs it there: the pipeline's
            # cache context then sees the same image as on unfiltered steps.
            primary.append((originals or own or [Prediction(branch, "original")])[0])
        extras = [p for p in needed if p not in primary]
        return primary, extras, aliases

    def _rebuild(self, call: _Call, predictions: list[Prediction], kwargs_keys: Any) -> tuple[tuple, dict]:
        backend = self.backend
        rows = call.per_branch * len(call.branches)
        parts = [call.rows_of(p.branch) for p in predictions]
        arguments = _take_rows(call.arguments, backend.batched_args, rows, parts)
        condition = torch.cat([call.images[p.image][call.rows_of(p.branch)] for p in predictions])
        arguments = backend.set_condition(self.pipe, arguments, condition)
        return (
            tuple(arguments[p] for p in call.positional),
            {k: arguments[k] for k in kwargs_keys},
        )

    def _merge_allowed(self, module: torch.nn.Module) -> bool:
        # A stateful cache keeps its rows per context: the extra passes get contexts of their own.
        stateful = _cache_states(module)
        return self.run.execution == "batched" and self.backend.merge_passes and not stateful

    # Denoiser hooks ----------------------------------------------------------------------------

    def _before_call(
        self, name: str, params: list[str], module: torch.nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict] | None:
        if getattr(_local, "extra", False) or not self.clock.active:
            return None  # our own extra pass, or a call outside a guided denoising loop
        self.clock.check_thread(f"{type(module).__name__} call")
        if len(args) > len(params):
            raise GuidanceKitError(
                f"{type(module).__name__}.forward got more positional arguments than it names"
            )
        positional = params[: len(args)]
        arguments = {**dict(zip(positional, args)), **kwargs}
        record = self._current_record()
        record.denoiser = name
        if self._extra_passes:
            label = self.backend.extra_pass(self.pipe, arguments)
            if label is not None:
                return self._before_extra_pass(label, module, record, arguments, positional, kwargs)
        branches, cfg = self._branches(record)
        self._calls_in_step += 1
        rows = _rows(arguments, self.backend.batched_args)
        if rows % len(branches):
            raise GuidanceKitError(
                f"backend {self.backend.name!r}: {rows} rows do not split into branches {list(branches)}"
            )
        record.calls += 1
        strength = record.strength
        filtering = not self.recipe.filter.is_identity(strength)
        # A guidance-scale schedule below 1 reshapes every CFG step's pair, filtered or not.
        rescaling = record.guidance is not None and record.guidance < 1.0
        if not filtering and not rescaling:
            record.passes += len(branches)
            self._pending[id(module)] = None
            return None
        record.filtered = filtering
        original = self.backend.get_condition(self.pipe, arguments)
        if filtering and record.passes == 0:
            record.filter = self.recipe.filter.effective(strength, original.shape[-2])
        mode = self.mode if filtering else _PLAIN
        primary, extras, aliases = self._plan(mode, branches, cfg)
        merged = bool(extras) and self._merge_allowed(module)
        call = _Call(
            mode=mode,
            scale=self._guidance_share(name, record) if rescaling else 1.0,
            branches=branches,
            cfg=cfg,
            per_branch=rows // len(branches),
            arguments=arguments,
            positional=positional,
            images={
                "original": original,
                "lowpass": self._filtered(original, strength) if filtering else original,
            },
            batch=primary + extras if merged else primary,
            extras=[] if merged else extras,
            aliases=aliases,
        )
        record.passes += len(call.batch)
        self._pending[id(module)] = call
        if call.batch == [Prediction(b, "original") for b in branches]:
            return None  # the pipeline's own call, unchanged
        return self._rebuild(call, call.batch, kwargs.keys())

    def _before_extra_pass(
        self,
        label: str,
        module: torch.nn.Module,
        record: StepRecord,
        arguments: dict[str, Any],
        positional: list[str],
        kwargs: dict,
    ) -> tuple[tuple, dict] | None:
        """An extra conditional pass gets the image of the conditional prediction the pipeline
        holds, and (in the hook) that prediction's shift: the pipeline's c - extra terms are then
        those of that image (ALG: C(LP I) - E(LP I), and c = C(LP I) + U(I) - U(LP I))."""
        record.calls += 1
        record.passes += 1
        basis = self._extra_basis
        if basis is None:
            if record.filtered or (record.guidance is not None and record.guidance < 1.0):
                raise GuidanceKitError(
                    f"backend {self.backend.name!r}: the extra conditional pass {label!r} in step {record.step} "
                    "came before the step's guidance call"
                )
            self._pending[id(module)] = None
            return None
        image, shifts = basis
        self._pending[id(module)] = _Shift(label, shifts)
        if image == "original":
            return None
        original = self.backend.get_condition(self.pipe, arguments)
        arguments = self.backend.set_condition(
            self.pipe, arguments, self._filtered(original, record.strength)
        )
        return tuple(arguments[p] for p in positional), {k: arguments[k] for k in kwargs}

    def _remember_basis(
        self,
        call: _Call,
        cfg: bool,
        keys: list[Any],
        preds: list[dict[Prediction, torch.Tensor]],
        held: list[torch.Tensor],
    ) -> None:
        """Record what the step's extra conditional passes need (see ``_before_extra_pass``):
        ``held`` is the conditional prediction the pipeline holds, by output."""
        if not self._extra_passes:
            return
        conds = [p for p in call.mode.predictions(cfg) if p.branch == "cond"]
        if len(conds) != 1:
            raise GuidanceKitError(
                f"guidance mode {call.mode.name!r} has {len(conds)} conditional predictions; backend "
                f"{self.backend.name!r} runs extra conditional passes, which need exactly one"
            )
        p = conds[0]
        self._extra_basis = (p.image, {key: held[k] - preds[k][p] for k, key in enumerate(keys)})

    def _after_call(self, name: str, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if getattr(_local, "extra", False):
            return None
        call = self._pending.pop(id(module), None)
        if call is None:
            return None
        if isinstance(call, _Shift):
            return call.apply(output, self.backend.name)
        record = self._current_record()
        b = call.per_branch
        keys = _batch_outputs(output, b * len(call.batch))
        preds: list[dict[Prediction, torch.Tensor]] = [
            {p: output[k][j * b : (j + 1) * b] for j, p in enumerate(call.batch)} for k in keys
        ]
        for p in call.extras:
            extra_args, extra_kwargs = self._rebuild(call, [p], kwargs.keys())
            with _own_cache_context(module, str(p)), _extra_pass():
                extra = module(*extra_args, **extra_kwargs)
            record.calls += 1
            record.passes += 1
            for k, key in enumerate(keys):
                preds[k][p] = extra[key]
        for by_prediction in preds:
            for requested, computed in call.aliases.items():
                if computed in by_prediction:
                    by_prediction[requested] = by_prediction[computed]
        if self.backend.call_style == "batched":
            folded = [self._fold(call, by_prediction) for by_prediction in preds]
            self._remember_basis(call, call.cfg, keys, preds, [f[call.rows_of("cond")] for f in folded])
            return _replace_outputs(output, dict(zip(keys, folded)))
        if call.branches == ("cond",):
            conds = [self._forward(call, by_prediction, cfg=False)["cond"] for by_prediction in preds]
            self._held = (preds, conds)
            self._remember_basis(call, False, keys, preds, conds)
            return _replace_outputs(output, dict(zip(keys, conds)))
        return _replace_outputs(output, self._correct(name, call, record, keys, preds))

    def _guidance_share(self, name: str, record: StepRecord) -> Any:
        """k = (1 + (w - 1) g) / w: the pipeline's u + w (u + k (c - u) - u) is then the
        guidance-scale schedule's u + (1 + (w - 1) g) (c - u)."""
        w = self.backend.guidance_weight(self.pipe, name)
        return (1 + (w - 1) * record.guidance) / w

    def _forward(
        self, call: _Call, preds: dict[Prediction, torch.Tensor], cfg: bool
    ) -> dict[Branch, torch.Tensor]:
        out = call.mode.forward(preds, cfg)
        expected = {"uncond", "cond"} if cfg else {"cond"}
        if not isinstance(out, Mapping) or set(out) != expected:
            raise GuidanceKitError(
                f"guidance mode {call.mode.name!r}: forward(cfg={cfg}) must return the keys {sorted(expected)}, "
                f"got {sorted(out) if isinstance(out, Mapping) else type(out).__name__}"
            )
        if cfg and not (isinstance(call.scale, float) and call.scale == 1.0):
            u = out["uncond"]
            out = {"uncond": u, "cond": u + call.scale * (out["cond"] - u)}
        return out

    def _fold(self, call: _Call, preds: dict[Prediction, torch.Tensor]) -> torch.Tensor:
        """A batched call's output rows from the mode's (u, c) pair."""
        folded = self._forward(call, preds, call.cfg)
        return torch.cat([folded[branch] for branch in call.branches])

    def _correct(
        self,
        name: str,
        call: _Call,
        record: StepRecord,
        keys: list[Any],
        preds: list[dict[Prediction, torch.Tensor]],
    ) -> dict[Any, torch.Tensor]:
        """The unconditional call of a split backend: the pipeline already holds what the
        conditional call returned and combines it with what this call returns."""
        if self._held is None:
            raise GuidanceKitError(
                f"backend {self.backend.name!r}: an unconditional denoiser call in step {record.step} "
                "without a conditional one before it"
            )
        held_preds, held = self._held
        self._held = None
        out = {}
        merged = [{**held_preds[k], **preds[k]} for k in range(len(keys))]
        for k, key in enumerate(keys):
            folded = self._forward(call, merged[k], cfg=True)
            u, c = folded["uncond"], folded["cond"]
            if self.backend.correction == "cond_inplace":
                held[k].copy_(c)
                out[key] = u
                continue
            # The pipeline copied the conditional prediction: it forms (1 - a) u' + a held with its
            # scale a; u' = u + a (c - held) / (1 - a) makes that u + a (c - u).
            a = self.backend.guidance_weight(self.pipe, name)
            if a == 1:
                raise GuidanceKitError(
                    f"backend {self.backend.name!r}: guidance scale 1 leaves no unconditional term to carry "
                    f"mode {call.mode.name!r}'s correction; use a scale other than 1 or run without CFG"
                )
            out[key] = u + (c - held[k]) * (a / (1 - a))
        self._remember_basis(call, True, keys, merged, held)
        return out


def _rows(arguments: dict[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = arguments.get(name)
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    raise GuidanceKitError(f"none of the batched arguments {list(names)} is a tensor in this denoiser call")


def _take_rows(
    arguments: dict[str, Any], names: tuple[str, ...], rows: int, parts: list[slice]
) -> dict[str, Any]:
    if parts == [slice(0, rows)]:
        return arguments
    out = dict(arguments)
    total = sum(p.stop - p.start for p in parts)
    for name in names:
        value = arguments.get(name)
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == rows:
            if value.stride(0) == 0:  # an expanded row (Wan's timestep): keep it expanded, as compiled
                out[name] = value[:1].expand(total, *value.shape[1:])
            else:
                out[name] = torch.cat([value[p] for p in parts])
    return out
