"""Tiny random-weight I2V pipelines built from configs, for tests, examples and the CLI default.

No weights are downloaded: every component is built from a small config with a fixed seed, and
text encoders are replaced by fixed prompt embeddings passed to the call. Each family runs in
well under a second per call on a CPU. The videos are noise-like (random weights); what they
exercise is the real diffusers pipeline code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image


def tiny_image(size: int = 32, seed: int = 0) -> Image.Image:
    """A smooth random RGB image (low frequencies plus some detail), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((4, 4, 3))
    yy, xx = np.meshgrid(np.linspace(0, 3, size), np.linspace(0, 3, size), indexing="ij")
    y0, x0 = np.floor(yy).astype(int).clip(0, 2), np.floor(xx).astype(int).clip(0, 2)
    fy, fx = (yy - y0)[..., None], (xx - x0)[..., None]
    smooth = (
        coarse[y0, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1, x0] * fy * (1 - fx)
        + coarse[y0, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1, x0 + 1] * fy * fx
    )
    detail = rng.random((size, size, 3)) * 0.25
    return Image.fromarray((np.clip(smooth * 0.75 + detail, 0, 1) * 255).astype(np.uint8))


def _embeds(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _call(guidance_scale: float, *, masks: bool = False, **extra: Any) -> dict[str, Any]:
    """Call arguments the tiny families share: fixed prompt embeddings instead of a text encoder
    (and their attention masks where the pipeline takes them), 32x32 pixels, 9 frames."""
    call: dict[str, Any] = {
        "prompt_embeds": _embeds(1, 1, 16, 32),
        "negative_prompt_embeds": _embeds(2, 1, 16, 32),
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "guidance_scale": guidance_scale,
    }
    if masks:
        call.update(prompt_attention_mask=torch.ones(1, 16), negative_prompt_attention_mask=torch.ones(1, 16))
    return {**call, **extra}


def _tiny_clip_vision(
    hidden_size: int, projection_dim: int, intermediate_size: int, image_size: int = 32, patch_size: int = 1
) -> tuple[Any, Any]:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    try:  # the PIL processor needs no torchvision
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as Processor

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=hidden_size,
        projection_dim=projection_dim,
        num_hidden_layers=2,
        num_attention_heads=2 if hidden_size < 8 else 4,
        image_size=image_size,
        intermediate_size=intermediate_size,
        patch_size=patch_size,
    )
    return CLIPVisionModelWithProjection(config), Processor(
        crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32}
    )


# Wan 2.1 / 2.2 and SkyReels-V2 share the VAE, the transformer layout and the call arguments.
_WAN_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 36,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}


def _wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _wan(kind: str) -> tuple[Any, dict[str, Any]]:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    def transformer(seed: int) -> Any:
        torch.manual_seed(seed)
        return WanTransformer3DModel(
            **{
                **_WAN_TRANSFORMER,
                "in_channels": 16 if kind == "wan2.2-ti2v" else 36,  # TI2V: no channel concat
                "image_dim": 4 if kind == "wan2.1" else None,  # only Wan 2.1 has a CLIP embedding
            }
        )

    image_encoder = image_processor = None
    if kind == "wan2.1":
        image_encoder, image_processor = _tiny_clip_vision(
            hidden_size=4, projection_dim=4, intermediate_size=16
        )
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer(0),
        transformer_2=transformer(1) if kind == "wan2.2-a14b" else None,
        boundary_ratio=0.875 if kind == "wan2.2-a14b" else None,
        expand_timesteps=kind == "wan2.2-ti2v",
        image_encoder=image_encoder,
        image_processor=image_processor,
    )
    kwargs = _call(5.0)
    if kind == "wan2.2-a14b":
        kwargs["guidance_scale_2"] = 3.0
    return pipe, kwargs


def _wan_vace(experts: int) -> tuple[Any, dict[str, Any]]:
    """WanVACEPipeline (VACE control blocks on the Wan 2.1 transformer layout); with two experts a
    second transformer past ``boundary_ratio``, as Wan 2.2 A14B. The video and mask come from the
    backend's ``image_arguments`` (the image on frame 0, kept; grey frames to generate)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    def transformer(seed: int) -> Any:
        torch.manual_seed(seed)
        # control_hidden_states: inactive 16 + reactive 16 + the mask folded to 8 * 8 channels
        return WanVACETransformer3DModel(
            **{**_WAN_TRANSFORMER, "in_channels": 16}, vace_layers=[0, 1], vace_in_channels=96
        )

    pipe = WanVACEPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer(0),
        transformer_2=transformer(1) if experts == 2 else None,
        boundary_ratio=0.875 if experts == 2 else None,
    )
    kwargs = _call(5.0)
    if experts == 2:
        kwargs["guidance_scale_2"] = 3.0
    return pipe, kwargs


def _wan_animate() -> tuple[Any, dict[str, Any]]:
    """WanAnimatePipeline (Wan 2.2 Animate: the character image in the last z channels of latent
    frame 0, pose latents added to frames 1:, the face video through a motion encoder, a CLIP image
    embedding), with a 9-frame pose and face video run as two segments of 5 frames."""
    from diffusers import UniPCMultistepScheduler, WanAnimatePipeline, WanAnimateTransformer3DModel

    image_encoder, image_processor = _tiny_clip_vision(hidden_size=4, projection_dim=4, intermediate_size=16)
    torch.manual_seed(0)
    transformer = WanAnimateTransformer3DModel(
        **_WAN_TRANSFORMER,
        latent_channels=16,
        image_dim=4,
        motion_encoder_channel_sizes={"4": 8, "8": 8, "16": 8},
        motion_encoder_size=16,
        motion_style_dim=8,
        motion_dim=4,
        motion_encoder_dim=8,
        face_encoder_hidden_dim=16,
        face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
        motion_encoder_batch_size=4,
    )
    pipe = WanAnimatePipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_wan_vae(),
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )
    kwargs = _call(5.0, segment_frame_length=5, prev_segment_conditioning_frames=1)
    del kwargs["num_frames"]  # the pose video sets the length
    kwargs.update(
        pose_video=[tiny_image(32, seed=100 + i) for i in range(9)],
        face_video=[tiny_image(16, seed=200 + i) for i in range(9)],
    )
    return pipe, kwargs


def _wan_clip_layout(pipeline_cls: Any, transformer_cls: Any) -> Any:
    """A pipeline of the Wan 2.1 I2V layout with a CLIP image embedding (SkyReels-V2, ChronoEdit),
    with the UniPC flow scheduler they are released with."""
    from diffusers import UniPCMultistepScheduler

    torch.manual_seed(0)
    transformer = transformer_cls(**_WAN_TRANSFORMER, image_dim=4)
    image_encoder, image_processor = _tiny_clip_vision(hidden_size=4, projection_dim=4, intermediate_size=16)
    return pipeline_cls(
        tokenizer=None,
        text_encoder=None,
        image_encoder=image_encoder,
        image_processor=image_processor,
        transformer=transformer,
        vae=_wan_vae(),
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
    )


def _skyreels() -> tuple[Any, dict[str, Any]]:
    from diffusers import SkyReelsV2ImageToVideoPipeline, SkyReelsV2Transformer3DModel

    return _wan_clip_layout(SkyReelsV2ImageToVideoPipeline, SkyReelsV2Transformer3DModel), _call(5.0)


def _chronoedit() -> tuple[Any, dict[str, Any]]:
    from diffusers import ChronoEditPipeline, ChronoEditTransformer3DModel

    # The released UniPC scheduler matters here: temporal reasoning trims its multistep history.
    pipe = _wan_clip_layout(ChronoEditPipeline, ChronoEditTransformer3DModel)
    # Without temporal reasoning the pipeline makes 5 frames (the input and the edit).
    return pipe, _call(5.0, num_frames=5)


def _cogvideox() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=2,  # FirstBlockCache needs a block after the first
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    torch.manual_seed(0)
    block = ("CogVideoXDownBlock3D",) * 4
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=block,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    kwargs = _call(6.0, max_sequence_length=16)
    return pipe, kwargs


def _ltx(pipeline: str = "LTXImageToVideoPipeline") -> tuple[Any, dict[str, Any]]:
    """LTX-Video components in ``pipeline`` (``LTXConditionPipeline`` takes the same ones)."""
    import diffusers
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    pipe = getattr(diffusers, pipeline)(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    kwargs = _call(3.0, masks=True)
    return pipe, kwargs


def _ltx2(pipeline: str = "LTX2ImageToVideoPipeline") -> tuple[Any, dict[str, Any]]:
    """LTX-2 with video and audio branches in ``pipeline`` (``LTX2ConditionPipeline`` takes the
    same components); the text encoder is replaced by stacked hidden states (width x (layers + 1))
    that the pipeline's connectors project, as for Gemma 3's output."""
    import diffusers
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    width, layers = 32, 2  # the replaced text encoder's hidden size and layer count
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=width,
        rope_double_precision=False,
        rope_type="split",
    )
    torch.manual_seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=width,
        text_proj_in_factor=layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatial",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    torch.manual_seed(0)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    torch.manual_seed(0)
    vocoder = LTX2Vocoder(
        in_channels=2 * 8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[4, 4],
        upsample_factors=[2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    pipe = getattr(diffusers, pipeline)(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=None,
        tokenizer=None,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
    )
    kwargs = _call(
        3.0,
        masks=True,
        prompt_embeds=_embeds(1, 1, 16, width * (layers + 1)),
        negative_prompt_embeds=_embeds(2, 1, 16, width * (layers + 1)),
        frame_rate=25.0,
        # The release's defaults (STG at a late block, modality isolation, audio CFG 7, rescale
        # 0.7), scaled to two layers; image_crf=0 skips the H.264 re-compression of the image
        # (LTX2ConditionPipeline takes it per condition, as crf=0: see its backend's image_arguments).
        stg_scale=1.0,
        modality_scale=3.0,
        audio_guidance_scale=7.0,
        audio_stg_scale=1.0,
        audio_modality_scale=3.0,
        guidance_rescale=0.7,
        spatio_temporal_guidance_blocks=[1],
    )
    if pipeline == "LTX2ImageToVideoPipeline":
        kwargs["image_crf"] = 0
    else:
        kwargs["audio_guidance_rescale"] = 0.7
    return pipe, kwargs


def _hunyuan_vae() -> Any:
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def _hunyuan(image_condition_type: str = "latent_concat") -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoImageToVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4 + 1 if image_condition_type == "latent_concat" else 4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
        image_condition_type=image_condition_type,
    )
    vae = _hunyuan_vae()
    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
        image_processor=None,
    )
    kwargs = {
        "prompt_embeds": _embeds(1, 1, 16, 16),
        "pooled_prompt_embeds": _embeds(2, 1, 8),
        "prompt_attention_mask": torch.ones(1, 16),
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "guidance_scale": 6.0,  # embedded guidance: one pass per step
    }
    return pipe, kwargs


def _hunyuan_skyreels() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanSkyreelsImageToVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4,  # [latents, image latents]
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    pipe = HunyuanSkyreelsImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=_hunyuan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
    )
    kwargs = {
        "prompt_embeds": _embeds(1, 1, 16, 16),
        "pooled_prompt_embeds": _embeds(2, 1, 8),
        "prompt_attention_mask": torch.ones(1, 16),
        "negative_prompt_embeds": _embeds(3, 1, 16, 16),
        "negative_pooled_prompt_embeds": _embeds(4, 1, 8),
        "negative_prompt_attention_mask": torch.ones(1, 16),
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "true_cfg_scale": 6.0,  # SkyReels-V1 I2V runs true CFG (and embedded guidance 1.0)
    }
    return pipe, kwargs


def _kandinsky5() -> tuple[Any, dict[str, Any]]:
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky5I2VPipeline, Kandinsky5Transformer3DModel

    torch.manual_seed(0)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        out_visual_dim=4,
        patch_size=(1, 2, 2),
        model_dim=24,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 4, 4),
        visual_cond=True,  # [latents, zeros, frame-0 mask] channels last, as the I2V model
    )
    # Kandinsky initialises its modulations to zero, which makes every block the identity and the
    # output per token: random ones let the image on frame 0 reach the stepped frames.
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "modulation" in name:
                param.normal_(0.0, 0.2)
    pipe = Kandinsky5I2VPipeline(
        transformer=transformer,
        vae=_hunyuan_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )
    kwargs = {
        "prompt_embeds_qwen": _embeds(1, 1, 16, 16),
        "prompt_embeds_clip": _embeds(2, 1, 8),
        "prompt_cu_seqlens": torch.tensor([0, 16], dtype=torch.int32),
        # A shorter negative prompt: its text positions differ from the positive branch's.
        "negative_prompt_embeds_qwen": _embeds(3, 1, 12, 16),
        "negative_prompt_embeds_clip": _embeds(4, 1, 8),
        "negative_prompt_cu_seqlens": torch.tensor([0, 12], dtype=torch.int32),
        "height": 32,
        "width": 32,
        "num_frames": 17,  # the output's first-frame normalisation reads latent frames 4:
        "guidance_scale": 5.0,
    }
    return pipe, kwargs


def _kandinsky6(distilled: bool = False) -> tuple[Any, dict[str, Any]]:
    """Kandinsky 6 image-to-video-and-audio: the transformer denoises video and audio latents
    together; tiny MMAudio VAE and vocoder (needed by ``sample_audio=True``, the default).
    ``distilled``: as the distilled checkpoints, a ``PiflowScheduler`` (the transformer predicts
    ``n_grid`` values per channel) run without CFG."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        Kandinsky6TI2VAPipeline,
        Kandinsky6Transformer3DModel,
        MMAudioVAE,
        MMAudioVocoder,
        PiflowScheduler,
    )

    grid = 2 if distilled else 1

    torch.manual_seed(0)
    transformer = Kandinsky6Transformer3DModel(
        in_visual_dim=4,
        out_visual_dim=4 * grid,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=24,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 4, 4),
        visual_cond=True,  # [latents, zeros, mask] channels last; the image on an appended tail frame
        in_audio_dim=4,
        out_audio_dim=4 * grid,
        visual_token_type_num_embeddings=2,  # token type 1 marks the tail frame
    )
    # As Kandinsky 5: zero-initialised modulations make every block the identity, so random ones
    # let the image on the tail frame reach the video and audio tokens.
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "modulation" in name:
                param.normal_(0.0, 0.2)
    torch.manual_seed(0)
    audio_vae = MMAudioVAE(
        mel_bins=8,
        latent_channels=4,
        hidden_channels=8,
        channel_multipliers=(1,),
        layers_per_block=1,
        sample_rate=1024,
        n_fft=64,
        hop_length=16,
    )
    torch.manual_seed(0)
    vocoder = MMAudioVocoder(
        num_mels=8,
        upsample_initial_channel=8,
        upsample_rates=(2,),
        upsample_kernel_sizes=(4,),
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1,),),
    )
    pipe = Kandinsky6TI2VAPipeline(
        transformer=transformer,
        vae=_hunyuan_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        scheduler=(
            PiflowScheduler(n_grid=grid, num_policy_substeps=4)
            if distilled
            else FlowMatchEulerDiscreteScheduler(shift=5.0)
        ),
        audio_vae=audio_vae,
        vocoder=vocoder,
    )
    kwargs = {
        "prompt_embeds": _embeds(1, 1, 16, 16),
        "pooled_prompt_embeds": _embeds(2, 1, 8),
        # A shorter negative prompt, as Kandinsky 5's.
        "negative_prompt_embeds": _embeds(3, 1, 12, 16),
        "negative_pooled_prompt_embeds": _embeds(4, 1, 8),
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "frame_rate": 8.0,  # 36 audio latent frames at the tiny audio VAE's rate
        "guidance_scale": 1.0 if distilled else 5.0,
    }
    return pipe, kwargs


def _no_safety_checker() -> Any:
    from diffusers import ConfigMixin, ModelMixin

    class NoSafetyChecker(ModelMixin, ConfigMixin):
        """Cosmos pipelines require a guardrail (the cosmos_guardrail package); latent output
        never asks it about videos, and prompts are embeddings here."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("unused", torch.zeros(1))  # a module with no tensors has no dtype

        def check_text_safety(self, prompt: str) -> bool:
            return True

        def check_video_safety(self, video: Any) -> Any:
            return video

    return NoSafetyChecker()


def _cosmos_transformer() -> Any:
    from diffusers import CosmosTransformer3DModel

    torch.manual_seed(0)
    return CosmosTransformer3DModel(
        in_channels=16 + 1,  # latents and the condition mask
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=32,
        adaln_lora_dim=4,
        max_size=(4, 8, 8),
        patch_size=(1, 2, 2),
        # The released model also concatenates the (all-zero) padding mask, which needs torchvision.
        concat_padding_mask=False,
    )


def _cosmos2() -> tuple[Any, dict[str, Any]]:
    from diffusers import Cosmos2VideoToWorldPipeline, FlowMatchEulerDiscreteScheduler

    pipe = Cosmos2VideoToWorldPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=_cosmos_transformer(),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=_no_safety_checker(),
    )
    kwargs = _call(7.0)
    return pipe, kwargs


def _cosmos25() -> tuple[Any, dict[str, Any]]:
    from diffusers import Cosmos2_5_PredictBasePipeline, UniPCMultistepScheduler

    pipe = Cosmos2_5_PredictBasePipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=_cosmos_transformer(),
        vae=_wan_vae(),
        # The release's sampler: UniPC on flow sigmas.
        scheduler=UniPCMultistepScheduler(
            use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=5.0
        ),
        safety_checker=_no_safety_checker(),
    )
    # Image2World through a one-frame video (see the backend's image_arguments).
    kwargs = _call(7.0, num_latent_conditional_frames=1)
    return pipe, kwargs


def _motif() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        ClassifierFreeGuidance,
        FlowMatchEulerDiscreteScheduler,
        MotifVideoImage2VideoPipeline,
        MotifVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = MotifVideoTransformer3DModel(
        in_channels=2 * 16 + 1,  # [latents, image latent condition, mask]
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        num_single_layers=1,
        mlp_ratio=2.0,
        patch_size=2,
        patch_size_t=1,
        text_embed_dim=32,
        rope_axes_dim=(4, 4, 4),
    )
    # Motif casts its float32 timestep projection to the embedder's dtype for fp16/bf16 only; the
    # tiny model does so at any dtype (its tests run in float64).
    transformer.time_text_embed.timestep_embedder.register_forward_pre_hook(
        lambda module, args: (args[0].to(module.linear_1.weight.dtype),)
    )
    pipe = MotifVideoImage2VideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_wan_vae(),
        text_encoder=None,  # no SigLIP image embedding either
        tokenizer=None,
        transformer=transformer,
        guider=ClassifierFreeGuidance(guidance_scale=5.0),
        feature_extractor=None,
    )
    kwargs = {
        "prompt": None,  # a required argument of the pipeline
        "prompt_embeds": _embeds(1, 1, 16, 32),
        "prompt_attention_mask": torch.ones(1, 16),
        "negative_prompt_embeds": _embeds(2, 1, 16, 32),
        "negative_prompt_attention_mask": torch.ones(1, 16),
        "height": 32,
        "width": 32,
        "num_frames": 9,
    }
    return pipe, kwargs


def _hunyuan15() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        ClassifierFreeGuidance,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * 4 + 1,  # [latents, image latent condition, mask]
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        text_embed_dim=16,
        text_embed_2_dim=8,
        image_embed_dim=12,
        rope_axes_dim=(2, 2, 4),
        target_size=32,  # the pipeline picks the video size from this and the image's aspect ratio
    )
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo15(
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )
    torch.manual_seed(0)
    image_encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=12,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    )
    pipe = HunyuanVideo15ImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
        guider=ClassifierFreeGuidance(guidance_scale=5.0),
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessorPil(size={"height": 32, "width": 32}),
    )
    glyph_mask = torch.ones(1, 8)
    glyph_mask[:, 5:] = 0  # the ByT5 (glyph) tokens are padded in practice
    kwargs = {  # no height/width: the pipeline sizes the video from the image (32 x 32 here)
        "prompt_embeds": _embeds(1, 1, 16, 16),
        "prompt_embeds_mask": torch.ones(1, 16),
        "negative_prompt_embeds": _embeds(2, 1, 16, 16),
        "negative_prompt_embeds_mask": torch.ones(1, 16),
        "prompt_embeds_2": _embeds(3, 1, 8, 8),
        "prompt_embeds_mask_2": glyph_mask,
        "negative_prompt_embeds_2": _embeds(4, 1, 8, 8),
        "negative_prompt_embeds_mask_2": glyph_mask.clone(),
        "num_frames": 9,
    }
    return pipe, kwargs


def _hunyuan_framepack() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoFramepackPipeline,
        HunyuanVideoFramepackTransformer3DModel,
    )
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    transformer = HunyuanVideoFramepackTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=2,  # the clean-latent embedder patchifies by 2 whatever this says
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
        has_image_proj=True,
        image_proj_dim=12,
        has_clean_x_embedder=True,
    )
    torch.manual_seed(0)
    image_encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=12,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    )
    pipe = HunyuanVideoFramepackPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=_hunyuan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessorPil(size={"height": 32, "width": 32}),
    )
    kwargs = {
        "prompt_embeds": _embeds(1, 1, 16, 16),
        "pooled_prompt_embeds": _embeds(2, 1, 8),
        "prompt_attention_mask": torch.ones(1, 16),
        "height": 32,
        "width": 32,
        "num_frames": 9,  # two sections of latent_window_size 2 (5 frames each)
        "latent_window_size": 2,
        "guidance_scale": 6.0,  # embedded guidance: one pass per step (true CFG needs a negative prompt)
    }
    return pipe, kwargs


def _skyreels_df() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        SkyReelsV2DiffusionForcingImageToVideoPipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )

    torch.manual_seed(0)
    transformer = SkyReelsV2Transformer3DModel(
        **{**_WAN_TRANSFORMER, "in_channels": 16},  # no channel concat: the image is latent frame 0
        inject_sample_info=True,  # the fps embedding, as the released DF models
    )
    pipe = SkyReelsV2DiffusionForcingImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        transformer=transformer,
        vae=_wan_vae(),
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
    )
    # 4 latent frames (the image and 3 generated ones), all in one chunk.
    return pipe, _call(5.0, num_frames=13, base_num_frames=13)


def _svd() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        trained_betas=None,
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    # SVD resizes the image to 224 px for CLIP itself.
    image_encoder, feature_extractor = _tiny_clip_vision(32, 32, 37, image_size=224, patch_size=14)
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
    kwargs = {
        "height": 32,
        "width": 32,
        "num_frames": 3,
        "min_guidance_scale": 1.0,
        "max_guidance_scale": 2.5,
    }
    return pipe, kwargs


def _sana() -> tuple[Any, dict[str, Any]]:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SanaImageToVideoPipeline,
        SanaVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = SanaVideoTransformer3DModel(
        in_channels=16,
        out_channels=32,  # learned sigma: the pipeline keeps the first half after CFG
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=12,
        cross_attention_dim=24,
        caption_channels=32,
        mlp_ratio=2.0,
        sample_size=4,
        patch_size=(1, 2, 2),
        rope_max_seq_len=32,
    )
    pipe = SanaImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_wan_vae(),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    kwargs = {
        "prompt_embeds": _embeds(1, 1, 16, 32),
        "prompt_attention_mask": torch.ones(1, 16),
        "negative_prompt_embeds": _embeds(2, 1, 16, 32),
        "negative_prompt_attention_mask": torch.ones(1, 16),
        "negative_prompt": None,  # the default "" would clash with negative_prompt_embeds
        "use_resolution_binning": False,  # binning needs the released sample sizes
        "height": 32,
        "width": 32,
        "frames": 9,
        "guidance_scale": 5.0,
    }
    return pipe, kwargs


_BUILDERS: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "wan2.1": lambda: _wan("wan2.1"),
    "wan2.2-a14b": lambda: _wan("wan2.2-a14b"),
    "wan2.2-ti2v": lambda: _wan("wan2.2-ti2v"),
    "skyreels-v2": _skyreels,
    "chronoedit": _chronoedit,
    "kandinsky5": _kandinsky5,
    "kandinsky6": _kandinsky6,
    "kandinsky6-distill": lambda: _kandinsky6(distilled=True),
    "cosmos2": _cosmos2,
    "cosmos2.5": _cosmos25,
    "motif-video": _motif,
    "hunyuan-video-1.5": _hunyuan15,
    "skyreels-v2-df": _skyreels_df,
    "cogvideox": _cogvideox,
    "hunyuan-video": _hunyuan,
    "hunyuan-video-token-replace": lambda: _hunyuan("token_replace"),
    "hunyuan-skyreels": _hunyuan_skyreels,
    "hunyuan-framepack": _hunyuan_framepack,
    "ltx-video": _ltx,
    "ltx-condition": lambda: _ltx("LTXConditionPipeline"),
    "ltx-2": _ltx2,
    "ltx2-condition": lambda: _ltx2("LTX2ConditionPipeline"),
    "svd": _svd,
    "sana-video": _sana,
    "wan-vace": lambda: _wan_vace(1),
    "wan-vace-a14b": lambda: _wan_vace(2),
    "wan-animate": _wan_animate,
}
# Every buildable family, derived from the builders so the two cannot drift.
FAMILIES = tuple(_BUILDERS)


def tiny_pipeline(family: str = "wan2.1", dtype: torch.dtype = torch.float32) -> tuple[Any, dict[str, Any]]:
    """A tiny random-weight pipeline of ``family`` and the keyword arguments (without image,
    steps and generator) that make a valid call."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny pipeline family {family!r}; choose from {list(FAMILIES)}")
    return ready(*_BUILDERS[family](), dtype)


# Submodules whose forward computes in float32 (Kandinsky 5's time embedding, Cosmos' learnable
# position embedding norm): they stay in float32 at any dtype, as from_pretrained keeps them.
_FLOAT32_INPUTS = {
    "Kandinsky5Transformer3DModel": ("time_embeddings",),
    "CosmosTransformer3DModel": ("learnable_pos_embed",),
}


def ready(pipe: Any, kwargs: dict[str, Any], dtype: torch.dtype) -> tuple[Any, dict[str, Any]]:
    """``pipe`` cast to ``dtype`` with its progress bar off, and ``kwargs``' tensors cast alike."""
    from diffusers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # casting random weights warns about modules "kept in float32"
    try:
        pipe.to(dtype=dtype)
    finally:
        logging.set_verbosity(verbosity)
    for component in pipe.components.values():
        for name in _FLOAT32_INPUTS.get(type(component).__name__, ()):
            getattr(component, name).to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe, {
        k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
        for k, v in kwargs.items()
    }


def cache_configs(pipe: Any, steps: int) -> dict[str, tuple[Any, bool]]:
    """diffusers cache configurations that run on the tiny pipelines, by name, with whether each
    skips work there (the compatibility tests and ``benchmarks/compat_matrix.py`` share them).
    ``first-block-exact`` never skips; the last two keep one state for every denoiser call."""
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
    )

    def timestep() -> Any:
        return pipe._current_timestep

    everywhere = (-1, 1001)  # skip at every timestep, so that the tiny runs do skip
    return {
        "first-block-exact": (FirstBlockCacheConfig(threshold=0.0), False),
        "first-block": (FirstBlockCacheConfig(threshold=0.2), True),
        "mag": (MagCacheConfig(threshold=0.06, num_inference_steps=steps, mag_ratios=[1.0] * steps), True),
        "taylorseer": (
            TaylorSeerCacheConfig(
                cache_interval=2,
                disable_cache_before_step=1,
                taylor_factors_dtype=pipe.transformer.dtype,
                cache_identifiers=[r".*blocks\.\d+\.attn1"],  # diffusers' defaults match no block name here
            ),
            True,
        ),
        "pyramid-attention": (
            PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2,
                spatial_attention_timestep_skip_range=everywhere,
                current_timestep_callback=timestep,
            ),
            True,
        ),
        "faster-cache": (
            FasterCacheConfig(
                spatial_attention_block_skip_range=2,
                spatial_attention_timestep_skip_range=everywhere,
                current_timestep_callback=timestep,
                attention_weight_callback=lambda _: 0.5,
                tensor_format="BFCHW" if "CogVideoX" in type(pipe).__name__ else "BCFHW",
            ),
            True,
        ),
    }


# Modular pipelines on the same tiny components ----------------------------------------------------

# family -> (module, class) of diffusers' image-to-video
# modular blocks, without the text encoder and decoder blocks (prompt embeddings in, latents out).
_MODULAR = {
    "wan2.1": ("diffusers.modular_pipelines.wan.modular_blocks_wan_i2v", "WanImage2VideoAutoBlocks"),
    "wan2.2-a14b": ("diffusers.modular_pipelines.wan.modular_blocks_wan22_i2v", "Wan22Image2VideoBlocks"),
    "ltx-video": ("diffusers.modular_pipelines.ltx.modular_blocks_ltx", "LTXImage2VideoBlocks"),
    "hunyuan-video-1.5": (
        "diffusers.modular_pipelines.hunyuan_video1_5.modular_blocks_hunyuan_video1_5",
        "HunyuanVideo15Image2VideoBlocks",
    ),
    "ltx-2": ("diffusers.modular_pipelines.ltx2.modular_blocks_ltx2", "LTX2ImageToVideoBlocks"),
}
MODULAR_FAMILIES = tuple(_MODULAR)
# Blocks left out (by path): the text encoder and the decoder. LTX-2 keeps its text connectors
# (the tiny call passes stacked hidden states, as the classic one does) and drops the prompt
# enhancer, which needs a model of its own.
_MODULAR_DROPPED = {
    "ltx-2": ("prompt_enhancer", "text_encoder.text_encoder", "decode"),
}
# The classic LTX-2 call's guidance arguments, which the modular pipeline's guiders hold.
_LTX2_GUIDANCE = (
    "guidance_scale",
    "stg_scale",
    "modality_scale",
    "guidance_rescale",
    "audio_guidance_scale",
    "audio_stg_scale",
    "audio_modality_scale",
    "audio_guidance_rescale",
    "spatio_temporal_guidance_blocks",
)


class _LeftPaddingTokenizer:
    """Stands in for the Gemma tokenizer of LTX-2, whose connector step reads only its padding side
    (the classic pipeline assumes "left" without a tokenizer)."""

    padding_side = "left"


def _ltx2_guiders(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The modular LTX-2 pipeline's LTX2Guidance pair with the classic call's scales (its
    defaults, and its fallback of a falsy audio scale to the video one)."""
    from diffusers import LTX2Guidance

    def get(name: str, default: Any) -> Any:
        return kwargs.get(name, default)

    video = LTX2Guidance(
        guidance_scale=get("guidance_scale", 3.0),
        stg_scale=get("stg_scale", 1.0),
        modality_scale=get("modality_scale", 3.0),
        guidance_rescale=get("guidance_rescale", 0.7),
        spatio_temporal_guidance_blocks=get("spatio_temporal_guidance_blocks", [28]),
    )
    audio = LTX2Guidance(
        guidance_scale=get("audio_guidance_scale", 7.0) or video.guidance_scale,
        stg_scale=get("audio_stg_scale", 1.0) or video.stg_scale,
        modality_scale=get("audio_modality_scale", 3.0) or video.modality_scale,
        guidance_rescale=get("audio_guidance_rescale", 0.7) or video.guidance_rescale,
    )
    return {"guider": video, "audio_guider": audio, "tokenizer": _LeftPaddingTokenizer()}


def tiny_modular_pipeline(
    family: str = "wan2.1",
    dtype: torch.dtype = torch.float32,
    base: tuple[Any, dict[str, Any]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The diffusers modular image-to-video pipeline of ``family`` on the components of the tiny
    classic pipeline ``base`` (default: a new ``tiny_pipeline(family, dtype)``), shared, not
    copied, with ClassifierFreeGuidance guiders of the classic call's scales (LTX-2: an
    LTX2Guidance ``guider`` and ``audio_guider``); and the keyword
    arguments (without image, steps and generator) of a call that returns ``output="latents"``."""
    import importlib

    from diffusers import ClassifierFreeGuidance
    from diffusers.utils import logging

    if family not in _MODULAR:
        raise ValueError(f"no tiny modular pipeline for {family!r}; choose from {list(MODULAR_FAMILIES)}")
    pipe, kwargs = base if base is not None else tiny_pipeline(family, dtype)
    module, name = _MODULAR[family]
    blocks = getattr(importlib.import_module(module), name)()
    for path in _MODULAR_DROPPED.get(family, ("text_encoder", "decode")):
        *parents, step = path.split(".")
        holder = blocks
        for parent in parents:
            holder = holder.sub_blocks[parent]
        holder.sub_blocks.pop(step)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # guiders are "experimental"; components not "from ComponentSpec"
    try:
        modular = blocks.init_pipeline()
        shared = ("transformer", "transformer_2", "vae", "scheduler", "image_encoder", "image_processor")
        components = {name: getattr(pipe, name, None) for name in (*shared, "feature_extractor")}
        scale = kwargs.get("guidance_scale", getattr(getattr(pipe, "guider", None), "guidance_scale", None))
        if family == "ltx-2":
            components.update(connectors=pipe.connectors, audio_vae=pipe.audio_vae, **_ltx2_guiders(kwargs))
        else:
            components["guider"] = ClassifierFreeGuidance(guidance_scale=scale)
        if "guidance_scale_2" in kwargs:
            components["guider_2"] = ClassifierFreeGuidance(guidance_scale=kwargs["guidance_scale_2"])
        modular.update_components(
            **{k: v for k, v in components.items() if v is not None and k in modular._component_specs}
        )
    finally:
        logging.set_verbosity(verbosity)
    pending = [modular._blocks]  # init_pipeline keeps a copy of the blocks
    while pending:  # the denoise loop is nested: switch every progress bar off
        block = pending.pop()
        if hasattr(block, "set_progress_bar_config"):
            block.set_progress_bar_config(disable=True)
        pending += list(getattr(block, "sub_blocks", {}).values())
    held = _LTX2_GUIDANCE if family == "ltx-2" else ("guidance_scale", "guidance_scale_2")
    call = {k: v for k, v in kwargs.items() if k not in held}
    if family == "ltx-2":  # what the dropped text-encoder step would report
        call.update(batch_size=kwargs["prompt_embeds"].shape[0], dtype=pipe.transformer.dtype)
    return modular, call
