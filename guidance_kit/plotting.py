"""Plots: a recipe's strength per step, and its filter at several strengths (image and spectrum)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from guidance_kit.recipe import Recipe

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(recipe: Recipe, steps: int, path: str | Path, trace: Sequence[Any] | None = None) -> Path:
    """Strength per denoising step (and, with a trace, the passes each step cost)."""
    plt = _pyplot()
    strengths = [recipe.schedule(i, steps) for i in range(steps)]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.step(range(steps), strengths, where="mid", label="strength")
    ax.set_xlabel("denoising step")
    ax.set_ylabel("filter strength")
    ax.set_ylim(-0.05, 1.05)
    if trace:
        twin = ax.twinx()
        twin.bar([r.step for r in trace], [r.passes for r in trace], alpha=0.25, color="gray", label="passes")
        twin.set_ylabel("denoiser passes")
    ax.set_title(
        f"{recipe.schedule.name} {recipe.schedule.params()}  ({recipe.mode}, {recipe.space})", fontsize=8
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def radial_power(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean spectral power per radial frequency bin (cycles/pixel) of a grayscale image."""
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    power = np.abs(np.fft.fft2(gray - gray.mean())) ** 2
    fy = np.fft.fftfreq(gray.shape[0])[:, None]
    fx = np.fft.fftfreq(gray.shape[1])[None, :]
    radius = np.sqrt(fy**2 + fx**2).ravel()
    bins = np.linspace(0, 0.71, 36)
    index = np.digitize(radius, bins)
    flat = power.ravel()
    means = np.array([flat[index == i].mean() if np.any(index == i) else np.nan for i in range(1, len(bins))])
    return 0.5 * (bins[1:] + bins[:-1]), means


def plot_filter(
    recipe: Recipe, image: np.ndarray, folder: str | Path, strengths: Sequence[float] = STRENGTHS
) -> list[Path]:
    """The recipe's filter applied to ``image`` ([H, W, 3] in [0, 1]) at several strengths, and
    the radial power spectrum of each."""
    plt = _pyplot()
    folder = Path(folder)
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).double()
    filtered = [recipe.filter(x, s).clamp(0, 1).numpy().transpose(1, 2, 0) for s in strengths]
    fig, axes = plt.subplots(1, len(strengths), figsize=(2.4 * len(strengths), 2.6))
    for ax, s, img in zip(axes, strengths, filtered):
        ax.imshow(img)
        ax.set_title(f"s = {s:g}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{recipe.filter.name} {recipe.filter.params()}", fontsize=9)
    fig.tight_layout()
    images_path = folder / "filtered.png"
    fig.savefig(images_path, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s, img in zip(strengths, filtered):
        freq, power = radial_power(img)
        ax.semilogy(freq, power, label=f"s = {s:g}")
    ax.set_xlabel("radial frequency (cycles / pixel)")
    ax.set_ylabel("power")
    ax.legend(fontsize=8)
    ax.set_title(f"spectrum: {recipe.filter.name}", fontsize=9)
    fig.tight_layout()
    spectrum_path = folder / "spectrum.png"
    fig.savefig(spectrum_path, dpi=100)
    plt.close(fig)
    return [images_path, spectrum_path]
