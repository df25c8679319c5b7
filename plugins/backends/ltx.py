"""LTX-Video I2V: the latents are packed into a token sequence whose frame-0 tokens hold the
clean image latent (timestep t * (1 - mask) is 0 there); one batched CFG call. LTX-2 adds audio
and extra conditional passes; LTXConditionPipeline re-noises the frame-0 tokens every step from
the clean initial latents, which its backend records from ``prepare_latents``. LTX2ConditionPipeline
keeps its frame-0 tokens clean (an x0 blend with the clean latents) and takes its conditions per
call, which its backend learns from ``prepare_latents`` too."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from guidance_kit.backend import Arguments, Backend, recorded_call, replace_channels
from guidance_kit.errors import GuidanceKitError


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


def _recorded_video(backend: str, pipe: Any, size: tuple[int, int, int], args: Arguments) -> torch.Tensor:
    """The denoiser's packed ``hidden_states`` as a ``[rows, C, F, H, W]`` latent video of the
    size ``prepare_latents`` recorded (the transformer gets coordinates, not the size)."""
    frames, height, width = size
    hidden = args["hidden_states"]
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    if hidden.shape[1] != (frames // pt) * (height // p) * (width // p):
        raise GuidanceKitError(
            f"{backend}: hidden_states has {hidden.shape[1]} tokens, the {frames}x{height}x{width} "
            "latent video of prepare_latents another number"
        )
    return LTXVideoBackend._unpack(pipe, hidden, frames, height, width)


class _InitialLatents:
    """``LTXConditionPipeline.prepare_latents`` inside a guide() block: records, for each pipeline
    call, the clean initial latents it returns (the pipeline's ``init_latents`` are a copy of them),
    the latent video size, and whatever about the call's conditions ALG cannot guide exactly."""

    def __init__(self, pipe: Any, inner: Callable[..., Any]):
        self.pipe, self.inner = pipe, inner
        self.signature = inspect.signature(inner)
        functools.update_wrapper(self, inner)
        self.first: torch.Tensor | None = None  # latent frame 0 of the initial latents, [b, C, 1, h, w]
        self.size: tuple[int, int, int] = (0, 0, 0)  # latent frames, height, width
        self.refusal: str | None = "prepare_latents has not run in this guide() block"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out = self.inner(*args, **kwargs)
        self.record(bound.arguments, out)
        return out

    def _latent_size(self, arguments: dict[str, Any]) -> tuple[int, int, int]:
        """Latent frames, height and width of the call's video."""
        pipe = self.pipe
        frames = (arguments["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1
        return (
            frames,
            arguments["height"] // pipe.vae_spatial_compression_ratio,
            arguments["width"] // pipe.vae_spatial_compression_ratio,
        )

    def record(self, arguments: dict[str, Any], out: Any) -> None:
        pipe = self.pipe
        frames, height, width = self.size = self._latent_size(arguments)
        self.refusal = _refusal(arguments)
        self.first = None
        if self.refusal is None:
            video = LTXVideoBackend._unpack(pipe, out[0], frames, height, width)
            self.first = video[:, :, :1].clone()


def _refusal(arguments: dict[str, Any]) -> str | None:
    """Why ALG cannot guide a call with these ``prepare_latents`` arguments exactly, or None for
    the one case it guides: one image condition at frame 0 with strength 1, full denoising."""
    conditions = arguments["conditions"] or []
    supported = "ALG supports one image condition (image=, or conditions=[LTXVideoCondition(image=...)]) at frame_index=0 with strength=1.0"
    if len(conditions) == 0:
        return (
            "this call has no image or video condition (text-to-video), so there is no image to filter; "
            + supported
        )
    if len(conditions) > 1:
        return (
            f"conditions: {len(conditions)} conditions in this call (several images, videos or keyframes); "
            + supported
        )
    # One condition: the pipeline passes its strength and frame index as one-element lists.
    strength, index = arguments["condition_strength"][0], arguments["condition_frame_index"][0]
    if conditions[0].shape[2] > 1:
        return (
            f"conditions: a video condition ({conditions[0].shape[2]} frames) covers several latent "
            "frames, which ALG does not filter; " + supported
        )
    if index != 0:
        return (
            f"frame_index={index!r}: a condition away from frame 0 enters as extra tokens "
            "mixed with noise (torch.lerp), not as the clean first frame; " + supported
        )
    if strength != 1.0:
        return (
            f"strength={strength!r}: a partial-strength condition is a noise mix that the pipeline "
            "denoises once t < (1 - strength) * 1000, not a clean image condition; " + supported
        )
    if arguments.get("sigma") is not None:
        return (
            f"denoise_strength < 1 (the loop starts at sigma {float(arguments['sigma'].flatten()[0]):.4g}): "
            "the pipeline skips the first timesteps it scheduled, so ALG's step window would not be the "
            "loop's; use denoise_strength=1.0"
        )
    return None


class LTXConditionBackend(LTXVideoBackend):
    """LTXConditionPipeline (LTX-Video 0.9.5+) with one image condition at frame 0: the latent
    frame-0 tokens of the packed sequence are hard-conditioning tokens (conditioning mask 1,
    timestep 0 there, never stepped). Each step the pipeline re-noises them from the clean initial
    latents, ``init + image_cond_noise_scale * noise * (t / 1000) ** 2``, so what the transformer
    sees there is not the clean image latent. ALG low-passes the clean image latent only: the
    input at those tokens becomes ``input - init + LP(init)`` (the same added noise). The clean
    initial latents come from ``prepare_latents``, which the backend wraps for the length of the
    block. One batched CFG call, as LTX-Video; ``guidance_rescale`` rescales against the
    conditional row the pipeline gets, C(LP I) + U(I) - U(LP I)."""

    name = "ltx-condition"
    pipelines = ("LTXConditionPipeline",)
    batched_args = (
        "hidden_states",
        "encoder_hidden_states",
        "timestep",
        "encoder_attention_mask",
        "video_coords",
    )
    pixel_image_args = ("conditions",)  # preprocessed image tensors [1, 3, 1, H, W] in [-1, 1]
    description = "LTX-Video 0.9.5+ LTXConditionPipeline (one image condition at frame 0)"

    def wraps(self, pipe: Any) -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
        return {"prepare_latents": functools.partial(_InitialLatents, pipe)}

    def _initial(self, pipe: Any) -> _InitialLatents:
        return recorded_call(self.name, pipe, "prepare_latents", _InitialLatents)

    def _clean_first_frame(self, pipe: Any, rows: int, like: torch.Tensor) -> torch.Tensor:
        """The clean image latent of the call, for ``rows`` denoiser rows (each CFG branch holds
        the call's b rows in order), in at least float32 and at least ``like``'s precision."""
        first = self._initial(pipe).first
        assert first is not None
        if rows % first.shape[0]:
            raise GuidanceKitError(
                f"ltx-condition: {rows} denoiser rows are not a multiple of the {first.shape[0]} rows of the "
                "initial latents"
            )
        dtype = torch.promote_types(torch.promote_types(first.dtype, like.dtype), torch.float32)
        first = first.to(device=like.device, dtype=dtype)
        return first.repeat(rows // first.shape[0], 1, 1, 1, 1)

    def _video(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return _recorded_video(self.name, pipe, self._initial(pipe).size, args)

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        hidden = args["hidden_states"]
        self._video(pipe, args)  # checks the layout
        return self._clean_first_frame(pipe, hidden.shape[0], hidden)

    def set_condition(self, pipe: Any, args: Arguments, condition: torch.Tensor) -> Arguments:
        # Frame 0 holds init + noise: replace init by the condition, keep the noise. Rows that keep
        # the original image get a shift of exactly 0, so they stay bit-identical.
        video = self._video(pipe, args)
        clean = self._clean_first_frame(pipe, video.shape[0], condition)
        first = video[:, :, :1]
        shifted = (first.to(clean.dtype) + (condition.to(clean.dtype) - clean)).to(first.dtype)
        packed = pipe._pack_latents(
            replace_channels(video, 2, 0, 1, shifted),
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )
        return {**args, "hidden_states": packed}

    def filter_pixel_image(
        self, pipe: Any, image: Any, args: Arguments, lowpass: Callable[[torch.Tensor], torch.Tensor]
    ) -> Any:
        return [lowpass(condition) for condition in image]

    def pixel_condition(self, pipe: Any, output: Any, args: Arguments) -> torch.Tensor:
        # prepare_latents returns (packed latents with the image latent on frame 0, mask, ids, extra)
        frames = (args["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1
        height = args["height"] // pipe.vae_spatial_compression_ratio
        width = args["width"] // pipe.vae_spatial_compression_ratio
        return self._unpack(pipe, output[0], frames, height, width)[:, :, :1]


class _LTX2Conditions(_InitialLatents):
    """``LTX2ConditionPipeline.prepare_latents`` inside a guide() block: records, for each pipeline
    call, the clean image latent the frame-0 tokens hold, the latent video size, and whatever about
    the call's conditions ALG cannot guide exactly. The conditions as the pipeline uses them
    (after its CRF re-compression, resizing, trimming and negative-index wrap) come from its own
    ``preprocess_conditions``, which this wrapper taps for the length of its call."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        pipe, seen = self.pipe, []
        preprocess = pipe.preprocess_conditions  # the pipeline's own (a bound method)

        def tap(*a: Any, **k: Any) -> Any:
            out = preprocess(*a, **k)
            seen.append(out)
            return out

        own = "preprocess_conditions" in vars(pipe)
        previous = vars(pipe).get("preprocess_conditions")
        pipe.preprocess_conditions = tap
        try:
            out = self.inner(*args, **kwargs)
        finally:
            if own:
                pipe.preprocess_conditions = previous
            else:
                del pipe.preprocess_conditions
        self.record_conditions(bound.arguments, seen, out)
        return out

    def record_conditions(self, arguments: dict[str, Any], seen: list[Any], out: Any) -> None:
        pipe = self.pipe
        frames, height, width = self.size = self._latent_size(arguments)
        self.first = None
        self.refusal = _ltx2_refusal(pipe, arguments, seen)
        if self.refusal is None:
            latents, mask, clean, keyframe_coords = out
            p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
            tokens = (frames // pt) * (height // p) * (width // p)
            first_tokens = tokens // (frames // pt)
            expected = torch.zeros_like(mask)
            expected[:, :first_tokens] = 1
            if keyframe_coords is not None or latents.shape[1] != tokens or not torch.equal(mask, expected):
                self.refusal = (
                    "prepare_latents returned conditioning that is not one clean frame-0 condition "
                    f"({latents.shape[1]} tokens for a {frames}x{height}x{width} latent video, conditioning "
                    f"mask sum {float(mask.sum()):.4g}); " + _LTX2_SUPPORTED
                )
                return
            video = LTXVideoBackend._unpack(pipe, clean, frames, height, width)
            self.first = video[:, :, :1].clone()


_LTX2_SUPPORTED = (
    "ALG supports one image condition, conditions=[LTX2VideoCondition(frames=image, index=0, strength=1.0)]"
)


def _ltx2_refusal(pipe: Any, arguments: dict[str, Any], seen: list[Any]) -> str | None:
    """Why ALG cannot guide an ``LTX2ConditionPipeline`` call exactly, or None for the one case it
    guides: one image condition at latent frame 0 with strength 1, on a deterministic scheduler."""
    given = arguments["conditions"]
    given = [] if given is None else given if isinstance(given, list | tuple) else [given]
    if len(given) == 0:
        return (
            "conditions: none in this call (text-to-video), so there is no image to filter; "
            + _LTX2_SUPPORTED
        )
    if len(given) > 1:
        return (
            f"conditions: {len(given)} conditions in this call (several images, videos or keyframes); "
            + _LTX2_SUPPORTED
        )
    if len(seen) != 1:
        return (
            f"prepare_latents ran preprocess_conditions {len(seen)} times, so the condition the pipeline "
            "encoded is unknown; " + _LTX2_SUPPORTED
        )
    pixels, strengths, indices, _ = seen[0]
    if len(pixels) == 0:  # the pipeline skipped it (index past the last latent frame)
        index = getattr(given[0], "index", None)
        return (
            f"index={index!r}: the pipeline skipped the condition (past the last latent frame), so there is "
            "no image to filter; " + _LTX2_SUPPORTED
        )
    if pixels[0].shape[2] > 1:
        return (
            f"frames: a video condition ({pixels[0].shape[2]} frames) covers several latent frames, which "
            "ALG does not filter; " + _LTX2_SUPPORTED
        )
    if indices[0] != 0:
        return (
            f"index={getattr(given[0], 'index', indices[0])!r}: a condition away from latent frame 0 enters as "
            "keyframe tokens appended to the sequence, not as the clean first frame; " + _LTX2_SUPPORTED
        )
    if strengths[0] != 1.0:
        return (
            f"strength={strengths[0]!r}: a partial-strength condition is a noise mix the pipeline "
            "denoises, not a clean image condition; " + _LTX2_SUPPORTED
        )
    if getattr(pipe.scheduler.config, "stochastic_sampling", False):
        return (
            "scheduler stochastic_sampling=True: the scheduler re-noises every token at every step, so the "
            "frame-0 tokens do not hold the clean image latent; use a scheduler with stochastic_sampling=False"
        )
    return None


class LTX2ConditionBackend(LTX2Backend):
    """LTX2ConditionPipeline (LTX-2) with one image condition at latent frame 0: the frame-0 tokens
    of the packed video latents hold the clean image latent (conditioning mask 1, timestep 0 there)
    and stay clean, since the pipeline blends the x0 prediction with the clean latents there and
    adds no per-step noise. As LTX-2 otherwise: video and audio outputs, a batched CFG call plus
    the spatio-temporal guidance and modality-isolation passes on the positive rows, combined in x0
    space. Conditions are given per call, so the backend wraps ``prepare_latents`` for the length
    of the block to learn them (and refuses, by name, every other kind: keyframes, videos, partial
    strength, several conditions, none). Pixel space is refused: the pipeline re-compresses each
    image with H.264 (``crf``) inside ``prepare_latents``, before its own preprocessing."""

    name = "ltx2-condition"
    pipelines = ("LTX2ConditionPipeline",)
    description = "LTX-2 LTX2ConditionPipeline (one image condition at frame 0; video + audio)"
    batched_args = (*LTX2Backend.batched_args, "audio_sigma")  # passed here, not by LTX2ImageToVideo
    pixel_refusal = (
        "LTX2ConditionPipeline re-compresses each condition image with H.264 (crf) and resizes it inside "
        "prepare_latents, per condition, so the preprocessed image has no encode path of its own to replay"
    )

    def wraps(self, pipe: Any) -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
        return {"prepare_latents": functools.partial(_LTX2Conditions, pipe)}

    def image_arguments(self, pipe: Any, image: Any, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``conditions=[LTX2VideoCondition(frames=image, index=0, strength=1.0)]`` with the model's
        default H.264 re-compression (``crf=None``) where PyAV is installed; without PyAV, which that
        re-compression needs, ``crf=0`` (no re-compression) and a warning."""
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
        from diffusers.utils import is_av_available

        crf = None
        if not is_av_available():
            warnings.warn(
                "ltx2-condition: PyAV is not installed, so the condition image is passed with crf=0 (no H.264 "
                "re-compression, which the model was trained with); install av for the model's default",
                UserWarning,
                stacklevel=2,
            )
            crf = 0
        return {"conditions": [LTX2VideoCondition(frames=image, index=0, strength=1.0, crf=crf)]}

    def _capture(self, pipe: Any) -> _LTX2Conditions:
        return recorded_call(self.name, pipe, "prepare_latents", _LTX2Conditions)

    def _video(self, pipe: Any, args: Arguments) -> torch.Tensor:
        return _recorded_video(self.name, pipe, self._capture(pipe).size, args)

    def get_condition(self, pipe: Any, args: Arguments) -> torch.Tensor:
        first = self._video(pipe, args)[:, :, :1]
        clean = self._capture(pipe).first
        assert clean is not None
        if first.shape[0] % clean.shape[0] or not torch.equal(
            first, clean.to(first).repeat(first.shape[0] // clean.shape[0], 1, 1, 1, 1)
        ):
            raise GuidanceKitError(
                "ltx2-condition: the frame-0 tokens of this denoiser call do not hold the clean image latent "
                "prepare_latents returned (was latents changed by a step callback, or the scheduler made "
                "stochastic?), so ALG cannot tell the image condition"
            )
        return first
