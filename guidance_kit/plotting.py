"""Plots: a recipe's strength per step, its filter at several strengths (image and spectrum), and
an ablation's cells (means with standard-error bars, one labelled point or bar per cell)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from guidance_kit.recipe import Recipe
from guidance_kit.types import progress

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(recipe: Recipe, steps: int, path: str | Path, trace: Sequence[Any] | None = None) -> Path:
    """Strength per denoising step and over the noise level (and, with a trace, what ran: each
    step's strength, noise level and passes; without one, an unshifted flow schedule's levels)."""
    plt = _pyplot()
    if trace:
        strengths = [r.strength for r in trace]
        levels = [r.noise_level for r in trace]
        guidance = [r.guidance for r in trace] if recipe.guidance is not None else None
    else:
        strengths = _strengths(recipe, steps)
        levels = [1.0 - progress(i, steps) for i in range(steps)]
        guidance = [recipe.guidance(i, steps) for i in range(steps)] if recipe.guidance is not None else None
    fig, (ax, by_level) = plt.subplots(1, 2, figsize=(10, 3))
    ax.step(range(len(strengths)), strengths, where="mid", label="filter strength")
    if guidance is not None:
        ax.step(range(len(guidance)), guidance, where="mid", linestyle="--", label="guidance g")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("denoising step")
    ax.set_ylabel("strength")
    ax.set_ylim(-0.05, 1.05)
    if trace:
        twin = ax.twinx()
        twin.bar([r.step for r in trace], [r.passes for r in trace], alpha=0.25, color="gray", label="passes")
        twin.set_ylabel("denoiser passes")
    ax.set_title(
        f"{recipe.schedule.name} {recipe.schedule.params()}  ({recipe.mode}, {recipe.space})", fontsize=8
    )
    if all(level is not None for level in levels):
        by_level.plot(levels, strengths, marker="o", markersize=3)
        by_level.invert_xaxis()  # denoising runs from pure noise (1) towards 0
        source = "the run's scheduler" if trace else "an unshifted flow schedule, 1 - p"
        by_level.set_xlabel(f"noise level ({source})")
        by_level.set_ylim(-0.05, 1.05)
    else:
        by_level.axis("off")
        by_level.text(0.5, 0.5, "the scheduler gives no noise level", ha="center", va="center")
    return _save(fig, path)


def _strengths(recipe: Recipe | None, steps: int) -> list[float]:
    """The strength per step, 0 where the filter does nothing (e.g. down/up factor 1)."""
    if recipe is None:
        return [0.0] * steps
    strengths = [recipe.schedule(i, steps) for i in range(steps)]
    return [0.0 if recipe.filter.is_identity(s) else s for s in strengths]


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _errors(estimates: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard errors of report estimates (0 where a cell has one video)."""
    means = np.array([e.mean for e in estimates], dtype=float)
    return means, np.nan_to_num(np.array([e.se for e in estimates], dtype=float))


def plot_tradeoff(
    labels: Sequence[str],
    x: Sequence[Any],
    y: Sequence[Any],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    baseline: int = 0,
    title: str = "",
) -> Path:
    """One labelled point per cell at its means, with standard-error bars on both axes."""
    plt = _pyplot()
    (xm, xe), (ym, ye) = _errors(x), _errors(y)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, label in enumerate(labels):
        marker = "s" if i == baseline else "o"
        ax.errorbar(xm[i], ym[i], xerr=xe[i], yerr=ye[i], fmt=marker, capsize=3, label=label, markersize=7)
        ax.annotate(label, (xm[i], ym[i]), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best", title="cell (square: baseline)", title_fontsize=8)
    return _save(fig, path)


def plot_metrics_vs_parameter(
    xs: Sequence[float],
    series: dict[str, Sequence[Any]],
    path: str | Path,
    xlabel: str,
    references: dict[str, Sequence[Any]] | None = None,
    title: str = "",
) -> Path:
    """One panel per metric: the mean (± standard error) along the swept parameter; each
    ``references`` cell (e.g. the unfiltered baseline) as a horizontal line with its band."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.6), squeeze=False)
    for j, (ax, (metric, estimates)) in enumerate(zip(axes[0], series.items())):
        means, errors = _errors(estimates)
        ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label="swept")
        for k, (label, values) in enumerate((references or {}).items()):
            mean, error = _errors([values[j]])
            color = f"C{k + 1}"
            ax.axhline(mean[0], color=color, linestyle="--", label=label)
            ax.axhspan(mean[0] - error[0], mean[0] + error[0], color=color, alpha=0.15)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_metrics_per_cell(
    labels: Sequence[str],
    series: dict[str, Sequence[Any]],
    path: str | Path,
    baseline: int = 0,
    title: str = "",
) -> Path:
    """One panel per metric: a bar per cell at its mean with a standard-error bar; the baseline hatched."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(series), figsize=(max(4.0, 0.7 * len(labels) + 1.5) * len(series), 4.2), squeeze=False
    )
    positions = np.arange(len(labels))
    for ax, (metric, estimates) in zip(axes[0], series.items()):
        means, errors = _errors(estimates)
        bars = ax.bar(positions, means, yerr=errors, capsize=3, color=[f"C{i}" for i in positions])
        bars[baseline].set_hatch("//")
        ax.set_xticks(positions, labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(metric)
    fig.suptitle(f"{title} (hatched: baseline)", fontsize=10)
    return _save(fig, path)


def plot_schedules(
    labels: Sequence[str], recipes: Sequence[Recipe | None], steps: int, path: str | Path
) -> Path:
    """Filter strength per denoising step, one small panel per cell (None: the plain pipeline)."""
    plt = _pyplot()
    columns = min(len(labels), 3)
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.2 * rows), squeeze=False, sharey=True)
    for ax, label, recipe in zip(axes.flat, labels, recipes):
        ax.step(range(steps), _strengths(recipe, steps), where="mid")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("denoising step", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("strength", fontsize=8)
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    return _save(fig, path)


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
    images_path = _save(fig, folder / "filtered.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s, img in zip(strengths, filtered):
        freq, power = radial_power(img)
        ax.semilogy(freq, power, label=f"s = {s:g}")
    ax.set_xlabel("radial frequency (cycles / pixel)")
    ax.set_ylabel("power")
    ax.legend(fontsize=8)
    ax.set_title(f"spectrum: {recipe.filter.name}", fontsize=9)
    spectrum_path = _save(fig, folder / "spectrum.png")
    return [images_path, spectrum_path]
