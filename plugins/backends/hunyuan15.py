"""HunyuanVideo 1.5 I2V: ``hidden_states`` is [latents (z), image latent condition (z, frame 0,
zeros after), mask (1)] on channels, and a SigLIP embedding of the image goes in as
``image_embeds``. A diffusers guider drives the loop: one transformer call per guider batch,
conditional first, each inside its own cache context; CFG can be on or off per step (the
guider's ``start``/``stop``).

The pipeline stores each call's output as it is (no copy) and the guider combines them after
the last call of the step, so ALG's correction is written into the conditional prediction the
pipeline holds (``cond_inplace``), exact for any affine combination u + a (c - u)."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, filter_raw_image, guider_weight, replace_channels


class HunyuanVideo15Backend(Backend):
    name = "hunyuan-video-1.5"
    pipelines = ("HunyuanVideo15ImageToVideoPipeline",)
    call_style = "split"
    split_order = ("cond", "uncond")  # ClassifierFreeGuidance's batches: pred_cond, pred_uncond
    correction = "cond_inplace"
    batched_args = (
        "hidden_states",
        "timestep",
        "timestep_r",
        "encoder_hidden_states",
        "encoder_attention_mask",
        "encoder_hidden_states_2",
        "encoder_attention_mask_2",
        "image_embeds",
    )
    pixel_method = "prepare_cond_latents_and_mask"
    pixel_image_args = ("image",)
    description = "HunyuanVideo 1.5 image-to-video (channel concat; classifier-free guidance guider)"

    def guidance_weight(self, pipe: Any, denoiser: str) -> float:
        return guider_weight(self.name, pipe.guider)

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.vae.config.latent_channels

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        guider_weight(self.name, pipe.guider)  # refuses a guider that is not affine
        z = self._z(pipe)
        return args["hidden_states"][:, z : 2 * z]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        z = self._z(pipe)
        return {**args, "hidden_states": replace_channels(args["hidden_states"], 1, z, 2 * z, condition)}

    filter_pixel_image = staticmethod(filter_raw_image)  # the method gets the (resized) PIL image

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output[0]  # (latent condition [b, z, F, h, w] with zeros after frame 0, mask)
