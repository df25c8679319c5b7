"""Kandinsky 6 text/image-to-video-and-audio (``Kandinsky6TI2VAPipeline``).

The video latents are channels last, ``[B, F + 1, h, w, C + C + 1]``: the clean image latent is
appended as an extra tail frame (rotary position 0, token type 1, mask channel 1), rewritten
before every step; the C "conditioning latent" channels are always zero. The transformer returns
a video *and* an audio prediction (``(sample, audio_sample)``); the pipeline runs one call per CFG
branch, conditional first, holds the conditional tuple and combines u + w (c - u) on both outputs
afterwards. The controller corrects every batch-shaped output of a call, so both the video and
the audio prediction get U(I) - U(LP I). The audio scheduler is a ``copy.deepcopy`` of
``pipe.scheduler``: the step clock's taps come off in the copy, so only the video scheduler counts
steps.

Text-to-video calls (no ``image``) have no image condition: they are refused when a step needs it.
"""

from __future__ import annotations

from typing import Any

import PIL.Image
import torch

from guidance_kit.backend import Arguments, Backend
from guidance_kit.errors import GuidanceKitError

_SUPPORTED = "supported: image-to-video(-and-audio) calls with image= (the reference image on the tail frame)"


class Kandinsky6Backend(Backend):
    name = "kandinsky6"
    pipelines = ("Kandinsky6TI2VAPipeline",)
    call_style = "split"
    batched_args = (
        "hidden_states",
        "audio_hidden_states",
        "encoder_hidden_states",
        "pooled_projections",
        "timestep",
        "encoder_attention_mask",
        "visual_token_type_ids",
    )
    pixel_method = "encode_image"
    pixel_image_args = ("image",)
    description = (
        "Kandinsky 6 image-to-video-and-audio (tail-frame image latent, channels last; video + audio)"
    )

    @staticmethod
    def _c(pipe: Any) -> int:
        return pipe.transformer.config.in_visual_dim

    def _check(self, pipe: Any, args: Arguments) -> None:
        """Refuses a denoiser call without the image tail frame (text-to-video: ``image=None``)."""
        types = args.get("visual_token_type_ids")
        hidden = args["hidden_states"]
        c = self._c(pipe)
        if (
            types is None
            or not bool((types[:, -1] == 1).all())
            or hidden.shape[-1] != 2 * c + 1
            or not bool((hidden[:, -1, :, :, -1] == 1).all())
        ):
            raise GuidanceKitError(
                "kandinsky6: image=None (a text-to-video call: no clean image latent on the tail frame) has "
                f"no image condition to low-pass; {_SUPPORTED}"
            )

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        self._check(pipe, args)
        return args["hidden_states"][:, -1:, :, :, : self._c(pipe)].permute(0, 4, 1, 2, 3)

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"].clone()
        hidden[:, -1:, :, :, : self._c(pipe)] = condition.permute(0, 2, 3, 4, 1)
        return {**args, "hidden_states": hidden}

    def filter_pixel_image(self, pipe: Any, image: Any, args: Arguments, lowpass: Any) -> torch.Tensor:
        """``encode_image`` preprocesses the raw image itself (PIL: resized and centre-cropped): the
        same preprocessing here, then the low-passed image as a [0, 1] tensor of the call's size,
        which ``encode_image`` normalises without resizing (clamped: a tensor with values below 0,
        as filter ringing makes, would skip the normalisation)."""
        if image is None:
            raise GuidanceKitError(
                f"kandinsky6: pixel space: image=None has no image to low-pass; {_SUPPORTED}"
            )
        is_pil = isinstance(image, PIL.Image.Image) or (
            isinstance(image, list) and len(image) > 0 and isinstance(image[0], PIL.Image.Image)
        )
        pixels = pipe.video_processor.preprocess(
            image, height=args["height"], width=args["width"], resize_mode="crop" if is_pil else "default"
        )
        return lowpass((pixels.to(args["dtype"]) + 1) / 2).clamp(0, 1)

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output.permute(0, 3, 1, 2).unsqueeze(2)  # [b, h, w, C] -> [b, C, 1, h, w]
