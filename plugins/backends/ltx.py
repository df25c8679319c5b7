"""LTX-Video I2V: the latents are packed into a token sequence whose frame-0 tokens hold the
clean image latent (timestep t * (1 - mask) is 0 there); one batched CFG call."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels


class LTXVideoBackend(Backend):
    name = "ltx-video"
    pipelines = ("LTXImageToVideoPipeline",)
    call_style = "batched"
    batched_args = ("hidden_states", "encoder_hidden_states", "timestep", "encoder_attention_mask")
    description = "LTX-Video 0.9.x image-to-video"

    @staticmethod
    def _unpack(pipe: Any, packed: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        return pipe._unpack_latents(
            packed,
            frames,
            height,
            width,
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )

    def _video(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return self._unpack(pipe, args["hidden_states"], args["num_frames"], args["height"], args["width"])

    def guidance_weight(self, pipe: Any, denoiser: str) -> Any:
        return pipe._guidance_scale  # constant over the call

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return self._video(pipe, args)[:, :, :1]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        video = replace_channels(self._video(pipe, args), 2, 0, 1, condition)
        packed = pipe._pack_latents(
            video, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        )
        return {**args, "hidden_states": packed}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (packed latents with the image latent on frame 0, mask)
        frames = (args["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1
        height = args["height"] // pipe.vae_spatial_compression_ratio
        width = args["width"] // pipe.vae_spatial_compression_ratio
        return self._unpack(pipe, output[0], frames, height, width)[:, :, :1]


class LTX2Backend(LTXVideoBackend):
    """LTX-2 I2V: as LTX-Video (frame-0 tokens of the packed video latents hold the clean image
    latent), but the transformer returns video *and* audio predictions, and each step may add two
    conditional passes on the positive rows after the batched CFG call: spatio-temporal guidance
    (``spatio_temporal_guidance_blocks``) and modality isolation (``isolate_modalities``). The
    pipeline combines everything in x0 space, c + (w - 1)(c - u) + s (c - stg) + (m - 1)(c - mod),
    affine in the velocity predictions."""

    name = "ltx-2"
    pipelines = ("LTX2ImageToVideoPipeline",)
    batched_args = (
        "hidden_states",
        "audio_hidden_states",
        "encoder_hidden_states",
        "audio_encoder_hidden_states",
        "timestep",
        "audio_timestep",
        "sigma",
        "encoder_attention_mask",
        "audio_encoder_attention_mask",
        "video_coords",
        "audio_coords",
    )
    description = "LTX-2 image-to-video (video + audio; STG and modality-isolation passes)"
    # Video and audio have their own CFG scales, so no single w rescales both: guidance-scale
    # schedules are refused here.
    guidance_weight = Backend.guidance_weight

    def extra_pass(self, pipe: Any, args: Arguments) -> str | None:
        if args.get("spatio_temporal_guidance_blocks"):
            return "spatio-temporal guidance"
        if args.get("isolate_modalities"):
            return "modality isolation"
        return None
