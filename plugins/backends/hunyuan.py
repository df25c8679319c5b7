"""HunyuanVideo-I2V: embedded guidance (one pass per step) with optional true CFG (a second,
negative-prompt call). The image latent enters either by channel concat
[latents (z), image latents (z), mask (1)] or by replacing latent frame 0 ("token_replace")."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels


class HunyuanVideoBackend(Backend):
    name = "hunyuan-video"
    pipelines = ("HunyuanVideoImageToVideoPipeline",)
    call_style = "split"
    batched_args = (
        "hidden_states",
        "timestep",
        "encoder_hidden_states",
        "encoder_attention_mask",
        "pooled_projections",
        "guidance",
    )
    description = "HunyuanVideo-I2V (latent_concat and token_replace variants)"

    @staticmethod
    def _layout(pipe: Any) -> tuple[str, int]:
        return pipe.transformer.config.image_condition_type, pipe.vae.config.latent_channels

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        kind, z = self._layout(pipe)
        hidden = args["hidden_states"]
        return hidden[:, z : 2 * z] if kind == "latent_concat" else hidden[:, :, :1]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        kind, z = self._layout(pipe)
        hidden = args["hidden_states"]
        if kind == "latent_concat":
            return {**args, "hidden_states": replace_channels(hidden, 1, z, 2 * z, condition)}
        return {**args, "hidden_states": replace_channels(hidden, 2, 0, 1, condition)}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        kind, _ = self._layout(pipe)
        image_latents = output[1]
        if kind == "latent_concat":  # the pipeline zeroes every frame but the first afterwards
            first = image_latents[:, :, :1]
            return torch.cat([first, torch.zeros_like(image_latents[:, :, 1:])], dim=2)
        return image_latents
