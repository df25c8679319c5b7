"""Ablation reports: cell labels, the interval arithmetic, pairing against the baseline, the sweep
file's label and baseline fields, and a shipped sweep's report end to end."""

import json
import math
import re
import runpy
from pathlib import Path

import attrs
import pytest

import guidance_kit as gk
from guidance_kit import ablation, report


def shipped(name, **changes):
    return attrs.evolve(ablation.Sweep.load(ablation.builtin_sweeps()[name]), **changes)


@pytest.mark.parametrize(
    "name,labels",
    [
        (
            "window-length",
            ["no filtering", "window 0-2%", "window 0-6%", "window 0-10%", "window 0-20%", "window 0-40%"],
        ),
        (
            "filter-strength",
            [
                "no filtering",
                "down/up 1/1.25",
                "down/up 1/1.6",
                "down/up 1/2",
                "down/up 1/2.5",
                "down/up 1/4",
            ],
        ),
        ("filter-type", ["down/up 1/2.5", "gaussian σ=1", "butterworth cutoff 0.15"]),
        ("naive-blur", ["plain pipeline", "alg", "naive-blur"]),
        ("all-terms", ["ALG", "all terms filtered", "conditional term only"]),
    ],
)
def test_labels_describe_what_varies(name, labels):
    assert report.cell_labels(shipped(name)) == labels


def test_label_parts_join_and_collisions_fall_back_to_values():
    sweep = ablation.Sweep.from_dict(
        {"grid": {"schedule.end": [0.1, 0.2], "mode": ["alg", "replace"], "space": ["latent"]}}
    )
    assert report.cell_labels(sweep)[1] == "window 0-10%, all terms filtered"  # "space" does not vary
    # Kernel sizes the label does not show: the colliding cells name their values instead.
    same = [{"name": "gaussian", "sigma": 1.0, "kernel_size": k} for k in (3, 5)]
    labels = report.cell_labels(ablation.Sweep.from_dict({"grid": {"filter": same}}))
    assert labels == [f"filter={json.dumps(f, sort_keys=True)}" for f in same]


def test_written_labels_override_without_changing_cells(tmp_path):
    (tmp_path / "s.toml").write_text(
        'baseline = "paper default, every step"\n[grid]\n'
        '"filter.factor" = [1.0, { value = 0.625, label = "paper default" }]\n'
        'schedule = [{ name = "step_switch", end = 0.2, label = "20% window" }, { name = "constant", value = 1.0 }]\n'
    )
    sweep = ablation.Sweep.load(tmp_path / "s.toml")
    assert report.cell_labels(sweep) == [
        "no filtering, 20% window",
        "no filtering, every step",
        "paper default, 20% window",
        "paper default, every step",
    ]
    plain = {
        "filter.factor": [1.0, 0.625],
        "schedule": [{"name": "step_switch", "end": 0.2}, {"name": "constant", "value": 1.0}],
    }
    unlabelled = attrs.evolve(sweep, grid=plain, baseline=None)
    assert [c["id"] for c in sweep.cells()] == [
        c["id"] for c in unlabelled.cells()
    ]  # resume still finds them
    assert sweep.recipe_for(next(sweep.cells())["params"]).filter.factor == 1.0


def test_sweep_label_and_baseline_round_trip(tmp_path):
    text = '[grid]\n"schedule.end" = [0.1, { value = 0.2, label = "released" }]\n'
    (tmp_path / "s.toml").write_text('baseline = "window 0-20%"\n' + text)  # the label replaced that name
    with pytest.raises(gk.InvalidParameterError, match="cells: 'window 0-10%', 'released'"):
        ablation.Sweep.load(tmp_path / "s.toml")
    (tmp_path / "s.toml").write_text('baseline = "released"\n' + text)
    sweep = ablation.Sweep.load(tmp_path / "s.toml")
    again = ablation.Sweep.from_dict(attrs.asdict(sweep))  # what `ablate --steps ...` does
    assert again == sweep and again.baseline == "released"
    assert report.baseline_index(again, report.cell_labels(again)) == 1


def test_estimate_against_hand_computation():
    e = report.Estimate.of([1.0, 2.0, 3.0, 6.0, float("nan"), None])  # missing values are skipped
    # mean 3; sample sd sqrt((4 + 1 + 0 + 9) / 3) = 2.16025; se = sd / 2 = 1.08012;
    # t(0.975, df=3) = 3.18245 (tables): half width 3.43744.
    assert (e.n, e.mean) == (4, 3.0)
    assert e.se == pytest.approx(1.080123, abs=1e-6)
    assert (e.low, e.high) == (pytest.approx(-0.43744, abs=1e-5), pytest.approx(6.43744, abs=1e-5))
    assert not e.significant
    assert report.format_estimate(e) == "3.0 ± 1.1"
    one = report.Estimate.of([0.5])
    assert one.n == 1 and math.isnan(one.se) and report.format_estimate(one) == "0.5"


def rows(values, **params):
    """Cell rows for (image, seed) -> value of every metric."""
    return [
        {"params": params, "image": image, "prompt": "", "seed": seed, "dynamic": v, "motion": v}
        for (image, seed), v in values.items()
    ]


def test_deltas_pair_by_image_prompt_and_seed():
    # Images differ a lot, the cell adds exactly 0.25 to each video: paired, that is certain.
    base = rows({("a", 0): 0.2, ("a", 1): 0.3, ("b", 0): 0.6, ("b", 1): 0.7, ("c", 0): 0.9})
    cell = rows({("b", 1): 0.95, ("a", 0): 0.45, ("b", 0): 0.85, ("a", 1): 0.55, ("d", 0): 5.0})
    d = report.delta(cell, base, "motion")
    assert d.difference.n == 4  # ("c", 0) and ("d", 0) have no partner
    assert d.difference.mean == pytest.approx(0.25) and d.difference.se == pytest.approx(0, abs=1e-12)
    assert d.difference.significant
    assert d.relative == pytest.approx(0.25 / 0.45)  # against the baseline mean over the same pairs
    assert report.format_delta(d, relative=True) == "+0.25 (+56%) [0.25, 0.25] *"
    # Unpaired, the image-to-image spread would swamp the same difference.
    assert report.Estimate.of([r["motion"] for r in cell[:4]]).se > 0.1
    noisy = report.delta(rows({("a", 0): 0.5, ("a", 1): 0.1}), rows({("a", 0): 0.2, ("a", 1): 0.2}), "motion")
    # differences 0.3 and -0.1: se 0.2, t(0.975, df=1) = 12.706, half width 2.54
    assert not noisy.difference.significant and report.format_delta(noisy, False) == "+0.1 [-2.4, 2.6]"


def test_shipped_sweep_writes_a_readable_report(tmp_path):
    sweep = shipped("window-length", steps=2, seeds=[0, 1], images=["tiny:0"])
    sweep = attrs.evolve(sweep, grid={"schedule": sweep.grid["schedule"][:3]})
    ablation.run_sweep(sweep, tmp_path, progress=False)
    page = (tmp_path / "results.md").read_text()
    for text in (
        "# Ablation: window-length",
        "+32% dynamic degree",  # the paper's finding
        "**Plumbing only:** `tiny:wan2.1` has random weights",
        "n = 2 videos per cell. Baseline: **no filtering**.",
        "| cell | n | dynamic degree | motion (px/frame) |",
        "| no filtering (baseline) | 2 |",
        "## Against the baseline (no filtering)",
        "![window-length: motion against first-frame fidelity",
        "(plots/metrics_vs_schedule_end.png)",
        "guidance-kit ablate window-length --model tiny:wan2.1 --steps 2 --seeds 0 1 --images tiny:0",
        f"guidance_kit {gk.__version__}",
    ):
        assert text in page, text
    assert re.search(r"\| window 0-6% \| 2 \| [-+]\S+ \[", page)  # a delta with its interval
    assert "{" not in page.split("## Mean")[1]  # no raw JSON where people read
    for name in ("motion_vs_fidelity", "metrics_vs_schedule_end", "metrics", "schedules"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 10_000
    html = (tmp_path / "results.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4 and "<td>window 0-2%</td>" in html
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert records[1]["recipe"]["schedule"] == {"name": "step_switch", "start": 0.0, "end": 0.02}
    assert records[0]["baseline"] and records[1]["dynamic_delta"]["n"] == 2
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[0].startswith("label,baseline,params,recipe,videos,passes,dynamic,dynamic_se,")
    assert csv[2].startswith("window 0-2%,False,")


ROOT = Path(__file__).resolve().parents[1]


def test_docs_script_replaces_its_report_in_place(tmp_path):
    embed = runpy.run_path(str(ROOT / "scripts" / "ablation_reports.py"))["embed"]
    page = tmp_path / "page.md"
    page.write_text("# Window length\n\nWhat the sweep asks.\n")
    embed(page, "first run")
    embed(page, "second run")
    assert (
        page.read_text()
        == "# Window length\n\nWhat the sweep asks.\n\n<!-- report -->\n\nsecond run\n<!-- /report -->\n"
    )


@pytest.mark.parametrize("name", sorted(ablation.builtin_sweeps()))
def test_recipe_pages_embed_a_report(name):
    page = (ROOT / "docs" / "recipes" / f"{name}.md").read_text()
    embedded = page.split("<!-- report -->")[1].split("<!-- /report -->")[0]
    assert "| cell | n | dynamic degree |" in embedded and "(baseline) |" in embedded
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", embedded)
    assert images and all((ROOT / "docs" / "recipes" / path).is_file() for path in images)
