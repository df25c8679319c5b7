"""HunyuanVideo-I2V: embedded guidance (one pass per step) with optional true CFG (a second,
negative-prompt call). The image latent enters either by channel concat
[latents (z), image latents (z), mask (1)] or by replacing latent frame 0 ("token_replace").

SkyReels-V1 I2V (``HunyuanSkyreelsImageToVideoPipeline``) runs the same transformer with its own
layout: [latents (z), image latents (z)] on channels, no mask, z = in_channels // 2; the image
latent is on frame 0 and the later frames are zeros."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels

_HUNYUAN_ARGS = (
    "hidden_states",
    "timestep",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "pooled_projections",
    "guidance",
)


class HunyuanVideoBackend(Backend):
    name = "hunyuan-video"
    pipelines = ("HunyuanVideoImageToVideoPipeline",)
    call_style = "split"
    batched_args = _HUNYUAN_ARGS
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


class HunyuanSkyreelsBackend(Backend):
    name = "hunyuan-skyreels"
    pipelines = ("HunyuanSkyreelsImageToVideoPipeline",)
    call_style = "split"
    batched_args = _HUNYUAN_ARGS
    description = "SkyReels-V1 I2V on HunyuanVideo (channel concat, true CFG and embedded guidance)"

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.transformer.config.in_channels // 2

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, self._z(pipe) :]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"]
        return {
            **args,
            "hidden_states": replace_channels(hidden, 1, self._z(pipe), hidden.shape[1], condition),
        }

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output[1]  # prepare_latents returns (latents, image latents zero-padded after frame 0)
