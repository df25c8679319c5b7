"""``guide(pipe, recipe)``: apply a recipe to a stock diffusers pipeline without copying it.

How it attaches (all undone on exit, also after an exception):

* each denoiser module gets an instance-level ``forward`` wrapper, composed over whatever
  forward it had (diffusers hooks, offloading), so the pipeline's own code runs unchanged;
* ``scheduler.set_timesteps`` and ``scheduler.step`` are wrapped to know the step index i and
  the number of steps N of the current call (strength s = schedule(i, N));
* ``vae.encode`` is wrapped to count encodes; in pixel space the pipeline's own image-encoding
  method (``backend.pixel_method``) is wrapped to record its inputs, so a filtered image can be
  encoded through the very same path, once per distinct strength.

On a step with s == 0 the denoiser is called with the pipeline's own arguments: bit-identical
to the plain pipeline. On a step with s > 0 the controller swaps the filtered image condition in
and runs the passes the guidance mode needs. ALG with CFG returns, for the pipeline's own
combination u + w * (c - u), the pair u = U(I) and c = C(LP I) + (U(I) - U(LP I)), so that
whatever scale the pipeline applies (per-step, per-frame, per-expert) the result is
U(I) + w * (C(LP I) - U(LP I)).
"""

from __future__ import annotations

import functools
import inspect
import json
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import attrs
import torch

from guidance_kit import registry
from guidance_kit.backend import Backend
from guidance_kit.errors import GuidanceKitError, InvalidParameterError, UnsupportedPipelineError
from guidance_kit.recipe import Recipe
from guidance_kit.types import GuidanceMode, progress

EXECUTIONS = ("batched", "sequential")
_guided: weakref.WeakSet = weakref.WeakSet()


@attrs.define
class StepRecord:
    """What happened at one denoising step."""

    step: int
    num_steps: int
    progress: float
    strength: float
    filter: dict[str, Any]
    passes: int = 0  # denoiser passes, counted per CFG branch (a batched uncond+cond call is 2)
    calls: int = 0  # denoiser module calls
    vae_encodes: int = 0
    denoiser: str = ""
    cfg: bool | None = None
    filtered: bool = False  # strength > 0 and the filter is not the identity there

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


class Run:
    """Handle returned by :func:`guide`; ``run.trace`` is the latest pipeline call's trace."""

    def __init__(self, pipe: Any, recipe: Recipe, backend: Backend, mode: GuidanceMode, execution: str):
        self.pipe, self.recipe, self.backend, self.mode, self.execution = (
            pipe,
            recipe,
            backend,
            mode,
            execution,
        )
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
        return {
            "backend": self.backend.name,
            "recipe": self.recipe.to_dict(),
            "execution": self.execution,
            "calls": [c.to_dict() for c in self.calls],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


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
    batch as the others (``"batched"``, fast) or as its own call (``"sequential"``, lower peak
    memory). The pipeline is restored exactly on exit, also after an exception.
    """
    if execution not in EXECUTIONS:
        raise InvalidParameterError(f"execution must be one of {list(EXECUTIONS)}, got {execution!r}")
    chosen = find_backend(pipe, backend)
    recipe = resolve_recipe(recipe, chosen)
    mode = registry.lookup("mode", recipe.mode)
    if pipe in _guided:
        raise GuidanceKitError(
            f"{type(pipe).__name__} is already inside a guide() block; nesting is not supported"
        )
    run = Run(pipe, recipe, chosen, mode, execution)
    controller = _Controller(run)
    _guided.add(pipe)
    error: BaseException | None = None
    try:
        controller.attach()
        registry.call_observers("on_guide_enter")(run=run)
        yield run
    except BaseException as exc:
        error = exc
        raise
    finally:
        controller.detach()
        _guided.discard(pipe)
        registry.call_observers("on_guide_exit")(run=run, error=error)


def _sample(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.sample


def _with_sample(output: Any, sample: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (sample, *output[1:])
    output["sample"] = sample
    return output


def _generators(value: Any) -> list[torch.Generator]:
    if isinstance(value, torch.Generator):
        return [value]
    if isinstance(value, list | tuple):
        return [g for g in value if isinstance(g, torch.Generator)]
    return []


class _Controller:
    def __init__(self, run: Run):
        self.run = run
        self.pipe, self.backend, self.recipe, self.mode = run.pipe, run.backend, run.recipe, run.mode
        self._patches: list[tuple[Any, str, bool, Any]] = []
        self._step: int | None = None
        self._num_steps = 0
        self._strengths: list[float] = []
        self._record: StepRecord | None = None
        self._calls_in_step = 0
        self._cfg: bool | None = None
        self._looping = False  # inside the denoising loop: past the first denoiser call
        self._pending_cond: torch.Tensor | None = None
        self._latent_cache: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pixel_source: tuple[Callable[..., Any], dict[str, Any], list[torch.Tensor]] | None = None
        self._pixel_cache: dict[float, torch.Tensor] = {}

    # Attaching ---------------------------------------------------------------------------------

    def _patch(self, obj: Any, attr: str, new: Any) -> None:
        own = attr in vars(obj)
        self._patches.append((obj, attr, own, vars(obj).get(attr)))
        setattr(obj, attr, new)

    def attach(self) -> None:
        try:
            scheduler = self.pipe.scheduler
            self._patch(scheduler, "set_timesteps", self._wrap_set_timesteps(scheduler.set_timesteps))
            self._patch(scheduler, "step", self._wrap_step(scheduler.step))
            vae = getattr(self.pipe, "vae", None)
            if vae is not None:
                self._patch(vae, "encode", self._wrap_encode(vae.encode))
            if self.recipe.space == "pixel":
                method = getattr(self.pipe, self.backend.pixel_method)
                self._patch(self.pipe, self.backend.pixel_method, self._wrap_pixel(method))
            for name, module in self.backend.denoisers(self.pipe).items():
                self._patch(module, "forward", self._wrap_denoiser(name, module, module.forward))
        except BaseException:
            self.detach()
            raise

    def detach(self) -> None:
        while self._patches:
            obj, attr, own, old = self._patches.pop()
            if own:
                setattr(obj, attr, old)
            else:
                try:
                    delattr(obj, attr)
                except AttributeError:
                    pass
        self._step = None
        self._looping = False
        self._pending_cond = None

    # Step tracking -----------------------------------------------------------------------------

    def _wrap_set_timesteps(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def set_timesteps(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            self._begin(len(self.pipe.scheduler.timesteps))
            return out

        return set_timesteps

    def _begin(self, num_steps: int) -> None:
        # A trace with no steps yet belongs to this call (encodes counted ahead of set_timesteps,
        # or set_timesteps called twice before the loop).
        if not self.run.calls or self.run.calls[-1].steps:
            self.run.calls.append(CallTrace())
        self._step, self._num_steps = 0, num_steps
        self._looping = False
        self._strengths = [self.recipe.schedule(i, num_steps) for i in range(num_steps)]
        self._record = None
        self._calls_in_step = 0
        self._pending_cond = None
        self._cfg = None

    def _wrap_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            if self._step is not None:
                record = self._current_record()
                self._record = None
                self._calls_in_step = 0
                self._pending_cond = None
                self._step += 1
                if self._step >= self._num_steps:
                    self._step = None
                    self._looping = False
                registry.call_observers("on_step")(run=self.run, record=record)
            return out

        return step

    def _current_record(self) -> StepRecord:
        if self._record is None:
            i = self._step
            assert i is not None
            s = self._strengths[i]
            self._record = StepRecord(
                step=i,
                num_steps=self._num_steps,
                progress=progress(i, self._num_steps),
                strength=s,
                filter=self.recipe.filter.effective(s),
            )
            self.run.calls[-1].steps.append(self._record)
        return self._record

    def _wrap_encode(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def encode(*args: Any, **kwargs: Any) -> Any:
            if self._looping:
                self._current_record().vae_encodes += 1
            elif self.run.calls and not self.run.calls[-1].steps:
                self.run.calls[-1].setup_vae_encodes += 1
            else:  # encodes before set_timesteps (e.g. SVD): count them for the coming call
                self.run.calls.append(CallTrace(setup_vae_encodes=1))
            return original(*args, **kwargs)

        return encode

    # Pixel space -------------------------------------------------------------------------------

    def _wrap_pixel(self, original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def encode_image(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            states = [g.get_state() for g in _generators(arguments.get("generator"))]
            out = original(*args, **kwargs)
            self._pixel_source = (original, arguments, states)
            self._pixel_cache = {}
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
        original, arguments, states = self._pixel_source
        arguments = dict(arguments)
        for name in self.backend.pixel_image_args:
            if arguments.get(name) is not None:
                arguments[name] = self.recipe.filter(arguments[name], strength)
        generators = _generators(arguments.get("generator"))
        current = [g.get_state() for g in generators]
        # Replay the encode with the generator state it first saw: a sampled VAE posterior draws
        # the same noise for the filtered image, and the pipeline's random stream is untouched.
        for g, state in zip(generators, states):
            g.set_state(state)
        try:
            output = original(**arguments)
        finally:
            for g, state in zip(generators, current):
                g.set_state(state)
        condition = self.backend.pixel_condition(self.pipe, output, arguments)
        self._pixel_cache[strength] = condition
        return condition

    # Denoiser ----------------------------------------------------------------------------------

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
            return encoded.expand_as(condition) if encoded.shape[2] == 1 else encoded
        cached = self._latent_cache.get(strength)
        if cached is not None and cached[0].shape == condition.shape and torch.equal(cached[0], condition):
            return cached[1]
        filtered = self.recipe.filter(condition, strength)
        if len(self._latent_cache) >= 8:
            self._latent_cache.clear()
        self._latent_cache[strength] = (condition, filtered)
        return filtered

    def _wrap_denoiser(
        self, name: str, module: torch.nn.Module, original: Callable[..., Any]
    ) -> Callable[..., Any]:
        # Positional parameter names of the module's forward (without self), to read arguments
        # by name and to call back in the same positional/keyword style the pipeline used.
        params = [
            p.name
            for p in list(inspect.signature(type(module).forward).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        backend = self.backend

        @functools.wraps(original)
        def forward(*args: Any, **kwargs: Any) -> Any:
            if self._step is None:  # not inside a guided denoising loop
                return original(*args, **kwargs)
            if len(args) > len(params):
                raise GuidanceKitError(
                    f"{type(module).__name__}.forward got more positional arguments than it names"
                )
            positional = params[: len(args)]
            arguments = {**dict(zip(positional, args)), **kwargs}

            def call(new: dict[str, Any]) -> Any:
                self._current_record().calls += 1
                return original(*(new[p] for p in positional), **{k: new[k] for k in kwargs})

            self._looping = True
            record = self._current_record()
            record.denoiser = name
            if backend.call_style == "batched":
                if self._cfg is None:  # fixed for the whole pipeline call (read before any update)
                    self._cfg = backend.cfg_active(self.pipe)
                cfg = record.cfg = self._cfg
            else:
                cfg, record.cfg = False, self._calls_in_step > 0
            rows = _rows(arguments, backend.batched_args)
            per_branch = rows // 2 if cfg else rows
            strength = record.strength
            if self.recipe.filter.is_identity(strength):
                record.calls += 1
                record.passes += rows // per_branch
                self._calls_in_step += 1
                return original(*args, **kwargs)
            record.filtered = True
            original_condition = backend.get_condition(self.pipe, arguments)
            if record.calls == 0:
                record.filter = self.recipe.filter.effective(strength, original_condition.shape[-2])
            filtered = self._filtered(original_condition, strength)
            if backend.call_style == "batched":
                out = self._batched(call, arguments, original_condition, filtered, cfg, rows, record)
            else:
                out = self._split(call, arguments, original_condition, filtered, record)
            self._calls_in_step += 1
            return out

        return forward

    def _batched(self, call, arguments, original, filtered, cfg, rows, record) -> Any:  # noqa: ANN001
        backend, mode = self.backend, self.mode
        if not cfg:
            record.passes += 1
            chosen = filtered if mode.filter_cond else original
            return call(backend.set_condition(self.pipe, arguments, chosen))
        half = rows // 2
        u, c = slice(0, half), slice(half, rows)
        uncond_filtered = mode.filter_uncond and backend.uncond_sees_image
        cond_image = filtered[c] if mode.filter_cond else original[c]
        uncond_image = filtered[u] if uncond_filtered else original[u]
        if not (mode.original_anchor and uncond_filtered):
            record.passes += 2
            condition = torch.cat([uncond_image, cond_image])
            return call(backend.set_condition(self.pipe, arguments, condition))
        record.passes += 3
        if self.run.execution == "batched":
            triple = _take_rows(arguments, backend.batched_args, rows, [u, u, c])
            condition = torch.cat([original[u], uncond_image, cond_image])
            out = call(backend.set_condition(self.pipe, triple, condition))
            sample = _sample(out)
            u0, uf, cf = sample[:half], sample[half : 2 * half], sample[2 * half :]
        else:
            out = call(backend.set_condition(self.pipe, arguments, torch.cat([uncond_image, cond_image])))
            uf, cf = _sample(out).chunk(2)
            single = _take_rows(arguments, backend.batched_args, rows, [u])
            u0 = _sample(call(backend.set_condition(self.pipe, single, original[u])))
        return _with_sample(out, torch.cat([u0, cf + (u0 - uf)]))

    def _split(self, call, arguments, original, filtered, record) -> Any:  # noqa: ANN001
        # Split backends call the conditional branch first; a second call in the same step is
        # the unconditional branch (present only with CFG).
        backend, mode = self.backend, self.mode
        if self._calls_in_step == 0:
            record.cfg = False
            record.passes += 1
            out = call(
                backend.set_condition(self.pipe, arguments, filtered if mode.filter_cond else original)
            )
            if mode.original_anchor:
                self._pending_cond = _sample(out)
            return out
        record.cfg = True
        if not mode.original_anchor:
            record.passes += 1
            return call(
                backend.set_condition(self.pipe, arguments, filtered if mode.filter_uncond else original)
            )
        if self._pending_cond is None:
            raise GuidanceKitError(
                f"backend {backend.name!r}: a second denoiser call in step {record.step} without a first one"
            )
        record.passes += 2
        rows = original.shape[0]
        if self.run.execution == "batched":
            both = _take_rows(arguments, backend.batched_args, rows, [slice(0, rows), slice(0, rows)])
            out = call(backend.set_condition(self.pipe, both, torch.cat([original, filtered])))
            u0, uf = _sample(out)[:rows], _sample(out)[rows:]
        else:
            out = call(backend.set_condition(self.pipe, arguments, original))
            u0 = _sample(out)
            uf = _sample(call(backend.set_condition(self.pipe, arguments, filtered)))
        # The pipeline holds the conditional prediction from this step's first call and combines
        # it after this call returns: correct it in place to C(LP I) + (U(I) - U(LP I)).
        self._pending_cond.add_(u0 - uf)
        self._pending_cond = None
        return _with_sample(out, u0)


def _rows(arguments: dict[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = arguments.get(name)
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    raise GuidanceKitError(f"none of the batched arguments {list(names)} is a tensor in this denoiser call")


def _take_rows(
    arguments: dict[str, Any], names: tuple[str, ...], rows: int, parts: list[slice]
) -> dict[str, Any]:
    out = dict(arguments)
    for name in names:
        value = arguments.get(name)
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == rows:
            out[name] = torch.cat([value[p] for p in parts])
    return out
