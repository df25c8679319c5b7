"""Stable Video Diffusion: the image latent is repeated on every frame and concatenated on the
channel axis; the unconditional rows get zeros (and a zero CLIP embedding), so filtering them
changes nothing and ALG costs no extra pass here: eps = U + w * (C(LP I) - U) exactly."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels


class StableVideoDiffusionBackend(Backend):
    name = "svd"
    pipelines = ("StableVideoDiffusionPipeline",)
    call_style = "batched"
    batched_args = ("sample", "encoder_hidden_states", "added_time_ids")
    uncond_sees_image = False
    pixel_method = "_encode_vae_image"
    description = "Stable Video Diffusion (img2vid, img2vid-xt); per-frame guidance scale"

    def denoisers(self, pipe: Any) -> dict[str, torch.nn.Module]:
        return {"unet": pipe.unet}

    @staticmethod
    def _c(pipe: Any) -> int:
        return pipe.unet.config.in_channels // 2

    def guidance_weight(self, pipe: Any, denoiser: str) -> Any:
        return pipe._guidance_scale  # constant over the call (per frame in SVD: a tensor)

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["sample"][:, :, self._c(pipe) :].transpose(1, 2)

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        sample = args["sample"]
        return {
            **args,
            "sample": replace_channels(sample, 2, self._c(pipe), sample.shape[2], condition.transpose(1, 2)),
        }

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output.unsqueeze(2)  # [rows (zeros first with CFG), C, 1, H, W]; repeated over frames
