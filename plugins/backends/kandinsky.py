"""Kandinsky 5 I2V: channels-last latents ``[B, F, h, w, C (+ C zeros + 1 mask)]`` whose frame 0
holds the clean image latent (only frames 1: are stepped); one transformer call per CFG branch,
conditional first, each with its own text positions."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, filter_raw_image
from guidance_kit.errors import GuidanceKitError


class Kandinsky5Backend(Backend):
    name = "kandinsky5"
    pipelines = ("Kandinsky5I2VPipeline",)
    call_style = "split"
    batched_args = ("hidden_states", "encoder_hidden_states", "timestep", "pooled_projections")
    description = "Kandinsky 5 image-to-video (frame-0 image latent, channels last)"

    @staticmethod
    def _c(pipe: Any) -> int:
        return pipe.transformer.config.in_visual_dim

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, :1, :, :, : self._c(pipe)].permute(0, 4, 1, 2, 3)

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"].clone()
        hidden[:, :1, :, :, : self._c(pipe)] = condition.permute(0, 2, 3, 4, 1)
        return {**args, "hidden_states": hidden}

    filter_pixel_image = staticmethod(filter_raw_image)  # prepare_latents gets the raw image

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        if args.get("latents") is not None:
            raise GuidanceKitError(
                "pixel space: Kandinsky5I2VPipeline encodes no image when latents are given; use latent space"
            )
        return output[:, :1, :, :, : self._c(pipe)].permute(0, 4, 1, 2, 3)
