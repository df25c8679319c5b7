"""Where the modular pipelines' denoisers see the image condition (layouts for
:class:`guidance_kit.modular.LowPassGuidance`).

* Wan 2.1 / 2.2 I2V (``WanImage2VideoModularPipeline``, ``Wan22Image2VideoModularPipeline``): the
  loop's before-denoiser block concatenates [noisy latents (z), mask (4), image latents (z)] on
  the channel axis of ``hidden_states``; the image condition is the last z = ``out_channels``
  channels, as in the classic pipeline.
* LTX-Video I2V (``LTXModularPipeline`` with the image-to-video blocks): ``hidden_states`` is the
  packed token sequence ``[B, F*H*W, C]`` (patch size 1); the clean image latent is latent frame
  0, the first H*W tokens (their timestep is t * (1 - mask) = 0). ``num_frames``, ``height`` and
  ``width`` of the call give the latent grid.
* LTX-2 I2V (``LTX2ModularPipeline`` with ``LTX2ImageToVideoBlocks``): the same layout in the
  video ``hidden_states`` of ``LTX2VideoTransformer3DModel`` (its audio tokens carry no image).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from guidance_kit.backend import replace_channels
from guidance_kit.errors import GuidanceKitError, UnsupportedPipelineError
from guidance_kit.modular import ModularLayout, _inner


def _hidden(kwargs: Mapping[str, Any], layout: str) -> torch.Tensor:
    hidden = kwargs.get("hidden_states")
    if not isinstance(hidden, torch.Tensor):
        raise GuidanceKitError(f"modular layout {layout!r}: the denoiser call has no hidden_states tensor")
    return hidden


class WanChannelConcat(ModularLayout):
    name = "wan-channel-concat"
    denoisers = ("WanTransformer3DModel", "SkyReelsV2Transformer3DModel", "ChronoEditTransformer3DModel")
    pipelines = ("WanImage2VideoModularPipeline", "Wan22Image2VideoModularPipeline")

    def _z(self, denoiser: torch.nn.Module, hidden: torch.Tensor) -> int:
        config = _inner(denoiser).config
        z = config.out_channels
        if config.in_channels <= z or hidden.shape[1] != config.in_channels:
            raise UnsupportedPipelineError(
                f"modular layout {self.name!r}: {type(_inner(denoiser)).__name__} takes {config.in_channels} input "
                f"channels and predicts {z} ({hidden.shape[1]} given), so no image latents are concatenated: "
                "a text-to-video transformer, or Wan 2.2 TI2V (frame-0 replacement), which has no modular "
                "image-to-video blocks in diffusers 0.42; guide its classic pipeline with gk.guide"
            )
        return z

    def get_condition(self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any]) -> torch.Tensor:
        hidden = _hidden(kwargs, self.name)
        return hidden[:, -self._z(denoiser, hidden) :]

    def set_condition(
        self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any], condition: torch.Tensor
    ) -> dict[str, Any]:
        hidden = _hidden(kwargs, self.name)
        channels = hidden.shape[1]
        z = self._z(denoiser, hidden)
        return {**kwargs, "hidden_states": replace_channels(hidden, 1, channels - z, channels, condition)}

    def backend(self, pipe: Any) -> str:
        return "wan2.2-a14b" if getattr(pipe, "transformer_2", None) is not None else "wan2.1"


class LTXFrameTokens(ModularLayout):
    name = "ltx-frame-tokens"
    denoisers = ("LTXVideoTransformer3DModel",)
    pipelines = ("LTXModularPipeline",)

    def _grid(self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any]) -> tuple[torch.Tensor, int, int]:
        config = _inner(denoiser).config
        if config.patch_size != 1 or config.patch_size_t != 1:
            raise UnsupportedPipelineError(
                f"modular layout {self.name!r}: patch sizes {config.patch_size}, {config.patch_size_t}; only "
                "the LTX-Video 0.9 layout (patch size 1) is read"
            )
        hidden = _hidden(kwargs, self.name)
        frames, height, width = (kwargs.get(k) for k in ("num_frames", "height", "width"))
        if not all(isinstance(v, int) for v in (frames, height, width)) or hidden.ndim != 3:
            raise GuidanceKitError(
                f"modular layout {self.name!r}: needs packed hidden_states [B, tokens, C] and the latent grid "
                "(num_frames, height, width) as keyword arguments of the denoiser call"
            )
        if hidden.shape[1] != frames * height * width:
            raise GuidanceKitError(
                f"modular layout {self.name!r}: {hidden.shape[1]} tokens do not make the latent grid "
                f"{frames} x {height} x {width}"
            )
        return hidden, height, width

    def get_condition(self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any]) -> torch.Tensor:
        hidden, height, width = self._grid(denoiser, kwargs)
        tokens = hidden[:, : height * width]  # latent frame 0
        return tokens.unflatten(1, (height, width)).permute(0, 3, 1, 2).unsqueeze(2)

    def set_condition(
        self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any], condition: torch.Tensor
    ) -> dict[str, Any]:
        hidden, height, width = self._grid(denoiser, kwargs)
        tokens = condition[:, :, 0].permute(0, 2, 3, 1).flatten(1, 2).to(hidden.dtype)
        return {**kwargs, "hidden_states": torch.cat([tokens, hidden[:, height * width :]], dim=1)}

    def backend(self, pipe: Any) -> str:
        return "ltx-video"


class LTX2FrameTokens(LTXFrameTokens):
    """LTX-2 I2V: as LTX-Video, the video ``hidden_states`` of ``LTX2VideoTransformer3DModel``
    (the audio tokens are ``audio_hidden_states``, left alone)."""

    name = "ltx2-frame-tokens"
    denoisers = ("LTX2VideoTransformer3DModel",)
    pipelines = ("LTX2ModularPipeline",)

    def backend(self, pipe: Any) -> str:
        return "ltx-2"


class HunyuanVideo15ChannelConcat(ModularLayout):
    name = "hunyuan-video-1.5-channel-concat"
    denoisers = ("HunyuanVideo15Transformer3DModel",)
    pipelines = ("HunyuanVideo15ModularPipeline",)

    def _z(self, denoiser: torch.nn.Module, hidden: torch.Tensor) -> int:
        config = _inner(denoiser).config
        z = config.out_channels
        if config.in_channels != 2 * z + 1 or hidden.shape[1] != config.in_channels:
            raise UnsupportedPipelineError(
                f"modular layout {self.name!r}: {type(_inner(denoiser)).__name__} takes {config.in_channels} "
                f"input channels, not [latents {z}, image latents {z}, mask 1]"
            )
        return z

    def get_condition(self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any]) -> torch.Tensor:
        hidden = _hidden(kwargs, self.name)
        z = self._z(denoiser, hidden)
        return hidden[:, z : 2 * z]

    def set_condition(
        self, denoiser: torch.nn.Module, kwargs: Mapping[str, Any], condition: torch.Tensor
    ) -> dict[str, Any]:
        hidden = _hidden(kwargs, self.name)
        z = self._z(denoiser, hidden)
        return {**kwargs, "hidden_states": replace_channels(hidden, 1, z, 2 * z, condition)}

    def backend(self, pipe: Any) -> str:
        return "hunyuan-video-1.5"


BUILTIN_LAYOUTS = (WanChannelConcat(), LTXFrameTokens(), LTX2FrameTokens(), HunyuanVideo15ChannelConcat())
