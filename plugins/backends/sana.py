"""Sana-Video I2V: latent frame 0 is the clean image latent (its timestep t * (1 - mask) is 0),
frames 1: are stepped; one batched CFG call holds the unconditional rows then the conditional
rows."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels


class SanaVideoBackend(Backend):
    name = "sana-video"
    pipelines = ("SanaImageToVideoPipeline",)
    call_style = "batched"
    batched_args = ("hidden_states", "encoder_hidden_states", "encoder_attention_mask", "timestep")
    description = "Sana-Video image-to-video (frame-0 image latent; learned-sigma outputs folded whole)"

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, :, :1]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        return {**args, "hidden_states": replace_channels(args["hidden_states"], 2, 0, 1, condition)}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output[:, :, :1]  # prepare_latents returns the latents with the image latent on frame 0
