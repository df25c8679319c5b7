"""Wan-Animate (``WanAnimatePipeline``, Wan 2.2 Animate-14B): a character reference image animated
by a pose video and a face video, generated in segments.

Each segment is a denoising loop of its own (the pipeline calls ``scheduler.set_timesteps`` after
every segment, so each loop has its own steps 0..N-1 and ALG's window applies in every segment).
The transformer's ``hidden_states`` is ``[noisy latents z, mask 4, conditioning z]`` on channels
over ``1 + T`` latent frames; in the conditioning channels latent frame 0 is the reference image
latent (from ``prepare_reference_image_latents``, the same in every segment) and frames 1: hold
the previous segment's last frames (zeros in the first segment; the background video in
``mode="replace"``). The pose latents, the face video (``face_pixel_values``) and the CLIP image
embedding are separate arguments.

ALG's image condition is the reference image latent only: the last z channels of latent frame 0.
The previous-segment frames, the mask channels, the pose latents and the CLIP embedding stay as
they are. One transformer call per CFG branch, conditional first; the unconditional call gets the
negative prompt and a blanked face video (all -1), which ALG keeps: U(I) and U(LP I) are both
computed with the unconditional call's own arguments, so the step is
U(I) + w (C(LP I) - U(LP I)) with U the pipeline's unconditional branch. Pixel space filters the
preprocessed reference image and replays ``prepare_reference_image_latents``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from guidance_kit.backend import Arguments, Backend, replace_channels
from guidance_kit.errors import GuidanceKitError


class WanAnimateBackend(Backend):
    """``WanAnimatePipeline`` (see the module docstring)."""

    name = "wan-animate"
    pipelines = ("WanAnimatePipeline",)
    call_style = "split"
    split_order = ("cond", "uncond")
    correction = "cond_inplace"
    batched_args = (
        "hidden_states",
        "timestep",
        "encoder_hidden_states",
        "encoder_hidden_states_image",
        "pose_hidden_states",
        "face_pixel_values",
    )
    pixel_method = "prepare_reference_image_latents"
    pixel_image_args = ("image",)  # the preprocessed reference image [B, 3, H, W] in [-1, 1]
    description = (
        "Wan 2.2 Animate (WanAnimatePipeline): the reference image latent in latent frame 0 of the last z "
        "channels, every segment; face blanked for the unconditional call (kept)"
    )

    @staticmethod
    def _z(pipe: Any) -> int:
        return pipe.vae.config.z_dim

    def guidance_weight(self, pipe: Any, denoiser: str) -> float:
        return pipe._guidance_scale

    def image_arguments(self, pipe: Any, image: Any, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``image=``, and where the call gives none, a ``pose_video`` (black frames of the call's
        ``width`` x ``height``) and a ``face_video`` (grey frames of the motion encoder's size), one
        segment (``segment_frame_length`` frames) long: the pipeline needs both to run. Real use
        passes the driving videos (pose skeletons, face crops) as call arguments."""
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(pipe).__call__).parameters.items()
        }
        call = call or {}
        height, width, frames = (
            call.get(k, defaults[k]) for k in ("height", "width", "segment_frame_length")
        )
        out: dict[str, Any] = {"image": image}
        if call.get("pose_video") is None:
            out["pose_video"] = [Image.new("RGB", (width, height), (0, 0, 0))] * max(frames, 1)
        if call.get("face_video") is None:
            size = pipe.transformer.config.motion_encoder_size
            out["face_video"] = [Image.new("RGB", (size, size), (128, 128, 128))] * max(frames, 1)
        return out

    def _hidden(self, pipe: Any, args: Arguments) -> torch.Tensor:
        hidden = args["hidden_states"]
        z = self._z(pipe)
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 5 or hidden.shape[1] != 2 * z + 4:
            shape = None if not isinstance(hidden, torch.Tensor) else tuple(hidden.shape)
            raise GuidanceKitError(
                f"{self.name}: hidden_states of shape {shape} is not [latents {z}, mask 4, conditioning {z}] "
                "channels over latent frames"
            )
        return hidden

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return self._hidden(pipe, args)[:, -self._z(pipe) :, :1]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        hidden = self._hidden(pipe, args)
        channels, z = hidden.shape[1], self._z(pipe)
        tail = replace_channels(hidden[:, -z:], 2, 0, 1, condition)  # frame 0 only
        return {**args, "hidden_states": replace_channels(hidden, 1, channels - z, channels, tail)}

    def filter_pixel_image(self, pipe: Any, image: Any, args: Arguments, lowpass: Any) -> Any:
        # The pipeline preprocessed the image to a tensor in [-1, 1] and encodes it as it is.
        return lowpass(image.unsqueeze(2)).squeeze(2) if image.ndim == 4 else lowpass(image)

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_reference_image_latents returns concat([mask 4, image latent z]) over 1 frame
        return output[:, -self._z(pipe) :]
