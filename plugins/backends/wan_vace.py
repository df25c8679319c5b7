"""Wan VACE (``WanVACEPipeline``) used as image-to-video: the start image is frame 0 of the
conditioning ``video`` and the ``mask`` keeps frame 0 (black, 0) and generates the rest (white, 1).

The pipeline encodes the masked video in ``prepare_video_latents`` as two latents,
``inactive = vae(video * (1 - mask))`` (the kept frame: the image, zeros elsewhere, exactly Wan 2.1
I2V's image latent) and ``reactive = vae(video * mask)`` (the frames to generate), concatenates
them with the mask folded to ``vae_scale_factor_spatial ** 2`` channels, and hands the result to
the transformer as ``control_hidden_states`` ``[B, 2z + s*s, F, h, w]``: the same tensor for the
conditional and the unconditional call. One transformer call per CFG branch, conditional first
(as Wan 2.1); with ``transformer_2`` and ``boundary_ratio`` the low-noise expert takes over past the
boundary with ``guidance_scale_2``.

ALG's image condition is the inactive latent, channels ``[0, z)`` of ``control_hidden_states``
at every latent frame (the causal VAE carries the image into every frame of it); the reactive
latent and the mask channels stay as they are. ``reference_images`` (prepended latent frames) and
any mask other than "keep frame 0, generate the rest" are refused by name. Pixel space filters
frame 0 of the preprocessed video and replays ``prepare_video_latents``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from PIL import Image

from guidance_kit.backend import Arguments, recorded_call, replace_channels
from guidance_kit.errors import GuidanceKitError
from guidance_kit.plugins.backends.wan import _WanBase

_SUPPORTED = (
    "ALG supports the start image as frame 0 of video= with a mask= that keeps frame 0 (black) and "
    "generates every other frame (white), without reference_images"
)


def _frames(indices: list[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:6])
    return f"[{shown}{', ...' if len(indices) > 6 else ''}] ({len(indices)} frames)"


def _refusal(arguments: dict[str, Any]) -> str | None:
    """Why ALG cannot guide a call with these ``prepare_video_latents`` arguments exactly, or None
    for the image-to-video case: one video whose mask keeps exactly frame 0, no reference images."""
    references = arguments.get("reference_images") or []
    count = sum(len(batch) for batch in references)
    if count:
        return (
            f"reference_images: {count} reference image(s) in this call are prepended as latent frames of "
            "their own, which ALG does not filter; " + _SUPPORTED
        )
    mask = arguments.get("mask")
    if mask is None:  # the pipeline always passes one (ones where none is given)
        return "mask: none reached prepare_video_latents, so the kept frame is unknown; " + _SUPPORTED
    # The pipeline binarises the mask (> 0.5 generates) before masking the video.
    generate = mask > 0.5  # [B, C, F, H, W]
    frames = generate.shape[2]
    kept = [f for f in range(frames) if not generate[:, :, f].any()]
    made = [f for f in range(frames) if generate[:, :, f].all()]
    partial = [f for f in range(frames) if f not in kept and f not in made]
    if kept == [0] and not partial:
        return None
    if not kept and not partial:
        what = "keeps no frame (text-to-video or pure generation), so there is no image to filter"
    else:
        what = f"keeps frames {_frames(kept)} and partly keeps frames {_frames(partial)}"
    return f"mask: of {frames} frames the mask {what}; " + _SUPPORTED


class _VideoLatents:
    """``WanVACEPipeline.prepare_video_latents`` inside a guide() block: records, for each pipeline
    call, whether ALG can guide its conditioning exactly (and why not)."""

    def __init__(self, pipe: Any, inner: Callable[..., Any]):
        self.pipe, self.inner = pipe, inner
        self.signature = inspect.signature(inner)
        functools.update_wrapper(self, inner)
        self.refusal: str | None = "prepare_video_latents has not run in this guide() block"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.refusal = _refusal(bound.arguments)
        return self.inner(*args, **kwargs)


class WanVACEBackend(_WanBase):
    """``WanVACEPipeline`` as image-to-video (see the module docstring)."""

    name = "wan-vace"
    pipelines = ("WanVACEPipeline",)
    batched_args = ("hidden_states", "timestep", "encoder_hidden_states", "control_hidden_states")
    pixel_method = "prepare_video_latents"
    pixel_image_args = ("video",)  # the preprocessed video [1, 3, F, H, W] in [-1, 1]
    description = (
        "Wan VACE (WanVACEPipeline) as I2V: the image as frame 0 of video= with a mask keeping frame 0; "
        "transformer_2 past boundary_ratio"
    )

    def wraps(self, pipe: Any) -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
        return {"prepare_video_latents": functools.partial(_VideoLatents, pipe)}

    def image_arguments(self, pipe: Any, image: Any, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``video=`` (the image resized to the call's ``width`` x ``height``, then grey frames) and
        ``mask=`` (black on frame 0, white on the rest) for the call's ``num_frames``, as in diffusers'
        own VACE example; sizes the call does not give are the pipeline's defaults."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(pipe).__call__).parameters.items()
        }
        call = call or {}
        height, width, frames = (call.get(k, defaults[k]) for k in ("height", "width", "num_frames"))
        t = pipe.vae_scale_factor_temporal
        if frames % t != 1:  # the pipeline rounds num_frames the same way before it reads the video
            frames = frames // t * t + 1
        frames = max(frames, 1)
        first = image.convert("RGB").resize((width, height))
        grey = Image.new("RGB", (width, height), (128, 128, 128))
        video = [first, *[grey] * (frames - 1)]
        mask = [Image.new("L", (width, height), 0), *[Image.new("L", (width, height), 255)] * (frames - 1)]
        return {"video": video, "mask": mask}

    def _control(self, pipe: Any, args: Arguments) -> torch.Tensor:
        recorded_call(self.name, pipe, "prepare_video_latents", _VideoLatents)
        control = args.get("control_hidden_states")
        hidden = args["hidden_states"]
        expected = 2 * self._z(pipe) + pipe.vae_scale_factor_spatial**2
        if (
            not isinstance(control, torch.Tensor)
            or control.ndim != 5
            or control.shape[1] != expected
            or control.shape[2] != hidden.shape[2]
        ):
            shape = None if not isinstance(control, torch.Tensor) else tuple(control.shape)
            raise GuidanceKitError(
                f"{self.name}: control_hidden_states of shape {shape} is not [inactive z, reactive z, mask "
                f"{pipe.vae_scale_factor_spatial**2}] channels over the {hidden.shape[2]} latent frames"
            )
        return control

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return self._control(pipe, args)[:, : self._z(pipe)]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        control = self._control(pipe, args)
        return {**args, "control_hidden_states": replace_channels(control, 1, 0, self._z(pipe), condition)}

    def filter_pixel_image(
        self, pipe: Any, image: Any, args: Arguments, lowpass: Callable[[torch.Tensor], torch.Tensor]
    ) -> Any:
        # Only frame 0 (the kept image); the frames to generate reach the reactive latent unchanged.
        return replace_channels(image, 2, 0, 1, lowpass(image[:, :, :1]))

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_video_latents returns [inactive z, reactive z] over the latent frames
        return output[:, : self._z(pipe)]
