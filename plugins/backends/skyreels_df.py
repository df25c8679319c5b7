"""SkyReels-V2 diffusion forcing I2V: the image's clean latent is latent frame 0 of
``hidden_states`` (timestep 0 there, never stepped), and with ``last_image`` that image's latent is
the last frame in the final chunk. Every frame has its own timestep (``timestep`` is
``[rows, frames]``, a row of the pipeline's step matrix) and its own scheduler, a deep copy of
``pipe.scheduler`` stepped per frame: ``pipe.scheduler`` itself is never stepped, so the step clock
counts denoiser calls (one per CFG branch, conditional first) and a loop is one chunk's
iterations, the rows of its step matrix.

ALG runs in the first chunk, the one conditioned on the image. Long videos (``overlap_history``)
continue in chunks conditioned on the previous chunk's latents, not on the image: the clock's
loop ends with the first chunk, and later chunks run as the plain pipeline (see
``docs/backends/skyreels-v2-df.md``)."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend
from guidance_kit.errors import GuidanceKitError


class SkyReelsV2DFBackend(Backend):
    name = "skyreels-v2-df"
    pipelines = ("SkyReelsV2DiffusionForcingImageToVideoPipeline",)
    call_style = "split"
    step_clock = "denoiser"
    merge_passes = False  # the transformer's fps embedding broadcasts over one row only
    batched_args = ("hidden_states", "timestep", "encoder_hidden_states")
    pixel_image_args = ("image", "last_image")
    description = "SkyReels-V2 diffusion forcing I2V (clean image latent on frame 0; per-frame timesteps)"

    def loop_length(self, pipe: Any, scheduled: int) -> int:
        return pipe._num_timesteps  # the rows of the step matrix, set before the loop

    def guidance_weight(self, pipe: Any, denoiser: str) -> float:
        return pipe._guidance_scale

    @staticmethod
    def _frames(pipe: Any, args: Arguments) -> list[int]:
        """The latent frames that hold a clean image latent: frame 0 (the image) and, with
        ``last_image``, the last one. Both have timestep 0; a generated last frame never has (it
        finishes with the loop)."""
        timestep = args["timestep"]
        if pipe.transformer.config.num_frame_per_block > 1:
            raise GuidanceKitError(
                "skyreels-v2-df: with causal_block_size > 1 the pipeline denoises the image's latent frame "
                "together with its block (one prefix frame is not a whole block), so there is no clean image "
                "condition to filter; use causal_block_size=1"
            )
        if bool((timestep[:, 0] != 0).any()):
            raise GuidanceKitError(
                "skyreels-v2-df: addnoise_condition > 0 noises the image's latent frame inside the pipeline "
                "with fresh random noise every step; ALG filters the clean image and cannot separate that "
                "noise from it; use addnoise_condition=0 for the first chunk"
            )
        last = timestep.shape[1] - 1
        return [0, last] if last > 0 and bool((timestep[:, last] == 0).all()) else [0]

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["hidden_states"][:, :, self._frames(pipe, args)]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = args["hidden_states"].clone()
        hidden[:, :, self._frames(pipe, args)] = condition.to(hidden.dtype)
        return {**args, "hidden_states": hidden}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (latents, frames, condition, prefix frames); the condition holds
        # the image's rows, then last_image's rows, each one latent frame.
        condition = output[2]
        rows = condition.shape[0]
        first = condition[: (rows + 1) // 2]
        if args.get("last_image") is None:
            return first
        return torch.cat([first, condition[rows // 2 :]], dim=2)
