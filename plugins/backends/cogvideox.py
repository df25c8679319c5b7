"""CogVideoX I2V: image latents concatenated on the channel axis (dim 2 of [B, F, C, H, W]);
one batched call holds the unconditional rows then the conditional rows."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels


class CogVideoXBackend(Backend):
    name = "cogvideox"
    pipelines = ("CogVideoXImageToVideoPipeline",)
    call_style = "batched"
    batched_args = ("hidden_states", "encoder_hidden_states", "timestep")
    description = "CogVideoX-5B-I2V and CogVideoX1.5-5B-I2V"

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.transformer.config.in_channels // 2

    def cfg_active(self, pipe: Any) -> bool:
        # CogVideoX keeps CFG in a local variable (guidance_scale > 1); the controller reads the
        # scale at the first denoiser call, before use_dynamic_cfg updates it.
        return pipe.guidance_scale > 1.0

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, :, self._z(pipe) :].transpose(1, 2)  # -> [rows, C, F, H, W]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"]
        z = self._z(pipe)
        return {
            **args,
            "hidden_states": replace_channels(hidden, 2, z, hidden.shape[2], condition.transpose(1, 2)),
        }

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output[1].transpose(1, 2)  # prepare_latents returns (latents, image_latents [B, F, C, H, W])
