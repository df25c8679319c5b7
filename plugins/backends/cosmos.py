"""Cosmos-Predict2 Video2World: the conditioning latent frames (the image, or the first video
frames) replace the leading frames of ``hidden_states`` with their clean latents, at their own
small timestep, and the ``condition_mask`` argument marks them. One transformer call per CFG
branch, conditional first.

The pipeline converts the conditional prediction to x0 (a copy) before the unconditional call
and combines c + w * (c - u) = u + (1 + w) * (c - u) in x0 space. The x0 conversion is affine in
the prediction with the same coefficients for both branches, and the conditioning frames are
overwritten with the clean latents after it, so ALG's correction goes through the unconditional
prediction with a = 1 + w and stays exact on every generated frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels
from guidance_kit.errors import GuidanceKitError


class Cosmos2Backend(Backend):
    name = "cosmos2"
    pipelines = ("Cosmos2VideoToWorldPipeline",)
    call_style = "split"
    correction = "uncond_affine"
    batched_args = ("hidden_states", "timestep", "encoder_hidden_states", "condition_mask")
    pixel_image_args = ("video",)
    description = "Cosmos-Predict2 Video2World (image or video conditioning frames; x0-space CFG)"

    def guidance_weight(self, pipe: Any, denoiser: str) -> float:
        return 1.0 + pipe.guidance_scale

    @staticmethod
    def _frames(indicator: torch.Tensor) -> int:
        """The number of conditioning latent frames, from a [B, 1, T, ...] 0/1 frame mask."""
        return int(indicator[0, 0, :].flatten(1).amax(dim=1).sum())

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, :, : self._frames(args["condition_mask"])]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"]
        frames = self._frames(args["condition_mask"])
        return {**args, "hidden_states": replace_channels(hidden, 2, 0, frames, condition)}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (latents, clean latents of the padded video, cond indicator, ...)
        return output[1][:, :, : self._frames(output[2])]


class Cosmos25Backend(Cosmos2Backend):
    """Cosmos-Predict2.5 (``Cosmos2_5_PredictBasePipeline``): as Cosmos 2, the conditioning latent
    frames replace the leading frames of ``hidden_states`` (``condition_mask`` marks them, at
    timestep ``conditional_frame_timestep``), one call per CFG branch, conditional first. The
    predictions are velocities whose conditioning frames the pipeline overwrites with the
    ground-truth velocity (a copy), and it combines c + w * (c - u) = u + (1 + w) * (c - u)."""

    name = "cosmos2.5"
    pipelines = ("Cosmos2_5_PredictBasePipeline",)
    description = "Cosmos-Predict2.5 Image2World / Video2World (velocity-space CFG c + w (c - u))"

    def image_arguments(self, pipe: Any, image: Any, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
        # Its image= path converts with torchvision; a one-frame video= conditions on the same
        # latent frame (the VAE is causal: latent frame 0 sees pixel frame 0 only) without it.
        return {"video": [image]}

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        if self._frames(args["condition_mask"]) == 0:
            raise GuidanceKitError(
                "cosmos2.5: this call has no conditioning frames (Text2World), so there is no image to "
                "filter; pass image= or video= to guide it"
            )
        return super().get_condition(pipe, args)

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (latents, clean latents of the padded video, cond mask, cond indicator)
        return output[1][:, :, : self._frames(output[3])]
