"""Ablation reports a person can read: one labelled row per grid point, means with standard
errors over images x prompts x seeds, differences against a baseline cell paired by image, prompt
and seed, plots, and one page (``results.md`` and a self-contained ``results.html``).

Labels come from what varies across the grid (``window 0-6%``, ``down/up 1/2.5``, ``no
filtering``); a grid value written as a table with a ``label`` key overrides its part::

    schedule = [{ name = "constant", value = 0.0, label = "baseline" }, ...]
    "filter.factor" = [{ value = 0.625, label = "1/1.6 (paper)" }, 0.4]
"""

from __future__ import annotations

import base64
import csv
import html
import itertools
import json
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from scipy import stats

from guidance_kit.errors import InvalidParameterError
from guidance_kit.recipe import Recipe

if TYPE_CHECKING:
    from guidance_kit.ablation import Sweep

LABEL = "label"  # the reserved key of a grid value table
CONFIDENCE = 0.95


@attrs.frozen
class Metric:
    key: str  # the column of a cell row (metrics.summarize)
    title: str
    relative: bool = False  # also report the change relative to the baseline, as papers do


METRICS = (
    Metric("dynamic", "dynamic degree", relative=True),
    Metric("motion", "motion (px/frame)"),
    Metric("first_frame_psnr", "first-frame PSNR (dB)"),
    Metric("first_frame_ssim", "first-frame SSIM"),
    Metric("sharpness", "sharpness"),
    Metric("flicker", "flicker"),
    Metric("flow_score", "flow score"),
)
METRIC = {m.key: m for m in METRICS}


# --- labels ---------------------------------------------------------------------------------


def unwrap(value: Any) -> tuple[Any, str | None]:
    """A grid value without its ``label`` (``{value = x, label = ...}`` stands for ``x``), and the label."""
    if not isinstance(value, Mapping) or LABEL not in value:
        return value, None
    rest = {k: v for k, v in value.items() if k != LABEL}
    return (rest["value"] if set(rest) == {"value"} else rest), str(value[LABEL])


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every grid point in order: its parameters (labels stripped) and the labels written for them."""
    points = []
    for values in itertools.product(*grid.values()):
        pairs = {key: unwrap(value) for key, value in zip(grid, values)}
        params = {key: value for key, (value, _) in pairs.items()}
        points.append((params, {key: label for key, (_, label) in pairs.items() if label is not None}))
    return points


def _num(value: float) -> str:
    return f"{value:.3g}"


def _percent(value: float) -> str:
    return _num(100 * value)


def _generic(name: str, params: Mapping[str, Any]) -> str:
    return " ".join([name, *(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in params.items())])


def describe_filter(f: Any) -> str:
    if f.is_identity(1.0):
        return "no filtering"
    if f.name == "downup":
        return f"down/up 1/{_num(1 / f.factor)}"  # the paper writes the factor as 1/x
    if f.name == "gaussian":
        return f"gaussian σ={_num(f.sigma)}"
    if f.name == "butterworth":
        return f"butterworth cutoff {_num(f.cutoff)}"
    return _generic(f.name, f.params())


def describe_schedule(s: Any) -> str:
    if max(s.at(p) for p in np.linspace(0.0, 1.0, 1001)) == 0.0:
        return "no filtering"
    if s.name == "step_switch":
        return f"window {_percent(s.start)}-{_percent(s.end)}%"
    if s.name == "constant":
        return "every step" + ("" if s.value == 1.0 else f" at {_num(s.value)}")
    if s.name in ("linear", "cosine"):
        return f"{s.name} {_num(s.start_weight)}→{_num(s.end_weight)} by {_percent(s.end)}%"
    return _generic(s.name, s.params())


MODES = {"alg": "ALG", "replace": "all terms filtered", "cond_only": "conditional term only"}


def describe(key: str, value: Any, recipe: Recipe | None) -> str:
    """What grid key ``key`` set (to ``value``) in ``recipe`` (None: the plain pipeline), in words."""
    if key == "recipe":
        return "plain pipeline" if recipe is None else str(value)
    component = key.split(".")[0]
    if component == "filter":
        return describe_filter(recipe.filter)
    if component == "schedule":
        return describe_schedule(recipe.schedule)
    if component == "mode":
        return MODES.get(recipe.mode, f"mode {recipe.mode}")
    if component == "space":
        return f"{recipe.space} space"
    return f"{key}={value}"


def _join(parts: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(parts))  # two keys into one component describe it once


def cell_labels(sweep: Sweep) -> list[str]:
    """One label per grid point: written labels, else a description of each key that varies.
    Labels that would collide fall back to ``key=value`` for every varying key."""
    points = grid_points(sweep.grid)
    varying = [key for key, values in sweep.grid.items() if len(values) > 1]
    labels = []
    for params, written in points:
        recipe = sweep.recipe_for(params)
        keys = [k for k in sweep.grid if k in varying or k in written] or list(sweep.grid)
        labels.append(_join([written.get(k) or describe(k, params[k], recipe) for k in keys]) or sweep.name)
    clashes = {label for label in labels if labels.count(label) > 1}
    for i, (params, _) in enumerate(points):
        if labels[i] in clashes:
            labels[i] = ", ".join(f"{k}={json.dumps(params[k], sort_keys=True)}" for k in varying)
    return labels


def baseline_index(sweep: Sweep, labels: Sequence[str]) -> int:
    """The grid point the sweep names as its baseline (by label), else the first one."""
    if sweep.baseline is None:
        return 0
    if sweep.baseline not in labels:
        raise InvalidParameterError(
            f"sweep baseline {sweep.baseline!r} is not a cell label; cells: {', '.join(map(repr, labels))}"
        )
    return list(labels).index(sweep.baseline)


# --- statistics -----------------------------------------------------------------------------


@attrs.frozen
class Estimate:
    """Mean of ``n`` values, its standard error and a two-sided 95% Student-t interval (nan where n < 2)."""

    mean: float
    se: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        x = np.asarray([v for v in values if _finite(v)], dtype=float)  # a failed video has no score
        if x.size == 0:
            return cls(math.nan, math.nan, 0)
        se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
        return cls(float(x.mean()), se, int(x.size))

    @property
    def half_width(self) -> float:
        return float(stats.t.ppf(0.5 + CONFIDENCE / 2, self.n - 1)) * self.se if self.n > 1 else math.nan

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (a paired t-test at the 5% level)."""
        return self.n > 1 and (self.low > 0 or self.high < 0)


@attrs.frozen
class Delta:
    """A cell minus the baseline over the videos both have (same image, prompt and seed)."""

    difference: Estimate
    baseline_mean: float  # over the same pairs

    @property
    def relative(self) -> float:
        return self.difference.mean / self.baseline_mean if self.baseline_mean else math.nan


def pair_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["image"], row["prompt"], row["seed"])


def paired(rows: Sequence[Mapping], baseline: Sequence[Mapping], metric: str) -> list[tuple[float, float]]:
    """(cell value, baseline value) for each image, prompt and seed both have a finite value for."""
    base = {pair_key(r): r.get(metric) for r in baseline}
    pairs = [(r.get(metric), base.get(pair_key(r))) for r in rows]
    return [(a, b) for a, b in pairs if _finite(a) and _finite(b)]


def _finite(value: Any) -> bool:
    return value is not None and bool(np.isfinite(value))


def delta(rows: Sequence[Mapping], baseline: Sequence[Mapping], metric: str) -> Delta:
    pairs = paired(rows, baseline, metric)
    base_mean = float(np.mean([b for _, b in pairs])) if pairs else math.nan
    return Delta(Estimate.of([a - b for a, b in pairs]), base_mean)


@attrs.frozen
class Cell:
    """One grid point: its label, parameters, recipe (None: the plain pipeline) and cell rows."""

    label: str
    params: dict[str, Any]
    recipe: Recipe | None
    rows: list[dict[str, Any]]

    def estimate(self, metric: str) -> Estimate:
        return Estimate.of([r.get(metric) for r in self.rows])


def cells(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> list[Cell]:
    """The grid points that have rows, in grid order."""
    by_params: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_params.setdefault(_key(row["params"]), []).append(dict(row))
    found = []
    for (params, _), label in zip(grid_points(sweep.grid), cell_labels(sweep)):
        if _key(params) in by_params:
            found.append(Cell(label, params, sweep.recipe_for(params), by_params[_key(params)]))
    return found


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


# --- the report -----------------------------------------------------------------------------


@attrs.frozen
class Report:
    sweep: Sweep
    cells: list[Cell]
    baseline: Cell

    @classmethod
    def build(cls, sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> Report:
        found = cells(sweep, rows)
        if not found:
            raise InvalidParameterError(f"sweep {sweep.name!r} has no finished cells to report")
        labels = cell_labels(sweep)
        wanted = labels[baseline_index(sweep, labels)]
        baseline = next((c for c in found if c.label == wanted), found[0])
        return cls(sweep, found, baseline)

    def delta(self, cell: Cell, metric: str) -> Delta:
        return delta(cell.rows, self.baseline.rows, metric)

    def records(self) -> list[dict[str, Any]]:
        """One machine-readable record per cell: parameters, full recipe, estimates, deltas."""
        out = []
        for cell in self.cells:
            record: dict[str, Any] = {
                "label": cell.label,
                "baseline": cell is self.baseline,
                "params": cell.params,
                "recipe": cell.recipe.to_dict() if cell.recipe else None,
                "videos": len(cell.rows),
                "passes": cell.rows[0].get("passes"),
            }
            for m in METRICS:
                d = self.delta(cell, m.key)
                record[m.key] = _estimate_dict(cell.estimate(m.key))
                record[f"{m.key}_delta"] = {
                    **_estimate_dict(d.difference),
                    "significant": d.difference.significant,
                    **({"relative": d.relative} if m.relative else {}),
                }
            out.append(record)
        return out


def _estimate_dict(e: Estimate) -> dict[str, Any]:
    return {"mean": e.mean, "se": e.se, "low": e.low, "high": e.high, "n": e.n}


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as one CSV row: nested values joined with '_', tables as JSON."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key in METRIC or key.removesuffix("_delta") in METRIC:
            for part, number in value.items():
                row[key if part == "mean" else f"{key}_{part}"] = number
        elif isinstance(value, Mapping | list) or value is None:
            row[key] = json.dumps(value, sort_keys=True)
        else:
            row[key] = value
    return row


def write_data(report: Report, out: Path) -> None:
    records = report.records()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = [_flat(r) for r in records]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# Numbers as a careful paper prints them: the spread to two significant digits and the mean to
# the same decimal place; spreads below 1e-4 in general notation rather than a row of zeros.
MAX_DECIMALS = 4


def _decimals(spread: float) -> int | None:
    """Decimal places for numbers with this spread; None: general notation."""
    if not np.isfinite(spread) or spread <= 0:
        return None
    decimals = max(0, 1 - math.floor(math.log10(spread)))
    return decimals if decimals <= MAX_DECIMALS else None


def _at(value: float, decimals: int | None, sign: bool = False, digits: int = 4) -> str:
    """``value`` to ``decimals`` places, or to ``digits`` significant digits where None."""
    if not np.isfinite(value):
        return "–"
    return format(value, ("+" if sign else "") + (f".{digits}g" if decimals is None else f".{decimals}f"))


def format_estimate(e: Estimate) -> str:
    """``mean ± standard error`` (the mean alone from one video)."""
    if e.n < 2:
        return _at(e.mean, None)
    decimals = _decimals(e.se)
    return f"{_at(e.mean, decimals)} ± {_at(e.se, decimals, digits=2)}"


def format_delta(d: Delta, relative: bool) -> str:
    e = d.difference
    if e.n == 0:
        return "–"
    decimals = _decimals(e.half_width)
    text = _at(e.mean, decimals, sign=True, digits=2)
    if relative and np.isfinite(d.relative):
        text += f" ({d.relative:+.0%})"
    if e.n > 1:
        low, high = _at(e.low, decimals, digits=2), _at(e.high, decimals, digits=2)
        text += f" [{low}, {high}]" + (" *" if e.significant else "")
    return text


@attrs.frozen
class Heading:
    text: str
    level: int = 2


@attrs.frozen
class Text:
    text: str  # markdown limited to **bold** and `code`, which the HTML page renders too


@attrs.frozen
class Table:
    header: list[str]
    rows: list[list[str]]


@attrs.frozen
class Figure:
    caption: str
    path: str  # relative to the report folder


@attrs.frozen
class Code:
    text: str


Block = Heading | Text | Table | Figure | Code


def command(sweep: Sweep) -> str:
    """The command line that reruns (or resumes) the sweep."""
    args = ["guidance-kit", "ablate", sweep.name, "--model", sweep.model, "--steps", str(sweep.steps)]
    args += ["--seeds", *map(str, sweep.seeds), "--images", *sweep.images]
    if sweep.prompts != [""]:
        args += ["--prompts", *sweep.prompts]
    return shlex.join(args)


def versions() -> str:
    import diffusers
    import torch

    import guidance_kit

    return f"guidance_kit {guidance_kit.__version__}, diffusers {diffusers.__version__}, torch {torch.__version__}"


RANDOM_WEIGHTS_NOTE = (
    "**Plumbing only:** `{model}` has random weights, so these numbers check that the sweep, the "
    "statistics and the plots work; they say nothing about the method."
)


def default_note(sweep: Sweep) -> str | None:
    from guidance_kit.generate import TINY_PREFIX

    return RANDOM_WEIGHTS_NOTE.format(model=sweep.model) if sweep.model.startswith(TINY_PREFIX) else None


def blocks(report: Report, figures: Sequence[Figure], note: str | None) -> list[Block]:
    """The whole page: title, what the sweep asks and the paper's answer, then the results."""
    sweep = report.sweep
    out: list[Block] = [Heading(f"Ablation: {sweep.name}", 1), Text(" ".join(sweep.description.split()))]
    if sweep.paper:
        out.append(Text("**Paper** (ALG, arXiv 2506.08456): " + "; ".join(map(str, sweep.paper.values()))))
    return out + results(report, figures, note)


def results(report: Report, figures: Sequence[Figure], note: str | None) -> list[Block]:
    """The tables, plots and how to rerun them: what a page that already explains the sweep embeds."""
    sweep, base = report.sweep, report.baseline
    n = sorted({len(c.rows) for c in report.cells})
    shape = f"{len(sweep.images)} image(s) x {len(sweep.prompts)} prompt(s) x {len(sweep.seeds)} seed(s)"
    out: list[Block] = [Text(note)] if note else []
    out.append(
        Text(
            f"Model `{sweep.model}`, {sweep.steps} steps, {shape}: n = {'/'.join(map(str, n))} videos per "
            f"cell. Baseline: **{base.label}**."
        )
    )
    header = ["cell", "n", *(m.title for m in METRICS), "passes"]
    rows = [
        [_cell_name(c, base), str(len(c.rows)), *(format_estimate(c.estimate(m.key)) for m in METRICS)]
        + [_passes(c)]
        for c in report.cells
    ]
    out += [Heading("Mean ± standard error per cell"), Table(header, rows)]
    others = [c for c in report.cells if c is not base]
    if others:
        header = ["cell", "pairs", *(f"Δ {m.title}" for m in METRICS)]
        rows = [
            [c.label, str(report.delta(c, METRICS[0].key).difference.n)]
            + [format_delta(report.delta(c, m.key), m.relative) for m in METRICS]
            for c in others
        ]
        out += [
            Heading(f"Against the baseline ({base.label})"),
            Text(
                "Cell minus baseline over the videos both have (paired by image, prompt and seed): the "
                f"mean difference, its {CONFIDENCE:.0%} t interval in brackets and `*` where the interval "
                f"excludes 0; {', '.join(m.title for m in METRICS if m.relative)} also as the relative "
                "change, as the paper reports it."
            ),
            Table(header, rows),
        ]
    if figures:
        out += [Heading("Plots"), *figures]
    out += [Heading("Reproduce"), Code(command(sweep)), Text(versions())]
    return out


def _passes(cell: Cell) -> str:
    """Denoiser passes per video (none recorded for the plain pipeline)."""
    passes = cell.rows[0].get("passes")
    return "–" if passes is None else str(passes)


def _cell_name(cell: Cell, baseline: Cell) -> str:
    return f"{cell.label} (baseline)" if cell is baseline else cell.label


# --- rendering ------------------------------------------------------------------------------


def to_markdown(blocks: Sequence[Block], image_prefix: str = "", heading_offset: int = 0) -> str:
    """The report as markdown; ``image_prefix`` and ``heading_offset`` embed it in another page."""
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * (b.level + heading_offset) + " " + b.text)
        elif isinstance(b, Text):
            parts.append(b.text)
        elif isinstance(b, Table):
            lines = [_markdown_row(b.header), "|" + "---|" * len(b.header)]
            parts.append("\n".join(lines + [_markdown_row(r) for r in b.rows]))
        elif isinstance(b, Figure):
            parts.append(f"![{b.caption}]({image_prefix}{b.path})\n\n*{b.caption}*")
        else:
            parts.append(f"```bash\n{b.text}\n```")
    return "\n\n".join(parts) + "\n"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"  # a written label may hold "|"


def _inline_html(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def to_html(blocks: Sequence[Block], folder: Path) -> str:
    """The report as one self-contained HTML page: the plots are inlined."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "ablation")
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            parts.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode((folder / b.path).read_bytes()).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.caption)}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
        else:
            parts.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


# --- plots ----------------------------------------------------------------------------------


def _flatten(recipe: Recipe) -> dict[str, Any]:
    flat = {}
    for key, value in recipe.to_dict().items():
        items = value.items() if isinstance(value, Mapping) else [("", value)]
        flat.update({f"{key}.{k}".rstrip("."): v for k, v in items})
    return flat


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def line_parameter(cells: Sequence[Cell]) -> tuple[str, list[Cell]] | None:
    """For a one-dimensional sweep, the one numeric recipe parameter that varies and the cells
    along it (the largest set of cells alike in everything else); None otherwise."""
    families: dict[str, list[tuple[Cell, dict[str, Any]]]] = {}
    for cell in cells:
        if cell.recipe is None:
            continue
        flat = _flatten(cell.recipe)
        kind = json.dumps({k: v for k, v in flat.items() if not _numeric(v)}, sort_keys=True)
        families.setdefault(kind, []).append((cell, flat))
    members = max(families.values(), key=len, default=[])
    if len(members) < 2:
        return None
    varying = [k for k in members[0][1] if _numeric(members[0][1][k]) and len({f[k] for _, f in members}) > 1]
    if len(varying) != 1:
        return None
    return varying[0], [c for c, _ in sorted(members, key=lambda m: m[1][varying[0]])]


LINE_METRICS = ("dynamic", "motion", "first_frame_psnr")


def write_plots(report: Report, folder: Path) -> list[Figure]:
    from guidance_kit import plotting

    folder.mkdir(parents=True, exist_ok=True)
    name = report.sweep.name
    labels = [c.label for c in report.cells]
    base = report.cells.index(report.baseline)
    figures = []

    def estimates(chosen: Sequence[Cell]) -> dict[str, list[Estimate]]:
        return {METRIC[k].title: [c.estimate(k) for c in chosen] for k in LINE_METRICS}

    def add(caption: str, filename: str, draw: Callable[[Path], Any]) -> None:
        draw(folder / filename)
        figures.append(Figure(caption, f"{folder.name}/{filename}"))

    add(
        f"{name}: motion against first-frame fidelity, one point per cell (mean ± standard error)",
        "motion_vs_fidelity.png",
        lambda path: plotting.plot_tradeoff(
            labels,
            [c.estimate("first_frame_psnr") for c in report.cells],
            [c.estimate("motion") for c in report.cells],
            path,
            xlabel=METRIC["first_frame_psnr"].title,
            ylabel=METRIC["motion"].title,
            baseline=base,
            title=name,
        ),
    )
    line = line_parameter(report.cells)
    if line is not None:
        key, along = line
        rest = [c for c in report.cells if c not in along]
        add(
            f"{name}: metrics against {key} (mean ± standard error); other cells as horizontal lines",
            f"metrics_vs_{key.replace('.', '_')}.png",
            lambda path: plotting.plot_metrics_vs_parameter(
                [_flatten(c.recipe)[key] for c in along],
                estimates(along),
                path,
                xlabel=key,
                references={c.label: [e[0] for e in estimates([c]).values()] for c in rest},
                title=name,
            ),
        )
    add(
        f"{name}: metrics per cell (mean ± standard error)",
        "metrics.png",
        lambda path: plotting.plot_metrics_per_cell(
            labels, estimates(report.cells), path, baseline=base, title=name
        ),
    )
    add(
        f"{name}: filter strength per denoising step, per cell",
        "schedules.png",
        lambda path: plotting.plot_schedules(
            labels, [c.recipe for c in report.cells], report.sweep.steps, path
        ),
    )
    return figures


def write_report(
    sweep: Sweep,
    rows: Sequence[Mapping[str, Any]],
    out: str | Path,
    plots: bool = True,
    note: str | None = None,
) -> Report:
    """``results.csv``, ``results.jsonl``, ``results.md``, ``results.html`` (and ``plots/``) in ``out``.
    ``note`` (default: a plumbing-only warning for tiny random-weight models) heads the page."""
    out = Path(out)
    report = Report.build(sweep, rows)
    write_data(report, out)
    figures = write_plots(report, out / "plots") if plots else []
    page = blocks(report, figures, note if note is not None else default_note(sweep))
    (out / "results.md").write_text(to_markdown(page))
    (out / "results.html").write_text(to_html(page, out))
    return report
