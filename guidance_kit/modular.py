"""ALG on diffusers modular pipelines: a guider, :class:`LowPassGuidance`.

A modular denoise loop asks its guider, per step, which batches to run
(``set_state`` -> ``prepare_inputs_from_block_state``), calls the denoiser once per batch between
``guider.prepare_models(denoiser)`` and ``guider.cleanup_models(denoiser)`` (inside
``denoiser.cache_context(<batch identifier>)`` where the loop uses cache contexts, as LTX does),
and lets the guider combine the predictions (``guider(batches)``). Every batch sees the same
``hidden_states``, with the image condition in it (Wan: channel concat; LTX: frame-0 tokens).

:class:`LowPassGuidance` keeps that protocol and adds what ALG needs:

* on a filtered step (the recipe's schedule gives s > 0 and the filter is not the identity
  there) the batches are the guidance mode's predictions: for ALG ``pred_cond`` = C(LP I),
  ``pred_uncond`` = U(I) and ``pred_uncond_lowpass`` = U(LP I), so three denoiser calls with
  CFG, one without; on other steps exactly ClassifierFreeGuidance's two (or one);
* ``prepare_models`` puts a torch forward pre-hook on the denoiser for a batch that needs the
  low-passed image; the hook swaps the image condition in ``hidden_states`` (read and written by
  a :class:`ModularLayout`), and ``cleanup_models`` removes it. Each batch has its own
  identifier, so a loop that opens a cache context per batch gives each one its own context;
* ``forward`` folds the predictions with the mode's own ``forward`` into the pair (u, c) and
  combines them as ClassifierFreeGuidance does (``u + w (c - u)``, or ``c + w (c - u)`` in the
  original formulation, optional ``guidance_rescale``): ALG gives U(I) + w (C(LP I) - U(LP I)).

The strength per step comes from a guidance_kit :class:`~guidance_kit.recipe.Recipe` (filter,
schedule, mode, optional guidance-scale schedule) evaluated on the guider's step state, so the
same recipes drive classic pipelines (``gk.guide``) and modular ones. The guider is a
``ConfigMixin``: its config holds the recipe as a plain mapping, so ``save_pretrained`` /
``from_pretrained``, ``from_config`` and ``new()`` round-trip it.

:class:`LowPassLTX2Guidance` does the same for diffusers' ``LTX2Guidance`` (the modular LTX-2
loop: CFG, spatio-temporal guidance and modality-isolation passes, a video and an audio guider).

Two entry points: install a guider yourself (``pipe.update_components(guider=LowPassGuidance(...))``,
Wan 2.2 also ``guider_2``), or let :func:`guide` swap the pipeline's ClassifierFreeGuidance guiders
for equivalent low-pass guiders inside a ``with`` block and restore them on exit.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput, rescale_noise_cfg

from guidance_kit import registry
from guidance_kit.clock import StepState, noise_levels
from guidance_kit.controller import CallTrace, CallTraces, StepRecord
from guidance_kit.errors import (
    GuidanceKitError,
    InvalidParameterError,
    UnknownNameError,
    UnsupportedPipelineError,
    shown,
)
from guidance_kit.recipe import Recipe
from guidance_kit.types import C_I, U_I, Prediction, check_strength, progress

if TYPE_CHECKING:
    from diffusers.modular_pipelines.modular_pipeline import BlockState


# Layouts -----------------------------------------------------------------------------------------


class ModularLayout:
    """Where the denoiser of a modular pipeline sees the VAE-latent image condition.

    Concrete layouts live in ``plugins/modular.py``; a third-party one is added with
    :func:`register_layout`. ``get_condition`` returns the condition as ``[rows, C, F, H, W]``
    from the keyword arguments of one denoiser call; ``set_condition`` returns a copy of them with
    the condition replaced.
    """

    name: ClassVar[str]
    #: Denoiser class names this layout reads (``torch.compile`` wrappers are looked through).
    denoisers: ClassVar[tuple[str, ...]] = ()
    #: Modular pipeline class names built on this layout (shown in errors and docs).
    pipelines: ClassVar[tuple[str, ...]] = ()

    def matches(self, denoiser: torch.nn.Module) -> bool:
        return type(_inner(denoiser)).__name__ in self.denoisers

    def get_condition(self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def set_condition(
        self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any], condition: torch.Tensor
    ) -> dict[str, Any]:
        raise NotImplementedError

    def backend(self, pipe: Any) -> str | None:
        """The classic backend whose released default recipe applies to ``pipe`` (``"alg"``)."""
        return None


_extra_layouts: dict[str, ModularLayout] = {}
_layouts_lock = threading.Lock()


def layouts() -> dict[str, ModularLayout]:
    """Every known layout by name: the built-ins, then those added with :func:`register_layout`."""
    from guidance_kit.plugins.modular import BUILTIN_LAYOUTS

    with _layouts_lock:
        return {**{layout.name: layout for layout in BUILTIN_LAYOUTS}, **_extra_layouts}


def register_layout(layout: ModularLayout) -> None:
    """Add a layout for a denoiser the built-ins do not know (its ``name`` must be new)."""
    if not isinstance(layout, ModularLayout) or not isinstance(getattr(layout, "name", None), str):
        raise InvalidParameterError(f"a layout must be a named ModularLayout instance, got {shown(layout)}")
    if layout.name in layouts():
        raise InvalidParameterError(f"a modular layout called {layout.name!r} is already registered")
    with _layouts_lock:
        _extra_layouts[layout.name] = layout


def unregister_layout(name: str) -> None:
    with _layouts_lock:
        _extra_layouts.pop(name, None)


def find_layout(denoiser: torch.nn.Module, name: str | None = None) -> ModularLayout:
    """The layout called ``name``, or the one that reads ``denoiser``."""
    table = layouts()
    if name is not None:
        if name not in table:
            raise UnknownNameError("modular layout", name, table)
        return table[name]
    for layout in table.values():
        if layout.matches(denoiser):
            return layout
    known = "; ".join(f"{n}: {', '.join(layout.denoisers)}" for n, layout in table.items())
    raise UnsupportedPipelineError(
        f"no guidance_kit modular layout reads the image condition of {type(_inner(denoiser)).__name__}. "
        f"Known layouts (by denoiser class): {known}. Add one with guidance_kit.modular.register_layout."
    )


def _inner(module: Any) -> Any:
    return getattr(module, "_orig_mod", module)  # torch.compile's OptimizedModule


# The guider --------------------------------------------------------------------------------------


def _resolve_recipe(recipe: Any) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        from guidance_kit import recipes

        return recipes.get(recipe)
    if isinstance(recipe, Mapping):
        return Recipe.from_dict(recipe)
    raise InvalidParameterError(
        f"recipe must be a Recipe, a registered recipe name or a mapping, got {shown(recipe)}"
    )


def _number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameterError(f"{name} must be a finite number, got {shown(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidParameterError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _identifier(prediction: Prediction, primary: bool) -> str:
    """``pred_cond`` / ``pred_uncond`` for the prediction a CFG branch keeps (the original image
    where the mode needs it there, as on unfiltered steps), ``pred_<branch>_lowpass`` for the
    mode's other prediction on that branch."""
    name = f"pred_{prediction.branch}"
    return name if primary else f"{name}_{prediction.image}"


class LowPassGuidance(BaseGuidance):
    """Classifier-free guidance whose conditional direction sees a low-passed image condition on
    the steps a guidance_kit recipe filters (Adaptive Low-Pass Guidance, ALG).

    Args:
        recipe: a :class:`~guidance_kit.recipe.Recipe`, a registered recipe name (``"alg"``: the
            generic default; ``gk.recipes.get("alg", backend="wan2.1")`` for a model's released
            one) or a recipe mapping. Stored in the config as a mapping. Latent space only.
        guidance_scale, guidance_rescale, use_original_formulation, start, stop, enabled: as in
            diffusers' ``ClassifierFreeGuidance``, with the same meaning and combination.
        layout: the name of the :class:`ModularLayout` that finds the image condition in the
            denoiser's inputs; ``None`` picks it from the denoiser's class.

    Batches per step: C(I), U(I) on unfiltered steps (ClassifierFreeGuidance's, bit-identical);
    the mode's predictions on filtered ones (ALG: ``pred_cond`` = C(LP I), ``pred_uncond`` = U(I),
    ``pred_uncond_lowpass`` = U(LP I)); one conditional batch where CFG is off.
    """

    _input_predictions = ["pred_cond", "pred_uncond", "pred_cond_lowpass", "pred_uncond_lowpass"]

    @register_to_config
    def __init__(
        self,
        recipe: Any = "alg",
        guidance_scale: float = 5.0,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
        layout: str | None = None,
    ):
        self._start_low_pass(start, stop, enabled, recipe, layout)
        self.guidance_scale = _number("guidance_scale", guidance_scale)
        self.guidance_rescale = _number("guidance_rescale", guidance_rescale, 0.0, 1.0)
        self.use_original_formulation = bool(use_original_formulation)
        self._plan = self._plain_plan(self._is_cfg_enabled())

    def _start_low_pass(
        self, start: float, stop: float, enabled: bool, recipe: Any, layout: str | None
    ) -> None:
        """BaseGuidance's set-up, the recipe (resolved, checked, stored in the config as a mapping)
        and the run-time state; the subclass's own parameters are set after this."""
        try:
            BaseGuidance.__init__(self, start, stop, enabled)
        except ValueError as exc:  # BaseGuidance's start/stop checks
            raise InvalidParameterError(str(exc)) from None
        recipe = _resolve_recipe(recipe)
        if recipe.space != "latent":
            raise InvalidParameterError(
                f"{type(self).__name__} filters the VAE latent of the image (space 'latent'); recipe space "
                f"{recipe.space!r} needs the pipeline's own encode path: use the classic pipeline with "
                "gk.guide, or recipe.replace(space='latent')"
            )
        if layout is not None:
            find_layout(torch.nn.Module(), layout)  # an unknown name fails here, not mid-loop
        self.recipe = recipe
        self.mode = registry.lookup("mode", recipe.mode)
        self.layout = layout
        # The config holds the recipe as a mapping, so it serialises like any guider's.
        self.register_to_config(recipe=json.loads(json.dumps(recipe.to_dict())))
        # Run-time state (not config).
        self._scheduler: Any = None  # for noise-level schedules: see set_scheduler
        self._denoiser_name: str | None = None  # recorded in the trace (set by guide())
        self._run: ModularRun | None = None
        self._plan: list[tuple[str, Prediction, int]] = []
        self._filtering = False
        self._strength = 0.0
        self._scale: float | None = None  # a after the recipe's guidance schedule, where it changes it
        self._record: StepRecord | None = None
        self._handle: Any = None
        self._cache: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        self._layouts: dict[int, ModularLayout] = {}
        #: The steps this guider served in the latest pipeline call.
        self.trace: list[StepRecord] = []

    # Step state ---------------------------------------------------------------------------------

    def set_scheduler(self, scheduler: Any) -> None:
        """Give the guider the pipeline's scheduler, so recipes keyed on the noise level
        (``NoiseLevelSchedule``) can read sigma there (:func:`guide` does this)."""
        self._scheduler = scheduler

    def _state(self, step: int, num_steps: int, timestep: Any) -> StepState:
        t = None if timestep is None else float(timestep)
        sigma = level = None
        if self._scheduler is not None:
            levels = noise_levels(self._scheduler)
            if len(levels) == num_steps and 0 <= step < num_steps:
                _, sigma, level = levels[step]
        return StepState(step, num_steps, progress(step, num_steps), t, sigma, level)

    def set_state(self, step: int, num_inference_steps: int, timestep: torch.LongTensor) -> None:
        super().set_state(step, num_inference_steps, timestep)
        self._remove_hook()  # a denoiser call that raised never reached cleanup_models
        if (
            not isinstance(step, int)
            or not isinstance(num_inference_steps, int)
            or not (0 <= step < num_inference_steps)
        ):
            raise InvalidParameterError(
                f"LowPassGuidance.set_state needs 0 <= step < num_inference_steps, got step={step!r}, "
                f"num_inference_steps={num_inference_steps!r}"
            )
        state = self._state(step, num_inference_steps, timestep)
        try:
            strength = check_strength(self.recipe.schedule.strength(state))
        except GuidanceKitError as exc:
            if state.noise_level is None and "noise level" in str(exc):
                raise GuidanceKitError(
                    f"{exc}. LowPassGuidance knows the noise level only when it has the pipeline's scheduler: "
                    "call guider.set_scheduler(pipe.scheduler), or install it with guidance_kit.modular.guide"
                ) from None
            raise
        cfg = self._is_cfg_enabled()
        self._strength = strength
        # A disabled guider (disable(), enabled=False) is plain: the conditional prediction alone.
        self._filtering = self._enabled and not self.recipe.filter.is_identity(strength)
        self._plan = self._mode_plan(cfg) if self._filtering else self._plain_plan(cfg)
        guidance = self.recipe.guidance
        g = None if guidance is None else check_strength(guidance.strength(state))
        self._scale = None
        if g is not None and g != 1.0:
            a = 1.0 + self.guidance_scale if self.use_original_formulation else self.guidance_scale
            self._scale = 1.0 + (a - 1.0) * g  # applied to u + a (c - u) in forward
        self._record = StepRecord.at(
            state,
            self.recipe,
            strength,
            g,
            denoiser=self._denoiser_name or "",
            cfg=cfg,
            filtered=self._filtering,
        )
        if self.trace and step <= self.trace[-1].step:
            self.trace = []  # a new pipeline call
        self.trace.append(self._record)
        if self._run is not None:
            self._run._add(self._record)

    @staticmethod
    def _plain_plan(cfg: bool) -> list[tuple[str, Prediction, int]]:
        # ClassifierFreeGuidance's batches: conditional (tuple index 0), then unconditional (1).
        return [("pred_cond", C_I, 0), ("pred_uncond", U_I, 1)] if cfg else [("pred_cond", C_I, 0)]

    def _mode_plan(self, cfg: bool) -> list[tuple[str, Prediction, int]]:
        wanted = list(dict.fromkeys(self.mode.predictions(cfg)))
        plan: list[tuple[str, Prediction, int]] = []
        extras: list[tuple[str, Prediction, int]] = []
        for index, branch in enumerate(("cond", "uncond")):
            own = [p for p in wanted if p.branch == branch]
            if not own:
                continue
            originals = [p for p in own if p.image == "original"]
            primary = (originals or own)[0]
            plan.append((_identifier(primary, True), primary, index))
            extras += [(_identifier(p, False), p, index) for p in own if p != primary]
        if not plan or plan[0][1].branch != "cond":
            raise GuidanceKitError(
                f"guidance mode {self.mode.name!r}: predictions(cfg={cfg}) must include a conditional prediction"
            )
        return plan + extras

    def _within_window(self) -> bool:
        if self._num_inference_steps is None:
            return True
        first = int(self._start * self._num_inference_steps)
        last = int(self._stop * self._num_inference_steps)
        return first <= self._step < last

    def _is_cfg_enabled(self) -> bool:
        # ClassifierFreeGuidance's rule (LTX2Guidance's too), so the guiders agree on every step.
        neutral = 0.0 if self.use_original_formulation else 1.0
        return self._enabled and self._within_window() and not math.isclose(self.guidance_scale, neutral)

    @property
    def num_conditions(self) -> int:
        return len(self._plan)

    @property
    def is_conditional(self) -> bool:
        index = self._count_prepared - 1
        plan = self._model_plan()
        return 0 <= index < len(plan) and plan[index][1].branch == "cond"

    @property
    def is_filtered(self) -> bool:
        """Whether the current step sees the low-passed image."""
        return self._filtering

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(strength=self._strength, filtered=self._filtering, batches=[p[0] for p in self._plan])
        return state

    # Batches ------------------------------------------------------------------------------------

    def prepare_inputs(self, data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[BlockState]:
        return [self._prepare_batch(data, index, name) for name, _, index in self._plan]

    def prepare_inputs_from_block_state(
        self, data: BlockState, input_fields: dict[str, str | tuple[str, str]]
    ) -> list[BlockState]:
        return [
            self._prepare_batch_from_block_state(input_fields, data, index, name)
            for name, _, index in self._plan
        ]

    def prepare_models(self, denoiser: torch.nn.Module) -> None:
        self._count_prepared += 1
        self._remove_hook()
        index = self._count_prepared - 1
        plan = self._model_plan()
        if index >= len(plan):
            raise GuidanceKitError(
                f"{type(self).__name__} prepared {len(plan)} batch(es) for step {self._step} "
                f"({', '.join(p[0] for p in plan)}), and the loop runs a batch more: the denoise "
                "block must call prepare_models once per batch of prepare_inputs(_from_block_state)"
                + self._extra_batch_hint()
            )
        if self._record is not None:
            self._record.passes += 1
            self._record.calls += 1
        if plan[index][1].image == "lowpass":
            layout = self._layout_for(denoiser)
            hook = torch.compiler.disable(functools.partial(self._swap_condition, layout))
            self._handle = denoiser.register_forward_pre_hook(hook, with_kwargs=True, prepend=True)

    def cleanup_models(self, denoiser: torch.nn.Module) -> None:
        self._remove_hook()

    def _model_plan(self) -> list[tuple[str, Prediction, int]]:
        """The batches the loop runs this step, in order, between prepare_models and cleanup_models."""
        return self._plan

    def _extra_batch_hint(self) -> str:
        return ""

    def _remove_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _layout_for(self, denoiser: torch.nn.Module) -> ModularLayout:
        layout = self._layouts.get(id(denoiser))
        if layout is None:
            layout = self._layouts[id(denoiser)] = find_layout(denoiser, self.layout)
        return layout

    def _swap_condition(
        self, layout: ModularLayout, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]
    ) -> tuple[tuple, dict[str, Any]]:
        if args:
            raise GuidanceKitError(
                f"LowPassGuidance: {type(_inner(module)).__name__} was called with positional arguments; "
                "the modular denoise blocks pass keyword arguments, which the image swap reads by name"
            )
        condition = layout.get_condition(module, kwargs)
        if self._record is not None and self._record.filter == self.recipe.filter.effective(self._strength):
            self._record.filter = self.recipe.filter.effective(self._strength, condition.shape[-2])
        return args, layout.set_condition(module, kwargs, self._filtered(condition))

    def _filtered(self, condition: torch.Tensor) -> torch.Tensor:
        """The condition at this step's strength; computed once per step for all its batches."""
        cached = self._cache.get(self._strength)
        if cached is not None and cached[0].shape == condition.shape and torch.equal(cached[0], condition):
            return cached[1]
        filtered = self.recipe.filter(condition, self._strength)
        if len(self._cache) >= 8:
            self._cache.clear()
        self._cache[self._strength] = (condition, filtered)
        return filtered

    # Combination --------------------------------------------------------------------------------

    def forward(
        self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor | None = None, **extra: torch.Tensor
    ) -> GuiderOutput:
        given = {"pred_cond": pred_cond, "pred_uncond": pred_uncond, **extra}
        missing = [name for name, _, _ in self._plan if given.get(name) is None]
        if missing:
            raise GuidanceKitError(
                f"LowPassGuidance.forward is missing the prediction(s) {missing} of step {self._step}"
            )
        cfg = self._is_cfg_enabled()
        if self._filtering:
            folded = self.mode.forward({p: given[name] for name, p, _ in self._plan}, cfg)
            expected = {"uncond", "cond"} if cfg else {"cond"}
            if not isinstance(folded, Mapping) or set(folded) != expected:
                raise GuidanceKitError(
                    f"guidance mode {self.mode.name!r}: forward(cfg={cfg}) must return the keys "
                    f"{sorted(expected)}, got {sorted(folded) if isinstance(folded, Mapping) else type(folded).__name__}"
                )
            c, u = folded["cond"], folded.get("uncond")
        else:
            c, u = pred_cond, pred_uncond
        if not cfg:
            pred = c
        elif self._scale is None:
            # ClassifierFreeGuidance's operations, in its order: bit-identical on plain steps.
            shift = c - u
            pred = c if self.use_original_formulation else u
            pred = pred + self.guidance_scale * shift
        else:  # the recipe's guidance schedule: u + (1 + (a - 1) g) (c - u)
            pred = u + self._scale * (c - u)
        if self.guidance_rescale > 0.0:
            pred = rescale_noise_cfg(pred, c, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=c, pred_uncond=u)


class LowPassLTX2Guidance(LowPassGuidance):
    """diffusers' ``LTX2Guidance`` (CFG, spatio-temporal guidance and modality isolation, combined
    in x0 space) whose conditional passes see a low-passed image condition on the steps a
    guidance_kit recipe filters: ALG on the modular LTX-2 pipelines.

    One instance drives one modality, as ``LTX2Guidance`` does: the pipeline's video ``guider``
    and its ``audio_guider`` each get one, with their own scales and the same recipe.

    Args:
        recipe: as for :class:`LowPassGuidance` (latent space; no guidance-scale schedule: each
            modality has its own scales, as in the classic ``ltx-2`` backend, which refuses it too).
        guidance_scale, stg_scale, modality_scale, guidance_rescale,
        spatio_temporal_guidance_blocks, start, stop, enabled: as in ``LTX2Guidance``.
        layout: as for :class:`LowPassGuidance` (default: from the denoiser's class).

    Batches per step: ``LTX2Guidance``'s (``pred_cond``, then ``pred_uncond``, ``pred_cond_stg``,
    ``pred_cond_modality`` where active) on unfiltered steps, combined by its code operation for
    operation; on a filtered step with ALG ``pred_cond`` = C(LP I), ``pred_uncond`` = U(I),
    ``pred_cond_stg`` = STG(LP I), ``pred_cond_modality`` = MOD(LP I) and ``pred_uncond_lowpass``
    = U(LP I) (input-field slot 1, the negative text; the loop gives its unknown identifier no STG
    blocks and no isolation), combined into

        U(I) + w (C(LP I) - U(LP I)) + s (C(LP I) - STG(LP I)) + (m - 1)(C(LP I) - MOD(LP I)),

    rescaled (``guidance_rescale``) against c = C(LP I) + U(I) - U(LP I): ``LTX2Guidance``'s
    combination of c, u = U(I) and the extra passes shifted by c - C(LP I), as the classic backend
    does. The LTX-2 loop calls ``prepare_models`` on the video guider only, once per batch of the
    union (by identifier, video first) of both guiders' batches; :meth:`pair` tells the video
    guider its audio partner so it swaps the image for the right batches (:func:`guide` pairs them).
    """

    _input_predictions = [
        "pred_cond",
        "pred_uncond",
        "pred_cond_stg",
        "pred_cond_modality",
        "pred_uncond_lowpass",
        "pred_cond_lowpass",
    ]
    # LTX2Guidance's input-field slots: [cond, uncond, stg, modality]
    _SLOTS: ClassVar[dict[str, int]] = {"pred_cond_stg": 2, "pred_cond_modality": 3}

    @register_to_config
    def __init__(
        self,
        recipe: Any = "alg",
        guidance_scale: float = 1.0,
        stg_scale: float = 0.0,
        modality_scale: float = 1.0,
        guidance_rescale: float = 0.0,
        spatio_temporal_guidance_blocks: list[int] | None = None,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
        layout: str | None = None,
    ):
        self._start_low_pass(start, stop, enabled, recipe, layout)
        if self.recipe.guidance is not None:
            raise InvalidParameterError(
                "LowPassLTX2Guidance: the recipe has a guidance-scale schedule; LTX-2 combines CFG, STG and "
                "modality terms with per-modality scales, so no single w follows it (the classic 'ltx-2' "
                "backend refuses it too): drop recipe.guidance"
            )
        self.guidance_scale = _number("guidance_scale", guidance_scale)
        self.stg_scale = _number("stg_scale", stg_scale)
        self.modality_scale = _number("modality_scale", modality_scale)
        self.guidance_rescale = _number("guidance_rescale", guidance_rescale, 0.0, 1.0)
        self.use_original_formulation = False  # LTX2Guidance's delta formulation: neutral scale 1
        if spatio_temporal_guidance_blocks is not None and (
            isinstance(spatio_temporal_guidance_blocks, str | bytes)
            or not all(
                isinstance(b, int) and not isinstance(b, bool) for b in spatio_temporal_guidance_blocks
            )
        ):
            raise InvalidParameterError(
                f"spatio_temporal_guidance_blocks must be a list of block indices, got "
                f"{shown(spatio_temporal_guidance_blocks)}"
            )
        self.spatio_temporal_guidance_blocks = spatio_temporal_guidance_blocks
        self._audio: LowPassLTX2Guidance | None = None  # the partner whose batches the loop adds
        self._union: list[tuple[str, Prediction, int]] | None = None
        self._plan = self._plain_plan(self._is_cfg_enabled())

    def pair(self, audio_guider: LowPassLTX2Guidance | None) -> None:
        """Tell this (video) guider which audio guider the loop unions its batches with, so the
        image is swapped for the right batches when the audio guider has a pass this one has not
        (``None`` unpairs)."""
        if audio_guider is not None and (
            not isinstance(audio_guider, LowPassLTX2Guidance) or audio_guider is self
        ):
            raise InvalidParameterError(
                f"pair() takes the audio LowPassLTX2Guidance (another instance), got {shown(audio_guider)}"
            )
        self._audio = audio_guider

    # LTX2Guidance's per-term checks (the loop reads spatio_temporal_guidance_blocks off the video guider).
    def is_cfg_enabled(self) -> bool:
        return self._is_cfg_enabled()

    def is_stg_enabled(self) -> bool:
        return self._enabled and self._within_window() and not math.isclose(self.stg_scale, 0.0)

    def is_modality_enabled(self) -> bool:
        return self._enabled and self._within_window() and not math.isclose(self.modality_scale, 1.0)

    def active_predictions(self) -> list[str]:
        """The identifiers of this step's batches (the LTX-2 loop combines each modality's own)."""
        return [name for name, _, _ in self._plan]

    @property
    def is_conditional(self) -> bool:
        # As LTX2Guidance: not load-bearing (read without pairing checks between steps).
        plan = self._union if self._union is not None else self._plan
        index = self._count_prepared - 1
        return not 0 <= index < len(plan) or plan[index][1].branch == "cond"

    def set_state(self, step: int, num_inference_steps: int, timestep: torch.LongTensor) -> None:
        self._union = None
        super().set_state(step, num_inference_steps, timestep)

    def _extras(self, image: str) -> list[tuple[str, Prediction, int]]:
        """The STG and modality-isolation passes: the conditional text, the image of the mode's
        conditional prediction."""
        p = Prediction("cond", image)
        names = [
            n
            for n, on in (
                ("pred_cond_stg", self.is_stg_enabled()),
                ("pred_cond_modality", self.is_modality_enabled()),
            )
            if on
        ]
        return [(n, p, self._SLOTS[n]) for n in names]

    def _plain_plan(self, cfg: bool) -> list[tuple[str, Prediction, int]]:  # type: ignore[override]
        plan = [("pred_cond", C_I, 0)] + ([("pred_uncond", U_I, 1)] if cfg else [])
        return plan + self._extras("original")

    def _mode_plan(self, cfg: bool) -> list[tuple[str, Prediction, int]]:
        plan = super()._mode_plan(cfg)
        extras = self._extras(self._conditional(cfg).image)
        primaries = [item for item in plan if item[0] in ("pred_cond", "pred_uncond")]
        return primaries + extras + [item for item in plan if item not in primaries]

    def _conditional(self, cfg: bool) -> Prediction:
        """The mode's one conditional prediction, whose image and shift the extra passes take."""
        conds = list(dict.fromkeys(p for p in self.mode.predictions(cfg) if p.branch == "cond"))
        if len(conds) != 1 and (self.is_stg_enabled() or self.is_modality_enabled()):
            raise GuidanceKitError(
                f"guidance mode {self.mode.name!r} has {len(conds)} conditional predictions; LTX-2's STG and "
                "modality-isolation passes need exactly one (their image and shift)"
            )
        return conds[0]

    def _model_plan(self) -> list[tuple[str, Prediction, int]]:
        if self._audio is None:
            return self._plan
        if self._union is None:
            self._union = self._unite(self._audio)
        return self._union

    def _unite(self, audio: LowPassLTX2Guidance) -> list[tuple[str, Prediction, int]]:
        """The batches in the loop's order: this guider's, then the audio guider's others (the
        LTX-2 loop unions them by identifier, video first, and runs each once)."""
        if (audio._step, audio._num_inference_steps) != (self._step, self._num_inference_steps):
            raise GuidanceKitError(
                f"LowPassLTX2Guidance: the audio guider is at step {audio._step} of {audio._num_inference_steps}, "
                f"the video guider at {self._step} of {self._num_inference_steps}: the loop must set_state both "
                "before the step's first batch"
            )
        if audio._filtering != self._filtering or (self._filtering and audio._strength != self._strength):
            raise GuidanceKitError(
                f"LowPassLTX2Guidance: in step {self._step} the video guider filters at strength "
                f"{self._strength if self._filtering else 0} and the audio guider at "
                f"{audio._strength if audio._filtering else 0}; the two share the transformer's passes, so they "
                "need the same recipe and the same enabled state"
            )
        plan = list(self._plan)
        seen = {name: (p, index) for name, p, index in plan}
        for name, p, index in audio._plan:
            if name not in seen:
                plan.append((name, p, index))
            elif seen[name] != (p, index):
                raise GuidanceKitError(
                    f"LowPassLTX2Guidance: batch {name!r} of step {self._step} is {seen[name][0]} for the video "
                    f"guider and {p} for the audio guider; the loop runs it once for both"
                )
        return plan

    def _extra_batch_hint(self) -> str:
        if self._audio is not None:
            return ""
        return (
            ". On LTX-2 the loop also runs the batches only the audio guider has: pair the guiders "
            "(video_guider.pair(audio_guider)), or use guidance_kit.modular.guide, which does"
        )

    def forward(  # type: ignore[override]
        self,
        pred_cond: torch.Tensor,
        pred_uncond: torch.Tensor | None = None,
        pred_cond_stg: torch.Tensor | None = None,
        pred_cond_modality: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> GuiderOutput:
        given = {
            "pred_cond": pred_cond,
            "pred_uncond": pred_uncond,
            "pred_cond_stg": pred_cond_stg,
            "pred_cond_modality": pred_cond_modality,
            **extra,
        }
        missing = [name for name, _, _ in self._plan if given.get(name) is None]
        if missing:
            raise GuidanceKitError(
                f"LowPassLTX2Guidance.forward is missing the prediction(s) {missing} of step {self._step}"
            )
        cfg = self._is_cfg_enabled()
        c, u, stg, mod = pred_cond, pred_uncond, pred_cond_stg, pred_cond_modality
        if self._filtering:
            extras = {"pred_cond_stg", "pred_cond_modality"}
            folded = self.mode.forward(
                {p: given[name] for name, p, _ in self._plan if name not in extras}, cfg
            )
            expected = {"uncond", "cond"} if cfg else {"cond"}
            if not isinstance(folded, Mapping) or set(folded) != expected:
                raise GuidanceKitError(
                    f"guidance mode {self.mode.name!r}: forward(cfg={cfg}) must return the keys "
                    f"{sorted(expected)}, got {sorted(folded) if isinstance(folded, Mapping) else type(folded).__name__}"
                )
            c, u = folded["cond"], folded.get("uncond")
            if self.is_stg_enabled() or self.is_modality_enabled():
                # The extra passes saw the image of the mode's conditional prediction p; shifted by
                # c - p they make c - stg = p - STG (ALG: C(LP I) - STG(LP I)), as in the classic backend.
                p = self._conditional(cfg)
                shift = c - given[next(name for name, q, _ in self._plan if q == p and name not in extras)]
                stg = None if stg is None else stg + shift
                mod = None if mod is None else mod + shift
        # LTX2Guidance.forward's operations, in its order: bit-identical on unfiltered steps.
        pred = c
        if cfg:
            pred = pred + (self.guidance_scale - 1.0) * (c - u)
        if self.is_stg_enabled():
            pred = pred + self.stg_scale * (c - stg)
        if self.is_modality_enabled():
            pred = pred + (self.modality_scale - 1.0) * (c - mod)
        if self.guidance_rescale > 0.0:
            pred = rescale_noise_cfg(pred, c, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=c, pred_uncond=u)


# guide(): install for a with-block ---------------------------------------------------------------


class ModularRun(CallTraces):
    """Handle yielded by :func:`guide`: the installed guiders and the per-step trace."""

    def __init__(self, pipe: Any, recipe: Recipe, layout: ModularLayout):
        super().__init__()
        self.pipe, self.recipe, self.layout = pipe, recipe, layout
        self.guiders: dict[str, LowPassGuidance] = {}

    def _add(self, record: StepRecord) -> None:
        if not self.calls or (self.calls[-1].steps and record.step <= self.calls[-1].steps[-1].step):
            self.calls.append(CallTrace())
        self.calls[-1].steps.append(record)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": type(self.pipe).__name__,
            "layout": self.layout.name,
            "guiders": sorted(self.guiders),
            "recipe": self.recipe.to_dict(),
            **super().to_dict(),
        }


_MISSING = object()


def is_modular(pipe: Any) -> bool:
    """Whether ``pipe`` is a diffusers modular pipeline."""
    try:
        from diffusers.modular_pipelines import ModularPipeline
    except ImportError:  # pragma: no cover - diffusers without modular pipelines
        return False
    return isinstance(pipe, ModularPipeline)


def _guider_names(pipe: Any) -> list[str]:
    specs = getattr(pipe, "_component_specs", {})
    # guider, guider_2 (Wan 2.2's low-noise expert), audio_guider (LTX-2's audio modality)
    wanted = [n for n in specs if n == "guider" or n.startswith("guider_") or n == "audio_guider"]
    return [n for n in wanted if getattr(pipe, n, None) is not None]


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    # update_components logs that a guider "was not created using ComponentSpec"; BaseGuidance
    # warns that guiders are experimental: neither is news to a guide() user.
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def low_pass_from(
    guider: Any, recipe: Recipe | str | Mapping[str, Any], layout: str | None = None
) -> LowPassGuidance:
    """A :class:`LowPassGuidance` that combines exactly as ``guider`` (a diffusers
    ``ClassifierFreeGuidance``) does, with ``recipe``'s low-pass filter on top; for an
    ``LTX2Guidance``, a :class:`LowPassLTX2Guidance` with its scales."""
    from diffusers import ClassifierFreeGuidance, LTX2Guidance

    if type(guider) is LTX2Guidance:
        with _quiet_diffusers():
            return LowPassLTX2Guidance(
                recipe=recipe,
                guidance_scale=guider.guidance_scale,
                stg_scale=guider.stg_scale,
                modality_scale=guider.modality_scale,
                guidance_rescale=guider.guidance_rescale,
                spatio_temporal_guidance_blocks=guider.spatio_temporal_guidance_blocks,
                start=guider._start,
                stop=guider._stop,
                enabled=guider._enabled,
                layout=layout,
            )
    if type(guider) is not ClassifierFreeGuidance:
        raise UnsupportedPipelineError(
            f"ALG replaces a ClassifierFreeGuidance guider with LowPassGuidance (an LTX2Guidance with "
            f"LowPassLTX2Guidance), which combine the same way; the pipeline's guider is "
            f"{type(guider).__name__}, whose own combination would be lost. Use ClassifierFreeGuidance, or "
            "install LowPassGuidance yourself (pipe.update_components(guider=...))"
        )
    with _quiet_diffusers():
        return LowPassGuidance(
            recipe=recipe,
            guidance_scale=guider.guidance_scale,
            guidance_rescale=guider.guidance_rescale,
            use_original_formulation=guider.use_original_formulation,
            start=guider._start,
            stop=guider._stop,
            enabled=guider._enabled,
            layout=layout,
        )


@contextmanager
def guide(
    pipe: Any, recipe: Recipe | str | Mapping[str, Any] = "alg", *, backend: str | None = None
) -> Iterator[ModularRun]:
    """Apply ``recipe`` to every call of the modular pipeline ``pipe`` inside the block.

    Each ClassifierFreeGuidance guider of ``pipe`` (``guider``, and ``guider_2`` on Wan 2.2) is
    replaced by a :class:`LowPassGuidance` with the same scale, rescale, formulation and
    start/stop, which gets the pipeline's scheduler for noise-level schedules; on LTX-2 the
    ``LTX2Guidance`` ``guider`` and ``audio_guider`` by paired :class:`LowPassLTX2Guidance` with
    their scales. On exit (also after
    an exception) the previous guider objects and their component specs are put back exactly.

    ``recipe``: a :class:`Recipe`, a registered name (``"alg"`` picks the released default of the
    classic backend of the same model, or of ``backend``) or a mapping.
    """
    if not is_modular(pipe):
        raise UnsupportedPipelineError(
            f"guidance_kit.modular.guide needs a diffusers ModularPipeline, got {type(pipe).__name__}; "
            "use gk.guide for classic pipelines"
        )
    denoiser = getattr(pipe, "transformer", None)
    if denoiser is None:
        raise UnsupportedPipelineError(
            f"{type(pipe).__name__} has no transformer loaded; load its components before guide()"
        )
    layout = find_layout(denoiser)
    if isinstance(recipe, str):
        from guidance_kit import recipes

        recipe = recipes.get(recipe, backend=backend or layout.backend(pipe))
    elif isinstance(recipe, Mapping):
        recipe = Recipe.from_dict(recipe)
    elif not isinstance(recipe, Recipe):
        raise InvalidParameterError(
            f"recipe must be a Recipe, a registered recipe name or a mapping, got {shown(recipe)}"
        )
    names = _guider_names(pipe)
    if not names:
        raise UnsupportedPipelineError(f"{type(pipe).__name__} has no guider component to guide")
    for name in names:
        if isinstance(getattr(pipe, name), LowPassGuidance):
            raise GuidanceKitError(
                f"{type(pipe).__name__}.{name} is already a LowPassGuidance (another guide() block, or one "
                "installed by hand); guide() blocks do not nest"
            )
    run = ModularRun(pipe, recipe, layout)
    new = {name: low_pass_from(getattr(pipe, name), recipe, layout.name) for name in names}
    old = {name: getattr(pipe, name) for name in names}
    specs = {name: pipe._component_specs[name] for name in names}
    # A guider spec loaded from_pretrained has an entry in the pipeline's config, which
    # update_components rewrites: keep the entries to put them back as they were.
    config = {name: pipe.config.get(name, _MISSING) for name in names}
    kinds = {name: type(guider).__name__ for name, guider in new.items()}
    if "audio_guider" in new or any(isinstance(g, LowPassLTX2Guidance) for g in new.values()):
        # LTX-2: the loop unions the video and audio guiders' batches and prepares the video
        # guider alone, so both must be LTX2Guidance (made low-pass alike) and paired.
        if set(kinds) != {"guider", "audio_guider"} or set(kinds.values()) != {"LowPassLTX2Guidance"}:
            raise UnsupportedPipelineError(
                f"{type(pipe).__name__}: ALG on LTX-2 needs a video guider and an audio_guider, both "
                f"LTX2Guidance; got {', '.join(f'{n}: {type(getattr(pipe, n)).__name__}' for n in names)}"
            )
        new["guider"].pair(new["audio_guider"])
    for name, guider in new.items():
        guider.set_scheduler(getattr(pipe, "scheduler", None))
        if name == "audio_guider":
            # Its batches run (and are counted) in the video guider's steps; its own trace is
            # on run.guiders["audio_guider"].trace.
            guider._denoiser_name = "transformer (audio)"
        else:
            guider._denoiser_name = "transformer" + name[len("guider") :]
            guider._run = run
    run.guiders = new
    with _quiet_diffusers():
        pipe.update_components(**new)
    try:
        yield run
    finally:
        for guider in new.values():
            guider._remove_hook()
            guider._run = None
            if isinstance(guider, LowPassLTX2Guidance):
                guider.pair(None)
        with _quiet_diffusers():
            pipe.update_components(**old)
        pipe._component_specs.update(specs)
        if any(pipe.config.get(name, _MISSING) is not value for name, value in config.items()):
            from diffusers.configuration_utils import FrozenDict

            entries = {k: v for k, v in pipe.config.items() if k not in config}
            entries.update({k: v for k, v in config.items() if v is not _MISSING})
            pipe._internal_dict = FrozenDict(entries)
