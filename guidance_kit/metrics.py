"""Motion and quality metrics for generated videos.

A video is an array of frames ``[T, H, W, C]`` (numpy or torch, uint8 or float in [0, 1]), a
``[T, C, H, W]`` tensor, or a list of PIL images: whatever a diffusers pipeline returns for one
video. Optical flow comes from a registered flow estimator (``register_flow_estimators`` hook):
OpenCV Farneback is the built-in default (no weights); RAFT is available when the user has its
weights.

Dynamic degree follows VBench: for each pair of consecutive (sampled) frames, the flow score is
the mean of the top 5% flow magnitudes; a video is dynamic when at least round(4 * T / 16) scores
exceed 6 * min(H, W) / 256 pixels; dynamic degree is the share of videos judged dynamic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import torch
from scipy import ndimage

from guidance_kit import registry
from guidance_kit.errors import GuidanceKitError, InvalidParameterError, NonFiniteVideoError, brief
from guidance_kit.validators import check_number


class FlowEstimator(Protocol):
    """Dense optical flow between two RGB frames ``[H, W, 3]`` in [0, 1]: returns ``[H, W, 2]``
    displacements in pixels (x, y)."""

    name: str

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray: ...


# Float frames may overshoot [0, 1] by rounding in a decoder; anything further is another range.
RANGE_TOLERANCE = 1e-3


def as_frames(video: Any) -> np.ndarray:
    """Frames as float32 ``[T, H, W, 3]`` in [0, 1].

    Accepts uint8 in [0, 255] or floats in [0, 1]; other dtypes and ranges ([0, 255] floats,
    [-1, 1], uint16, int64) are refused rather than clipped into a meaningless score, and a video
    with NaN or inf values raises :class:`NonFiniteVideoError`.
    """
    if isinstance(video, list | tuple) and video and hasattr(video[0], "convert"):  # PIL images
        video = np.stack([np.asarray(frame.convert("RGB")) for frame in video])
    if isinstance(video, torch.Tensor):
        if video.is_complex():
            raise InvalidParameterError(f"a video must be real-valued, got dtype {video.dtype}")
        array = video.detach().cpu()
        array = (array.float() if array.is_floating_point() else array).numpy()
        if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(0, 2, 3, 1)  # [T, C, H, W] -> [T, H, W, C]
    else:
        try:
            array = np.asarray(video)
        except (ValueError, TypeError) as exc:  # ragged frames
            raise InvalidParameterError(
                f"a video must be an array of equal-sized frames: {brief(exc)}"
            ) from None
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape:
        raise InvalidParameterError(
            f"a video must be [T, H, W, C] or [T, C, H, W] with C in (1, 3) and no empty axis, got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        array = _checked_float(array)
    else:
        raise InvalidParameterError(
            f"a video must be uint8 in [0, 255] or float in [0, 1], got dtype {array.dtype}; "
            "convert it first (e.g. uint16: x / 65535)"
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _checked_float(array: np.ndarray) -> np.ndarray:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise NonFiniteVideoError(
            f"the video has {bad} NaN or infinite values of {array.size}: its metrics are undefined"
        )
    low, high = float(array.min()), float(array.max())
    if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        hint = "divide [0, 255] frames by 255" if high > 1.5 else "map [-1, 1] frames with (x + 1) / 2"
        raise InvalidParameterError(
            f"float video frames must be in [0, 1], got values in [{low:.4g}, {high:.4g}]; {hint}"
        )
    return array


def flow_estimator(name: str = "farneback", **params: Any) -> FlowEstimator:
    """A registered flow estimator by name (``"farneback"``, ``"raft"``, or a plugin's)."""
    estimator = registry.lookup("flow", name)
    try:
        return estimator(**params)
    except GuidanceKitError:
        raise
    except Exception as exc:  # unknown parameters, missing weights: name the estimator
        raise InvalidParameterError(f"flow estimator {name!r}: {type(exc).__name__}: {brief(exc)}") from None


def sample_frames(frames: np.ndarray, fps: float | None) -> np.ndarray:
    """VBench samples about 8 frames per second before measuring flow."""
    if fps is None:
        return frames
    step = max(1, round(check_number("fps", fps, lo=0, lo_open=True) / 8))
    return frames[::step]


def flow_scores(video: Any, estimator: FlowEstimator | None = None, fps: float | None = None) -> list[float]:
    """Per consecutive frame pair: mean of the top 5% flow magnitudes (VBench's score)."""
    frames = sample_frames(as_frames(video), fps)
    estimator = estimator or flow_estimator()
    scores = []
    for first, second in zip(frames[:-1], frames[1:]):
        magnitude = np.linalg.norm(estimator(first, second), axis=-1).ravel()
        cut = max(1, int(magnitude.size * 0.05))
        scores.append(float(np.sort(magnitude)[::-1][:cut].mean()))
    return scores


def is_dynamic(video: Any, estimator: FlowEstimator | None = None, fps: float | None = None) -> bool:
    """VBench's decision: enough frame pairs move more than a resolution-scaled threshold."""
    frames = sample_frames(as_frames(video), fps)
    threshold = 6.0 * min(frames.shape[1:3]) / 256.0
    needed = max(1, round(4 * len(frames) / 16.0))
    scores = flow_scores(frames, estimator)
    return sum(score > threshold for score in scores) >= needed


def dynamic_degree(
    videos: Iterable[Any], estimator: FlowEstimator | None = None, fps: float | None = None
) -> float:
    """Share of ``videos`` judged dynamic (VBench dynamic degree, in [0, 1])."""
    estimator = estimator or flow_estimator()
    verdicts = [is_dynamic(video, estimator, fps) for video in videos]
    if not verdicts:
        raise InvalidParameterError("dynamic_degree needs at least one video")
    return sum(verdicts) / len(verdicts)


def motion_magnitude(video: Any, estimator: FlowEstimator | None = None) -> float:
    """Mean optical-flow magnitude (pixels per frame) over all pixels and frame pairs."""
    frames = as_frames(video)
    estimator = estimator or flow_estimator()
    if len(frames) < 2:
        return 0.0
    return float(
        np.mean([np.linalg.norm(estimator(a, b), axis=-1).mean() for a, b in zip(frames[:-1], frames[1:])])
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, averaged over channels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]

        def blur(z: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(z, sigma, truncate=3.5)

        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s.mean())
    return float(np.mean(values))


def first_frame_fidelity(video: Any, image: Any) -> dict[str, float]:
    """PSNR and SSIM of the first frame against the conditioning image (resized to the frame)."""
    frames = as_frames(video)
    reference = as_frames([image] if hasattr(image, "convert") else np.asarray(image)[None])[0]
    if reference.shape != frames[0].shape:
        from PIL import Image

        pil = Image.fromarray((reference * 255).round().astype(np.uint8))
        reference = np.asarray(pil.resize(frames[0].shape[1::-1], Image.BICUBIC), np.float32) / 255.0
    return {"psnr": psnr(frames[0], reference), "ssim": ssim(frames[0], reference)}


def sharpness(video: Any, cutoff: float = 0.25) -> list[float]:
    """Per frame: share of the (mean-removed) spectral energy above ``cutoff`` cycles/pixel.

    The blur that naive low-pass guidance leaves in the output lowers it."""
    cutoff = check_number("sharpness cutoff", cutoff, lo=0, hi=0.75, what="cycles per pixel")
    frames = as_frames(video).mean(axis=-1)
    fy = np.fft.fftfreq(frames.shape[1])[:, None]
    fx = np.fft.fftfreq(frames.shape[2])[None, :]
    high = np.sqrt(fy**2 + fx**2) > cutoff
    out = []
    for frame in frames:
        power = np.abs(np.fft.fft2(frame - frame.mean())) ** 2
        total = power.sum()
        out.append(float(power[high].sum() / total) if total > 0 else 0.0)
    return out


def temporal_flicker(video: Any) -> float:
    """Mean absolute difference between consecutive frames, in [0, 1] (VBench's temporal
    flickering reports 1 minus this on the 255 scale); 0 for a static video."""
    frames = as_frames(video)
    if len(frames) < 2:
        return 0.0
    return float(np.abs(np.diff(frames, axis=0)).mean())


def summarize(
    video: Any, image: Any | None = None, estimator: FlowEstimator | None = None
) -> dict[str, float]:
    """Every per-video metric in one dict (the ablation runner's row)."""
    estimator = estimator or flow_estimator()
    scores = flow_scores(video, estimator)
    row = {
        "dynamic": float(is_dynamic(video, estimator)),
        "flow_score": float(np.mean(scores)) if scores else 0.0,
        "motion": motion_magnitude(video, estimator),
        "sharpness": float(np.mean(sharpness(video))),
        "flicker": temporal_flicker(video),
    }
    if image is not None:
        row.update({f"first_frame_{k}": v for k, v in first_frame_fidelity(video, image).items()})
    return row
