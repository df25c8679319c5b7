"""Motif-Video I2V: ``hidden_states`` is [latents (z), image latent condition (z, frame 0, zeros
after), mask (1)] on channels. A diffusers guider drives the loop: one transformer call per
guider batch, conditional first, each output ``.clone()``d before the guider combines them, so
ALG's correction goes through the unconditional prediction."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, guider_weight, replace_channels


class MotifVideoBackend(Backend):
    name = "motif-video"
    pipelines = ("MotifVideoImage2VideoPipeline",)
    call_style = "split"
    correction = "uncond_affine"
    batched_args = (
        "hidden_states",
        "timestep",
        "encoder_hidden_states",
        "encoder_attention_mask",
        "image_embeds",
    )
    pixel_method = "_prepare_first_frame_conditioning"
    pixel_image_args = ("video",)
    description = "Motif-Video image-to-video (channel concat; classifier-free guidance guider)"

    def guidance_weight(self, pipe: Any, denoiser: str) -> float:
        return guider_weight(self.name, pipe.guider)

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.vae.config.z_dim

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        z = self._z(pipe)
        return args["hidden_states"][:, z : 2 * z]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        z = self._z(pipe)
        return {**args, "hidden_states": replace_channels(args["hidden_states"], 1, z, 2 * z, condition)}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output[0]  # (latent condition, mask, image embeds)
