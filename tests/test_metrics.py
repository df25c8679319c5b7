"""Motion metrics on synthetic videos with known motion."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

import guidance_kit as gk
from guidance_kit import metrics


def texture(size=64, seed=0):
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((size * 2, size * 2, 3)), sigma=(2, 2, 0))
    base = (base - base.min()) / (base.max() - base.min())
    return base


def translating(speed: float, frames=9, size=64, seed=0) -> np.ndarray:
    """A smooth random texture sliding right by ``speed`` px per frame (sub-pixel by shift)."""
    tex = texture(size, seed)
    out = [ndimage.shift(tex, (0, speed * t, 0), order=1, mode="wrap")[:size, :size] for t in range(frames)]
    return np.stack(out).astype(np.float32)


def test_static_video_scores_zero():
    video = translating(0.0)
    assert metrics.motion_magnitude(video) < 0.01  # Farneback's numerical floor on identical frames
    assert metrics.flow_scores(video) == pytest.approx([0.0] * 8, abs=0.05)
    assert not metrics.is_dynamic(video)
    assert metrics.dynamic_degree([video]) == 0.0
    assert metrics.temporal_flicker(video) == 0.0


def test_motion_ranks_videos_by_speed():
    speeds = [0.0, 0.5, 1.0, 2.0, 4.0]
    motion = [metrics.motion_magnitude(translating(s)) for s in speeds]
    assert motion == sorted(motion) and len(set(motion)) == len(motion)
    flow = [np.mean(metrics.flow_scores(translating(s))) for s in speeds]
    assert flow == sorted(flow)
    assert motion[3] == pytest.approx(2.0, rel=0.25)  # Farneback recovers the true speed


def test_dynamic_degree_uses_resolution_scaled_threshold():
    # 64 px: threshold 6 * 64 / 256 = 1.5 px; 9 frames need round(4 * 9 / 16) = 2 moving pairs.
    slow, fast = translating(0.5), translating(3.0)
    assert not metrics.is_dynamic(slow) and metrics.is_dynamic(fast)
    assert metrics.dynamic_degree([slow, fast, fast, translating(0.0)]) == 0.5


def test_fps_sampling_takes_about_eight_frames_per_second():
    video = translating(1.0, frames=17)
    assert len(metrics.sample_frames(metrics.as_frames(video), fps=16)) == 9
    assert len(metrics.flow_scores(video, fps=16)) == 8


def test_video_formats_are_accepted():
    video = translating(1.0, frames=3)
    as_uint8 = (video * 255).round().astype(np.uint8)
    pil = [Image.fromarray(f) for f in as_uint8]
    tchw = torch.from_numpy(video).permute(0, 3, 1, 2)
    for v in (as_uint8, pil, tchw):
        np.testing.assert_allclose(metrics.as_frames(v), video, atol=1 / 255 + 1e-6)
    with pytest.raises(gk.InvalidParameterError, match=r"\[T, H, W, C\].*got shape \(3, 64\)"):
        metrics.as_frames(np.zeros((3, 64)))


def test_first_frame_fidelity():
    video = translating(1.0)
    same = metrics.first_frame_fidelity(video, video[0])
    assert same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0)
    noisy = np.clip(video[0] + np.random.default_rng(1).normal(0, 0.05, video[0].shape), 0, 1)
    worse = metrics.first_frame_fidelity(video, noisy)
    assert 20 < worse["psnr"] < 40 and worse["ssim"] < 0.99
    pil = Image.fromarray((video[0] * 255).round().astype(np.uint8)).resize((128, 128))
    assert metrics.first_frame_fidelity(video, pil)["psnr"] > 25  # resized to the frame size


def test_sharpness_exposes_blur():
    video = translating(1.0)
    blurred = ndimage.gaussian_filter(video, sigma=(0, 1.5, 1.5, 0))
    assert np.mean(metrics.sharpness(blurred)) < 0.5 * np.mean(metrics.sharpness(video))


def test_flicker_grows_with_frame_to_frame_change():
    video = translating(0.0)
    flicker = video.copy()
    flicker[1::2] = np.clip(flicker[1::2] + 0.2, 0, 1)
    assert metrics.temporal_flicker(flicker) > 0.1 > metrics.temporal_flicker(translating(1.0))


def test_flow_estimators_are_plugins():
    assert isinstance(metrics.flow_estimator("farneback"), gk.registry.lookup("flow", "farneback"))
    with pytest.raises(gk.InvalidParameterError, match="raft flow estimator needs a local weights file"):
        metrics.flow_estimator("raft")
    with pytest.raises(gk.UnknownNameError, match="unknown flow 'pwc'; registered flows: farneback, raft"):
        metrics.flow_estimator("pwc")


def test_summarize_has_every_metric():
    video = translating(2.0)
    row = metrics.summarize(video, image=video[0])
    assert set(row) == {
        "dynamic",
        "flow_score",
        "motion",
        "sharpness",
        "flicker",
        "first_frame_psnr",
        "first_frame_ssim",
    }
