"""HunyuanVideo 1.5 I2V: ``hidden_states`` is [latents (z), image latent condition (z, frame 0,
zeros after), mask (1)] on channels, and a SigLIP embedding of the image goes in as
``image_embeds``. A diffusers guider drives the loop: one transformer call per guider batch,
conditional first, each inside its own cache context; CFG can be on or off per step (the
guider's ``start``/``stop``).

The pipeline stores each call's output as it is (no copy) and the guider combines them after
the last call of the step, so ALG's correction is written into the conditional prediction the
pipeline holds (``cond_inplace``), exact for any affine combination u + a (c - u)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels
from guidance_kit.errors import GuidanceKitError


def check_affine_guider(backend: str, guider: Any) -> None:
    """Refuse a guider whose combination is not u + a (c - u) of two predictions: ALG's fold
    would not give U(I) + a (C(LP I) - U(LP I)) through it."""
    if type(guider).__name__ != "ClassifierFreeGuidance" or getattr(guider, "guidance_rescale", 0) > 0:
        raise GuidanceKitError(
            f"{backend}: ALG needs the guider's combination to be affine (ClassifierFreeGuidance without "
            f"guidance_rescale), got {type(guider).__name__} "
            f"(guidance_rescale={getattr(guider, 'guidance_rescale', None)})"
        )


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
        guider = pipe.guider
        check_affine_guider(self.name, guider)
        w = guider.guidance_scale
        return 1.0 + w if guider.use_original_formulation else w  # c + w (c - u) = u + (1 + w)(c - u)

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.vae.config.latent_channels

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        check_affine_guider(self.name, pipe.guider)
        z = self._z(pipe)
        return args["hidden_states"][:, z : 2 * z]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        z = self._z(pipe)
        return {**args, "hidden_states": replace_channels(args["hidden_states"], 1, z, 2 * z, condition)}

    def filter_pixel_image(
        self, pipe: Any, image: Any, args: Arguments, lowpass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        # The method receives the (resized) PIL image and preprocesses it itself. Hand it the
        # filtered image as a [0, 1] tensor, which it normalises like an image (a tensor below 0
        # would skip normalisation).
        pixels = pipe.video_processor.preprocess(image, height=args["height"], width=args["width"])
        return lowpass((pixels.to(args["dtype"]) + 1) / 2).clamp(0, 1)

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output[0]  # (latent condition [b, z, F, h, w] with zeros after frame 0, mask)
