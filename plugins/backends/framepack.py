"""HunyuanVideo Framepack (``HunyuanVideoFramepackPipeline``): the video is made in sections, each
a full denoising loop of its own (``scheduler.set_timesteps`` per section) over a window of new
latent frames. The image enters every call of every section as ``latents_clean``, the clean
context frames of the section, whose frame 0 is always the image latent (``image_latents`` from
``prepare_image_latents``; the other frame is the newest history frame), and as a SigLIP
embedding (``image_embeds``, left as it is).

Guidance is embedded (``guidance``, one call per step) unless ``true_cfg_scale > 1`` with a
negative prompt: then a second, negative-prompt call follows the conditional one and the pipeline
combines ``neg + w (cond - neg)``. The pipeline keeps the conditional prediction it holds, so
ALG's correction is written into it (``cond_inplace``).

ALG filters frame 0 of ``latents_clean`` only, in both sampling types. The other clean frame is
the newest history frame, or, in the first section, the end keyframe (``last_image``,
inverted anti-drifting) or a second copy of the image (vanilla, whose history ends with the image
latent): those stay sharp (see docs/backends/hunyuan-framepack.md)."""

from __future__ import annotations

from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, replace_channels


class HunyuanFramepackBackend(Backend):
    name = "hunyuan-framepack"
    pipelines = ("HunyuanVideoFramepackPipeline",)
    call_style = "split"
    split_order = ("cond", "uncond")  # the conditional call, then the negative-prompt one
    correction = "cond_inplace"
    batched_args = (
        "hidden_states",
        "timestep",
        "encoder_hidden_states",
        "encoder_attention_mask",
        "pooled_projections",
        "image_embeds",
        "guidance",
        "latents_clean",
        "latents_history_2x",
        "latents_history_4x",
    )
    pixel_method = "prepare_image_latents"
    pixel_image_args = ("image",)
    # With ``last_image`` the pipeline encodes two images; the first is the image condition.
    pixel_first_call = True
    description = "HunyuanVideo Framepack (image latent as clean context frame 0, per-section loops)"

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return args["latents_clean"][:, :, :1]

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        return {**args, "latents_clean": replace_channels(args["latents_clean"], 2, 0, 1, condition)}

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        return output  # prepare_image_latents returns the scaled image latent [b, z, 1, h, w]
