"""A toy world built to contain the shortcut ALG targets, small enough to train and sample on a CPU.

Clips are procedurally generated camera pans over a periodic texture of large shapes covered by a
faint checker grain of 2 x 2 pixel cells (one cell per latent position), rendered with physically
integrated motion blur: each frame averages the texture over sub-frame positions across an open
shutter, so static clips are sharp (grainy) and pans are blurred (the blur erases the grain; so
does ALG's default latent low-pass filter). A share of the pans is shot with a fast shutter and
stays sharp, so a sharp first frame means *mostly* static. Every caption names a direction ("moving
right", ...), a random one for a static clip: the caption tells where a clip moves if it moves,
only the image tells whether it does. Captions are dropped for CFG.

The model is a small ``WanTransformer3DModel`` in the Wan 2.1 I2V layout (channels: noisy latents,
4 mask channels, image latents; no CLIP image embedding), trained with flow matching (noise levels
drawn as the sampler spaces its steps) on conditions built by the stock
``WanImageToVideoPipeline.prepare_latents``, so the stock pipeline samples it and
``guidance_kit.guide`` runs unmodified. The VAE is a fixed lossless pixel shuffle (2x2 spatial, 4
frames per latent frame after a lone first frame, as Wan's causal VAE groups them). Shipped
weights: ``testbed.safetensors``; ``guidance-kit testbed train`` reproduces them. What ALG does
here is measured, not assumed: see docs/testbed.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from guidance_kit.tiny import _WAN_TRANSFORMER, _embeds, ready

SIZE = 32  # frame height and width (pixels)
FRAMES = 9  # Wan's 4k + 1
SUPERSAMPLE = 2  # the texture is drawn at 2x resolution, so sub-pixel motion blurs smoothly
SHUTTER_SAMPLES = 12  # sub-frame positions averaged per frame
GRAIN = 2  # the fine grain: a checker of GRAIN x GRAIN pixel cells, one cell per latent position
GRAIN_CONTRAST = 0.07  # +- this around the colour (pixel values in [0, 1]): plain to see in the
# clean condition, small beside the shapes, so the noisy latents' power (and motion) sits in the shapes
SHAPES, RADII = 6, (4.0, 10.0)  # discs and squares per texture, their radius range (pixels)
STATIC_SHARE = 0.5
SPEEDS = (4.0, 4.0)  # pixels per frame for moving clips: the blur (a box of 4 px) erases the grain exactly
SHARP_MOVING_SHARE = 0.1  # moving clips shot with a fast shutter (sharp): sharp means *mostly* static
CAPTION_DROPOUT = 0.2  # trains the null caption that CFG's unconditional branch uses
SHIFT = 3.0  # the sampler's flow-matching timestep shift
DIRECTIONS = {"moving right": (1, 0), "moving left": (-1, 0), "moving down": (0, 1), "moving up": (0, -1)}
CAPTIONS = ("", "static", *DIRECTIONS)  # "static" is never a training caption (kept for the embeddings)
PROMPT = "moving right"  # the call's prompt: a motion request, like a user's
WEIGHTS = "testbed.safetensors"
TRAIN = {"steps": 2500, "batch": 8, "lr": 2e-3, "seed": 0}  # the shipped weights' settings
_TRAIN_STREAM, _HELD_OUT_STREAM = 1, 2  # disjoint random streams for training clips and test images

TRANSFORMER = {
    **_WAN_TRANSFORMER,
    "num_attention_heads": 4,
    "attention_head_dim": 64,  # width 256: a token carries 2 x 2 x 4 pixels of latents and condition
    "in_channels": 48 + 4 + 48,
    "out_channels": 48,
    "freq_dim": 64,
    "ffn_dim": 512,
    "num_layers": 3,
    "image_dim": None,
}
_TEXT_TOKENS = 4


@attrs.frozen
class Clip:
    frames: np.ndarray  # uint8 [FRAMES, SIZE, SIZE, 3]
    caption: str
    velocity: tuple[float, float]  # pixels per frame (x, y)


# --- the world -----------------------------------------------------------------------------------


def texture(rng: np.random.Generator) -> np.ndarray:
    """A periodic RGB texture ``[S*SIZE, S*SIZE, 3]`` in [0, 1]: a background colour and large
    hard-edged discs and squares (the coarse structure motion is seen in, even at high noise),
    covered everywhere by a faint checker grain of ``GRAIN``-pixel cells aligned with the VAE's
    2 x 2 pixel latent positions (the fine detail that motion blur, and a latent low-pass filter,
    erase)."""
    n = SIZE * SUPERSAMPLE
    canvas = np.broadcast_to(rng.random(3, dtype=np.float32), (n, n, 3)).copy()
    yy, xx = np.mgrid[0:n, 0:n] / SUPERSAMPLE  # output-pixel units
    for _ in range(SHAPES):
        cy, cx = rng.random(2) * SIZE
        dy = (yy - cy + SIZE / 2) % SIZE - SIZE / 2  # torus distances: the texture wraps
        dx = (xx - cx + SIZE / 2) % SIZE - SIZE / 2
        radius = rng.uniform(*RADII)
        inside = np.hypot(dx, dy) < radius if rng.random() < 0.5 else np.maximum(abs(dx), abs(dy)) < radius
        canvas = np.where(inside[..., None], rng.random(3, dtype=np.float32), canvas)
    parity = int(rng.integers(2))
    grain = ((xx // GRAIN + yy // GRAIN + parity) % 2) * 2 - 1  # +-1 checker
    scale = 1 - 2 * GRAIN_CONTRAST
    return (GRAIN_CONTRAST + scale * canvas + GRAIN_CONTRAST * grain[..., None]).astype(np.float32)


def render(
    tex: np.ndarray, velocity: tuple[float, float], frames: int = FRAMES, shutter: bool = True
) -> np.ndarray:
    """Frames of a camera pan at ``velocity`` (pixels per frame), box-downsampled. With the
    shutter open for the whole frame (``shutter``), each frame is the mean of the texture over the
    sub-frame positions it sweeps (motion blur); closed, each frame is one sharp position."""
    out = np.empty((frames, SIZE, SIZE, 3), np.float32)
    samples = SHUTTER_SAMPLES if shutter else 1
    for t in range(frames):
        acc = np.zeros_like(tex)
        for j in range(samples):
            when = t + (j + 0.5) / samples - 0.5  # the shutter is centred on the frame time
            shift = [round(v * when * SUPERSAMPLE) for v in velocity[::-1]]
            acc += np.roll(tex, shift, axis=(0, 1))
        acc /= samples
        out[t] = acc.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return (out * 255).round().astype(np.uint8)


def sample_clip(rng: np.random.Generator) -> Clip:
    """One clip with its caption. Static (sharp) or a pan in one of four directions (blurred, or
    sharp with a fast shutter); the caption always names a direction, a random one for a static
    clip, so it tells where a clip moves if it moves but never whether it moves: only the image
    (sharp or blurred) does."""
    tex = texture(rng)
    caption = str(rng.choice(list(DIRECTIONS)))
    if rng.random() < STATIC_SHARE:
        velocity, shutter = (0.0, 0.0), True
    else:
        speed = rng.uniform(*SPEEDS)
        velocity = (DIRECTIONS[caption][0] * speed, DIRECTIONS[caption][1] * speed)
        shutter = rng.random() >= SHARP_MOVING_SHARE
    if rng.random() < CAPTION_DROPOUT:
        caption = ""
    return Clip(render(tex, velocity, shutter=shutter), caption, velocity)


def training_clips(n: int, seed: int, step: int) -> list[Clip]:
    rng = np.random.default_rng([_TRAIN_STREAM, seed, step])
    return [sample_clip(rng) for _ in range(n)]


def image(index: int, seed: int = 0) -> Image.Image:
    """A sharp held-out conditioning image (a texture no training clip uses)."""
    tex = texture(np.random.default_rng([_HELD_OUT_STREAM, seed, index]))
    return Image.fromarray(render(tex, (0.0, 0.0), frames=1)[0])


def images(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` sharp held-out conditioning images."""
    return [image(i, seed) for i in range(n)]


def sweep_images(n: int = 16) -> list[str]:
    """Image sources of the first ``n`` held-out images (``testbed:<k>``), what ``guidance-kit
    ablate --model testbed`` runs a sweep on unless ``--images`` is given."""
    return [f"testbed:{k}" for k in range(n)]


def rightward_flow(video: Any, estimator: Any = None) -> float:
    """Mean horizontal optical flow (pixels per frame, positive to the right) of a video: the
    call's prompt asks for a pan to the right (``PROMPT``), so this is motion in the asked
    direction (a pan right moves content right)."""
    from guidance_kit import metrics

    frames = metrics.as_frames(video)
    estimator = estimator or metrics.flow_estimator()
    return float(np.mean([estimator(a, b)[..., 0].mean() for a, b in zip(frames[:-1], frames[1:])]))


def prompt_embeds(caption: str) -> torch.Tensor:
    """The fixed text embedding of a caption (the null caption "" is CFG's negative prompt)."""
    return _embeds(100 + CAPTIONS.index(caption), 1, _TEXT_TOKENS, TRANSFORMER["text_dim"])


# --- the VAE -------------------------------------------------------------------------------------


class PixelShuffleVAE(ModelMixin, ConfigMixin):
    """A fixed, lossless autoencoder with the interface ``WanImageToVideoPipeline`` uses: 2x2
    pixels and 4 frames per latent position (the first frame alone, repeated, as in Wan's causal
    VAE), so ``z_dim`` = 3 * 4 * 2 * 2 = 48."""

    @register_to_config
    def __init__(
        self,
        scale_factor_spatial: int = 2,
        scale_factor_temporal: int = 4,
        z_dim: int = 48,
        latents_mean: tuple[float, ...] = (0.0,) * 48,
        latents_std: tuple[float, ...] = (0.5,) * 48,  # about the pixel std of the world's clips
    ):
        super().__init__()
        self.register_buffer("_dtype_anchor", torch.zeros(()), persistent=False)  # dtype and device

    def _shape(self, video: torch.Tensor) -> tuple[int, int, int, int, int, int]:
        b, c, f, h, w = video.shape
        s, t = self.config.scale_factor_spatial, self.config.scale_factor_temporal
        return b, c, t, s, h // s, w // s

    def encode(self, video: torch.Tensor, return_dict: bool = True) -> Any:
        b, c, t, s, h, w = self._shape(video)
        first = video[:, :, :1].expand(-1, -1, t, -1, -1)
        grouped = torch.cat([first, video[:, :, 1:]], dim=2).to(self.dtype)  # [B, C, t*n, H, W]
        n = grouped.shape[2] // t
        z = grouped.reshape(b, c, n, t, h, s, w, s).permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, -1, n, h, w)
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.zeros_like(z)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> Any:
        s, t = self.config.scale_factor_spatial, self.config.scale_factor_temporal
        b, _, n, h, w = z.shape
        grouped = z.reshape(b, 3, t, s, s, n, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        grouped = grouped.reshape(b, 3, n * t, h * s, w * s)
        first = grouped[:, :, :t].mean(dim=2, keepdim=True)  # the model's copies of frame 0
        video = torch.cat([first, grouped[:, :, t:]], dim=2).clamp(-1, 1)
        return DecoderOutput(sample=video) if return_dict else (video,)


# --- the pipeline --------------------------------------------------------------------------------


def build_pipeline(transformer: Any = None, seed: int = 0) -> Any:
    """The stock ``WanImageToVideoPipeline`` around a testbed transformer (random when None)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    if transformer is None:
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**TRANSFORMER)
    return WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=PixelShuffleVAE(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT),
        transformer=transformer,
    )


def call_kwargs(prompt: str = PROMPT) -> dict[str, Any]:
    return {
        "prompt_embeds": prompt_embeds(prompt),
        "negative_prompt_embeds": prompt_embeds(""),
        "height": SIZE,
        "width": SIZE,
        "num_frames": FRAMES,
        "guidance_scale": 5.0,
    }


def weights_path() -> Path:
    return Path(str(resources.files("guidance_kit") / WEIGHTS))


def load(
    device: str = "cpu", dtype: torch.dtype = torch.float32, weights: str | Path | None = None
) -> tuple[Any, dict[str, Any]]:
    """The trained testbed pipeline and the keyword arguments (without image, steps and
    generator) of a valid call, like ``guidance_kit.tiny.tiny_pipeline``."""
    from safetensors.torch import load_file

    pipe = build_pipeline()
    pipe.transformer.load_state_dict(load_file(str(weights or weights_path())))
    pipe, kwargs = ready(pipe, call_kwargs(), dtype)
    return pipe.to(device), kwargs


# --- training ------------------------------------------------------------------------------------


def _batch(pipe: Any, clips: list[Clip]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean latents, condition, text embeddings): the condition comes from the pipeline's own
    ``prepare_latents``, one clip at a time (it repeats one image over the batch)."""
    video = torch.from_numpy(np.stack([c.frames for c in clips])).float().div(127.5).sub(1.0)
    video = video.permute(0, 4, 1, 2, 3)  # [B, C, F, H, W], in [-1, 1] like the video processor's
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    latents = (vae.encode(video).latent_dist.mode() - mean) / std
    conditions = [
        pipe.prepare_latents(frame[None], 1, vae.config.z_dim, SIZE, SIZE, FRAMES, torch.float32, "cpu")[1]
        for frame in video[:, :, 0]
    ]
    text = torch.cat([prompt_embeds(c.caption) for c in clips])
    return latents, torch.cat(conditions), text


def flow_matching_loss(pipe: Any, clips: list[Clip], generator: torch.Generator) -> torch.Tensor:
    """Wan's objective: x_t = (1 - sigma) x0 + sigma noise, predict the velocity noise - x0
    (timestep = 1000 sigma), with sigma drawn as the sampler spaces its steps (uniform, then
    shifted by ``SHIFT``): most training, like most sampling steps, is at high noise, where the
    model must learn to read a clip's motion from the noisy latents (and keep motion the early
    steps began) instead of from the condition alone."""
    latents, condition, text = _batch(pipe, clips)
    u = torch.rand(len(clips), generator=generator)
    sigma = (SHIFT * u / (1 + (SHIFT - 1) * u)).view(-1, 1, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=generator)
    noisy = (1 - sigma) * latents + sigma * noise
    pred = pipe.transformer(
        hidden_states=torch.cat([noisy, condition], dim=1),
        timestep=sigma.flatten() * 1000,
        encoder_hidden_states=text,
        return_dict=False,
    )[0]
    return torch.nn.functional.mse_loss(pred, noise - latents)


def train(
    out: str | Path,
    steps: int = TRAIN["steps"],
    batch: int = TRAIN["batch"],
    lr: float = TRAIN["lr"],
    seed: int = TRAIN["seed"],
    threads: int | None = None,
    log: Callable[[str], None] = print,
    checkpoint_every: int = 0,
) -> Path:
    """Train the testbed transformer from scratch and save its weights (safetensors)."""
    meta = {"steps": steps, "batch": batch, "lr": lr, "seed": seed}
    if threads:
        torch.set_num_threads(threads)
    pipe = build_pipeline(seed=seed)
    model = pipe.transformer.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i / steps, 1.0)))
    )
    generator = torch.Generator().manual_seed(seed)
    start, running = time.perf_counter(), None
    for step in range(steps):
        loss = flow_matching_loss(pipe, training_clips(batch, seed, step), generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:5d}  loss {running:.4f}  {time.perf_counter() - start:6.0f} s")
        if checkpoint_every and step and step % checkpoint_every == 0:
            _save(model, Path(out).with_suffix(f".step{step}.safetensors"), meta)
    return _save(model, Path(out), meta)


def _save(model: torch.nn.Module, out: Path, meta: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), {"train": json.dumps(meta)})
    return out
