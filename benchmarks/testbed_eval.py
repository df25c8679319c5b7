"""ALG on the testbed: motion and first-frame fidelity over held-out images x seeds.

Runs the plain pipeline, ALG (the Wan 2.1 default), naive blur, all terms filtered, and the
window-length and filter-strength sweeps (the shipped sweep files) on ``guidance_kit.testbed``,
then writes mean +- standard error per condition and the paired difference to the plain pipeline
(same image, same seed; paired t-test) as markdown between the result markers of
``docs/testbed.md``::

    python benchmarks/testbed_eval.py --images 32 --seeds 0 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from guidance_kit import metrics, recipes, testbed
from guidance_kit.ablation import Sweep, resolve_sweep
from guidance_kit.generate import TESTBED, Loaded, generate, load
from guidance_kit.recipe import Recipe

DOC = Path(__file__).resolve().parent.parent / "docs" / "testbed.md"
START, END = "<!-- testbed-results:start -->", "<!-- testbed-results:end -->"
COLUMNS = {  # row key -> (column title, decimals)
    "dynamic": ("dynamic degree", 2),
    "flow_score": ("flow score (px)", 2),
    "motion": ("mean flow (px/frame)", 3),
    "rightward": ("rightward flow (px/frame)", 3),
    "first_frame_psnr": ("first-frame PSNR (dB)", 2),
    "first_frame_ssim": ("first-frame SSIM", 3),
    "sharpness": ("sharpness", 4),
}
PAIRED = ("motion", "rightward", "dynamic", "first_frame_psnr")  # differences to plain, with p-values


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(
            [value.get("name", ""), *(f"{k}={v}" for k, v in value.items() if k != "name")]
        ).strip()
    return str(value)


def conditions() -> dict[str, Recipe | None]:
    """Condition label -> recipe (None: the plain pipeline); a sweep point equal to an earlier
    condition (the window-length and filter-strength sweeps both contain ALG) is run once."""
    found: dict[str, Recipe | None] = {
        "plain": None,
        "ALG (Wan 2.1 default)": recipes.get("alg", backend="wan2.1"),
        "naive blur": recipes.get("naive-blur"),
        "all terms filtered": recipes.get("alg-all-terms"),
    }
    for name in ("window-length", "filter-strength"):
        sweep = Sweep.load(resolve_sweep(name))
        keys = list(sweep.grid)
        for values in itertools.product(*(sweep.grid[k] for k in keys)):
            params = dict(zip(keys, values))
            recipe = sweep.recipe_for(params)
            if recipe not in found.values():
                label = ", ".join(f"{k.split('.')[-1]} {_short(v)}" for k, v in params.items())
                found[f"{name}: {label}"] = recipe
    return found


def rightward(video: np.ndarray, estimator: Any) -> float:
    """Mean horizontal flow (pixels per frame, positive to the right): the prompt asks for a pan
    to the right, so this is motion in the asked direction (a pan right moves content right)."""
    return float(np.mean([estimator(a, b)[..., 0].mean() for a, b in zip(video[:-1], video[1:])]))


def measure(
    labels: list[str],
    n_images: int,
    seeds: list[int],
    steps: int,
    log: Any = print,
    weights: Path | None = None,
) -> dict[str, list[dict[str, float]]]:
    """Per condition: one metrics row per (image, seed), in the same order for every condition."""
    loaded = Loaded(*testbed.load(weights=weights), True, TESTBED) if weights else load(TESTBED)
    estimator = metrics.flow_estimator()
    table = conditions()
    images = testbed.images(n_images)
    rows: dict[str, list[dict[str, float]]] = {}
    for label in labels:
        start = time.perf_counter()
        rows[label] = []
        for image, seed in itertools.product(images, seeds):
            video, run = generate(loaded, image, table[label], steps=steps, seed=seed)
            row = metrics.summarize(video, image, estimator)
            row["rightward"] = rightward(video, estimator)
            row["passes"] = run.last.passes if run else 2 * steps
            rows[label].append(row)
        log(f"{label}: {len(rows[label])} videos, {time.perf_counter() - start:.0f} s")
    return rows


def _cell(values: np.ndarray, decimals: int) -> str:
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.{decimals}f} ± {se:.{decimals}f}"


def _paired(values: np.ndarray, plain: np.ndarray, decimals: int) -> str:
    diff = values - plain
    if not diff.any():
        return "0 (identical)"
    p = stats.ttest_rel(values, plain).pvalue if len(diff) > 1 else float("nan")
    mark = "**" if p < 0.01 else "*" if p < 0.05 else ""
    return f"{diff.mean():+.{decimals}f} (p={p:.2g}){mark}"


def markdown(rows: dict[str, list[dict[str, float]]], command: str) -> str:
    """Two tables: mean ± standard error per condition, and paired differences to plain."""
    videos = len(next(iter(rows.values())))
    lines = [
        f"Generated by `{command}` ({videos} videos per condition; toy model, not the paper's).",
        "",
        "| condition | passes | " + " | ".join(t for t, _ in COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for label, members in rows.items():
        cells = [_cell(np.array([m[k] for m in members], float), d) for k, (_, d) in COLUMNS.items()]
        lines.append(f"| {label} | {members[0]['passes']} | " + " | ".join(cells) + " |")
    plain = rows.get("plain")
    if plain is not None:
        lines += [
            "",
            "Paired difference to the plain pipeline (same image and seed; paired t-test, "
            "\\* p < 0.05, \\*\\* p < 0.01):",
            "",
            "| condition | " + " | ".join(f"Δ {COLUMNS[k][0]}" for k in PAIRED) + " |",
            "|---" * (len(PAIRED) + 1) + "|",
        ]
        for label, members in rows.items():
            if label == "plain":
                continue
            cells = [
                _paired(
                    np.array([m[k] for m in members], float),
                    np.array([m[k] for m in plain], float),
                    COLUMNS[k][1],
                )
                for k in PAIRED
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_between_markers(path: Path, text: str) -> None:
    page = path.read_text()
    if START not in page or END not in page:
        raise SystemExit(f"{path} has no {START} ... {END} markers")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32, help="held-out images")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--conditions", nargs="+", help="labels to run (default: all)")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file with the result markers")
    parser.add_argument("--json", type=Path, help="also write the per-video rows here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", type=Path, help="testbed weights (default: the shipped ones)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = args.conditions or list(conditions())
    unknown = sorted(set(labels) - set(conditions()))
    if unknown:
        parser.error(f"unknown condition(s) {unknown}; choose from {list(conditions())}")
    rows = measure(labels, args.images, args.seeds, args.steps, weights=args.weights)
    command = "python benchmarks/testbed_eval.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_between_markers(args.doc, markdown(rows, command.strip()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"results: {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
