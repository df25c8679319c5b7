"""Backends: small adapters that tell the controller where a pipeline's denoiser sees the image.

The controller (``guidance_kit.controller``) does everything that is common: step tracking,
schedules, filtering, caching, extra passes and the guidance combination. A backend only
answers pipeline-specific questions:

* which modules are the denoisers (Wan 2.2 A14B has two experts);
* how one denoiser call is laid out: ``"batched"`` (one call holds the unconditional rows then
  the conditional rows, as in CogVideoX, LTX-Video and SVD) or ``"split"`` (one call per branch,
  in ``split_order``: conditional first in Wan and HunyuanVideo's true CFG);
* for split backends, how the correction reaches the pipeline's combination: in place on the
  conditional prediction the pipeline holds (``"cond_inplace"``), or, where the pipeline copies
  that prediction before the unconditional call, through the unconditional prediction
  (``"uncond_affine"``, which needs the scale the pipeline applies: :meth:`guidance_weight`);
* how many ``scheduler.step`` calls make one denoising step;
* which denoiser calls are extra conditional passes beyond the CFG pair (LTX-2's
  spatio-temporal guidance and modality-isolation calls): :meth:`extra_pass`;
* how to read and replace the VAE-latent image condition inside the call's arguments, in a
  canonical ``[rows, C, F, H, W]`` layout;
* for pixel space, which pipeline method encodes the preprocessed image and how to read the
  image condition from what it returns;
* which pipeline methods it wraps for the length of the block to learn what the denoiser's
  arguments do not carry (:meth:`wraps`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch

from guidance_kit.errors import GuidanceKitError, UnsupportedPipelineError

Arguments = dict[str, Any]


class Backend:
    """Base class of pipeline adapters; subclasses set the class attributes and override the
    condition accessors."""

    name: ClassVar[str]
    #: Pipeline class names this backend guides (shown in "unsupported pipeline" errors).
    pipelines: ClassVar[tuple[str, ...]] = ()
    call_style: ClassVar[Literal["batched", "split"]] = "batched"
    #: Split backends: the CFG branch of each denoiser call within a step, in call order.
    split_order: ClassVar[tuple[Literal["uncond", "cond"], ...]] = ("cond", "uncond")
    #: Split backends: where the mode's correction goes (see the module docstring).
    correction: ClassVar[Literal["cond_inplace", "uncond_affine"]] = "cond_inplace"
    #: ``scheduler.step`` calls per denoising step (pipelines that step twice per step say 2).
    step_calls_per_step: ClassVar[int] = 1
    #: What ends a denoising step: ``step_calls_per_step`` calls of ``pipe.scheduler.step``
    #: (``"scheduler"``), or the step's denoiser calls, one per CFG branch (``"denoiser"``: pipelines
    #: that never step ``pipe.scheduler`` itself, such as diffusion forcing's per-frame copies; the
    #: loop's length is then :meth:`loop_length`).
    step_clock: ClassVar[Literal["scheduler", "denoiser"]] = "scheduler"
    #: False where the denoiser takes no more rows than the pipeline gives it (SkyReels-V2 DF's fps
    #: embedding broadcasts over one row only): extra passes then always run as calls of their own.
    merge_passes: ClassVar[bool] = True
    #: Argument names whose first axis is the batch (rows); they are sliced and concatenated
    #: when the controller builds extra passes.
    batched_args: ClassVar[tuple[str, ...]] = ()
    #: False where the unconditional branch gets a null image condition (SVD: zeros), so
    #: filtering it changes nothing and ALG needs no extra pass.
    uncond_sees_image: ClassVar[bool] = True
    #: Pipeline method that encodes the preprocessed image (pixel space), and its image arguments.
    pixel_method: ClassVar[str] = "prepare_latents"
    pixel_image_args: ClassVar[tuple[str, ...]] = ("image",)
    #: True where a pipeline call runs ``pixel_method`` for more than one image before its loop
    #: (Framepack's end keyframe): the first call after the last denoising loop began is the
    #: image condition, and later ones are let through unrecorded.
    pixel_first_call: ClassVar[bool] = False
    #: Why this backend cannot filter in pixel space (``space="pixel"`` is then refused before
    #: anything is attached), or None where it can.
    pixel_refusal: ClassVar[str | None] = None
    #: The models and variants this backend guides, in words (listed by ``guidance-kit recipes``).
    description: ClassVar[str] = ""

    def matches(self, pipe: Any) -> bool:
        return type(pipe).__name__ in self.pipelines

    def denoisers(self, pipe: Any) -> dict[str, torch.nn.Module]:
        """Denoiser modules by pipeline attribute name."""
        return {"transformer": pipe.transformer}

    def cfg_active(self, pipe: Any) -> bool:
        """Whether the current pipeline call runs classifier-free guidance."""
        return bool(getattr(pipe, "do_classifier_free_guidance", False))

    def loop_length(self, pipe: Any, scheduled: int) -> int:
        """The number of denoising steps of the loop that ``set_timesteps`` began with ``scheduled``
        timesteps, read at the loop's first denoiser call (diffusion forcing: its iterations)."""
        return scheduled

    def guidance_weight(self, pipe: Any, denoiser: str) -> float | torch.Tensor:
        """The scale a in the pipeline's u + a * (c - u) for the current call of ``denoiser``
        (needed by ``correction = "uncond_affine"`` and by guidance-scale schedules)."""
        raise UnsupportedPipelineError(
            f"backend {self.name!r} cannot read the guidance scale {type(pipe).__name__} applies, which "
            "guidance-scale schedules and its correction need"
        )

    @classmethod
    def reads_guidance_weight(cls) -> bool:
        return cls.guidance_weight is not Backend.guidance_weight

    def extra_pass(self, pipe: Any, args: Arguments) -> str | None:
        """A name for a denoiser call that is an extra conditional pass of the step (after its CFG
        call or calls, on the conditional rows only, combined by the pipeline as c - extra), else
        None. Such a pass gets the image the mode's conditional prediction saw and the same shift
        the mode applied to that prediction, so every c - extra term is the one of that image."""
        return None

    @classmethod
    def has_extra_passes(cls) -> bool:
        return cls.extra_pass is not Backend.extra_pass

    def wraps(self, pipe: Any) -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
        """Pipeline methods this backend wraps while a guide() block is attached, by name: each
        value takes the pipeline's method and returns its wrapper (LTXCondition records the clean
        initial latents of the call). The controller installs them after its own wrappers, so a
        pixel-space replay calls the method unwrapped, and removes them on exit, also after an
        error. What a wrapper records lives in the wrapper (``vars(pipe)[name]`` inside the
        block), never on the backend, which every guide() block shares."""
        return {}

    def image_arguments(self, pipe: Any, image: Any, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The call arguments that hand ``image`` (PIL) to the pipeline as its conditioning image.
        ``call`` holds the call's other arguments (None where unknown), for pipelines that build
        inputs of the call's size from the image (Wan VACE's video and mask)."""
        return {"image": image}

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        """The image condition inside a denoiser call, as ``[rows, C, F, H, W]``."""
        raise NotImplementedError

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        """A copy of ``args`` with the image condition replaced (same layout as get_condition)."""
        raise NotImplementedError

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        """The image condition, ``[b, C, F, H, W]``, from what ``pixel_method`` returned when
        called with ``args``. F may be 1 where the denoiser repeats it over frames."""
        raise NotImplementedError

    def filter_pixel_image(
        self, pipe: Any, image: Any, args: Arguments, lowpass: Callable[[torch.Tensor], torch.Tensor]
    ) -> Any:
        """The image argument ``image`` of ``pixel_method`` (called with ``args``) low-passed by
        ``lowpass``; pipelines whose method takes raw (PIL) images convert them here."""
        return lowpass(image)

    def match_pixel_condition(
        self, pipe: Any, encoded: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """The pixel-space condition ``encoded`` fitted to the frames of ``condition`` (the one in
        the current denoiser call), for pipelines that drop latent frames mid-loop."""
        return encoded

    def describe(self) -> str:
        return f"{self.name}: {', '.join(self.pipelines)}"


# Helpers shared by backends ---------------------------------------------------------------------


def recorded_call(backend: str, pipe: Any, method: str, wrapper: type) -> Any:
    """The wrapper of ``pipe.<method>`` (installed through :meth:`Backend.wraps`) that recorded
    what this pipeline call conditions on; refuses a call the wrapper found ALG cannot guide
    exactly (its ``refusal``), naming the backend."""
    capture = vars(pipe).get(method)
    if not isinstance(capture, wrapper):
        raise GuidanceKitError(
            f"{backend}: {method} is not the backend's wrapper inside this guide() block (was it "
            "replaced after guide() began?), so the call's conditions are unknown"
        )
    if capture.refusal is not None:
        raise GuidanceKitError(f"{backend}: {capture.refusal}")
    return capture


def replace_channels(x: torch.Tensor, dim: int, start: int, stop: int, part: torch.Tensor) -> torch.Tensor:
    """``x`` with ``x[..., start:stop, ...]`` along ``dim`` replaced by ``part``."""
    size = x.shape[dim]
    pieces = [x.narrow(dim, 0, start), part.to(x.dtype), x.narrow(dim, stop, size - stop)]
    return torch.cat([p for p in pieces if p.shape[dim] > 0], dim=dim)


def guider_weight(backend: str, guider: Any) -> float:
    """The scale a in u + a (c - u) that a diffusers ``ClassifierFreeGuidance`` guider applies
    (w, or 1 + w for its original formulation c + w (c - u)). Any other guider, or one with
    ``guidance_rescale``, is refused: its combination is not affine, so ALG's fold would not give
    U(I) + a (C(LP I) - U(LP I)) through it."""
    if type(guider).__name__ != "ClassifierFreeGuidance" or getattr(guider, "guidance_rescale", 0) > 0:
        raise GuidanceKitError(
            f"{backend}: ALG needs the guider's combination to be affine (ClassifierFreeGuidance without "
            f"guidance_rescale), got {type(guider).__name__} "
            f"(guidance_rescale={getattr(guider, 'guidance_rescale', None)})"
        )
    w = guider.guidance_scale
    return 1.0 + w if guider.use_original_formulation else w


def filter_raw_image(
    pipe: Any, image: Any, args: Arguments, lowpass: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """For a pixel method that takes the raw (PIL) image and preprocesses it itself: the image
    low-passed as a [0, 1] tensor, which it normalises like an image (a tensor with values below
    0, as filter ringing makes, would skip normalisation: hence the clamp)."""
    pixels = pipe.video_processor.preprocess(image, height=args["height"], width=args["width"])
    return lowpass((pixels.to(args["dtype"]) + 1) / 2).clamp(0, 1)
