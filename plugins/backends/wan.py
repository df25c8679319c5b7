"""Wan 2.1 I2V (and SkyReels-V2 I2V), Wan 2.2 A14B I2V (two experts) and Wan 2.2 TI2V-5B
(``expand_timesteps``).

ChronoEdit (``ChronoEditPipeline``, an image-editing model) has the Wan 2.1 layout too.

All run ``WanImageToVideoPipeline`` (or SkyReels' copy of it): one transformer call per CFG branch, conditional
first. Wan 2.1 and 2.2 A14B concatenate [noisy latents (z), mask (4), image latents (z)] on the
channel axis; the image latents are the last z channels. TI2V-5B instead replaces latent frame 0
with the clean image latent. The CLIP image embedding (Wan 2.1) is left as it is.
"""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels

_WAN_ARGS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image")


class _WanBase(Backend):
    pipelines = ("WanImageToVideoPipeline",)
    call_style = "split"
    batched_args = _WAN_ARGS
    pixel_image_args = ("image", "last_image")

    def denoisers(self, pipe: Any) -> dict[str, torch.nn.Module]:
        found = {"transformer": pipe.transformer, "transformer_2": getattr(pipe, "transformer_2", None)}
        return {name: module for name, module in found.items() if module is not None}

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.vae.config.z_dim

    def guidance_weight(self, pipe: Any, denoiser: str) -> float:
        # Wan 2.2 A14B's low-noise expert applies guidance_scale_2 (the pipeline fills it in).
        if denoiser == "transformer_2" and getattr(pipe, "_guidance_scale_2", None) is not None:
            return pipe._guidance_scale_2
        return pipe._guidance_scale


class _WanChannelConcat(_WanBase):
    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, -self._z(pipe) :]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"]
        channels = hidden.shape[1]
        return {
            **args,
            "hidden_states": replace_channels(hidden, 1, channels - self._z(pipe), channels, condition),
        }

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (latents, concat([mask, image latents]))
        return output[1][:, -self._z(pipe) :]


class Wan21Backend(_WanChannelConcat):
    name = "wan2.1"
    pipelines = ("WanImageToVideoPipeline", "SkyReelsV2ImageToVideoPipeline")
    description = "Wan 2.1 I2V (14B, 480p / 720p) and SkyReels-V2 I2V (the same layout)"

    def matches(self, pipe: Any) -> bool:
        config = getattr(pipe, "config", {})
        return (
            super().matches(pipe)
            and config.get("boundary_ratio") is None
            and not config.get("expand_timesteps", False)
        )


class ChronoEditBackend(_WanChannelConcat):
    name = "chronoedit"
    pipelines = ("ChronoEditPipeline",)
    description = (
        "ChronoEdit-14B image editing (Wan 2.1 I2V layout; temporal reasoning frames dropped mid-loop)"
    )

    def match_pixel_condition(
        self, pipe: Any, encoded: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        # With temporal reasoning the pipeline keeps latent frames [0, -1] after
        # num_temporal_reasoning_steps; the pixel-space condition keeps the same two.
        return encoded if encoded.shape[2] == condition.shape[2] else encoded[:, :, [0, -1]]


class Wan22A14BBackend(_WanChannelConcat):
    name = "wan2.2-a14b"
    description = "Wan 2.2 A14B I2V: high-noise transformer, then transformer_2 past boundary_ratio"

    def matches(self, pipe: Any) -> bool:
        config = getattr(pipe, "config", {})
        return super().matches(pipe) and config.get("boundary_ratio") is not None


class Wan22TI2VBackend(_WanBase):
    name = "wan2.2-ti2v"
    description = "Wan 2.2 TI2V-5B: latent frame 0 is the clean image latent (expand_timesteps)"

    def matches(self, pipe: Any) -> bool:
        config = getattr(pipe, "config", {})
        return super().matches(pipe) and bool(config.get("expand_timesteps", False))

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, :, :1]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        return {**args, "hidden_states": replace_channels(args["hidden_states"], 2, 0, 1, condition)}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (latents, image latent [B, z, 1, h, w], first_frame_mask)
        return output[1]
