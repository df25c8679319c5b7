"""The guidance-kit CLI, the ablation runner (tables, plots, resume, sharding) and the examples."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch
from PIL import Image

import guidance_kit as gk
from guidance_kit import ablation
from guidance_kit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_generate_default_runs_the_tiny_model(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "embedded tiny random-weight pipeline" in out
    assert (tmp_path / "video.mp4").stat().st_size > 0
    assert (tmp_path / "schedule.png").stat().st_size > 0
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert trace["backend"] == "wan2.1" and trace["calls"][0]["filtered_steps"] == [0, 1]
    assert trace["calls"][0]["passes"] == 2 * 6 + 2


def test_generate_with_recipe_file_and_image(tmp_path, capsys):
    recipe = gk.Recipe(
        filter=gk.filters.Gaussian(1.0, 3), schedule=gk.schedules.Constant(1.0), mode="replace"
    )
    (tmp_path / "r.yaml").write_text(recipe.to_yaml())
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp_path / "red.png")
    args = [
        "generate",
        "--model",
        "tiny:cogvideox",
        "--image",
        str(tmp_path / "red.png"),
        "--recipe",
        str(tmp_path / "r.yaml"),
        "--steps",
        "3",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 0
    trace = json.loads((tmp_path / "o" / "trace.json").read_text())
    assert trace["recipe"] == recipe.to_dict() and trace["calls"][0]["filtered_steps"] == [0, 1, 2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["generate", "--image", "missing.png"], "image not found: missing.png"),
        (["generate", "--recipe", "nope"], "unknown recipe 'nope'; registered recipes: alg,"),
        (["generate", "--model", "tiny:sora"], "unknown tiny model family 'sora'; choose from ['wan2.1',"),
        (["generate", "--recipe", "bad.toml"], "recipe file not found: bad.toml"),
        (["ablate", "no-such-sweep"], "built-in sweeps: all-terms, filter-strength"),
    ],
)
def test_clear_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_model_family(tmp_path, capsys, monkeypatch):
    # A local diffusers folder whose pipeline no backend supports.
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    assert (
        main(["generate", "--model", str(tmp_path / "ddpm"), "--prompt", "x", "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown model family" in err and "DDPMPipeline" in err and "wan2.1" in err


def test_bad_recipe_file_content(tmp_path, capsys):
    (tmp_path / "r.toml").write_text('filter = {name = "downup"}\nschedule = "constant"\n')
    assert main(["generate", "--recipe", str(tmp_path / "r.toml"), "--out", str(tmp_path)]) == 2
    assert "filter 'downup'" in capsys.readouterr().err


def test_recipes_lists_everything_with_plugins(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for text in (
        "filters:",
        "downup",
        "[filters]",
        "backends:",
        "hunyuan-video",
        "alg@cogvideox",
        "sweeps:",
        "window-length",
    ):
        assert text in out
    assert main(["recipes", "--json"]) == 0
    assert "step_switch" in json.loads(capsys.readouterr().out)["schedule"]


def test_plot_writes_schedule_filter_and_spectrum(tmp_path):
    assert main(["plot", "--recipe", "alg-gaussian", "--out", str(tmp_path), "--size", "64"]) == 0
    for name in ("schedule.png", "filtered.png", "spectrum.png"):
        assert Image.open(tmp_path / name).size[0] > 100


def small(sweep, **changes):
    return attrs.evolve(sweep, steps=3, seeds=[0], images=["tiny:0"], **changes)


def test_every_shipped_sweep_is_valid():
    shipped = ablation.builtin_sweeps()
    assert set(shipped) == {
        "window-length",
        "filter-strength",
        "filter-type",
        "naive-blur",
        "all-terms",
        "prompt-rewriting",
        "motion-levers",
    }
    for path in shipped.values():
        sweep = ablation.Sweep.load(path)
        assert sweep.paper and list(sweep.cells())


def test_sweep_writes_tables_plots_and_resumes(tmp_path, monkeypatch):
    sweep = small(ablation.Sweep.load(ablation.builtin_sweeps()["naive-blur"]))
    rows = ablation.run_sweep(sweep, tmp_path, progress=False)
    assert [r["params"]["recipe"] for r in rows] == ["none", "alg", "naive-blur"]
    assert [r["passes"] for r in rows] == [None, 7, 6]  # ALG adds one pass in its window; replace none
    table = (tmp_path / "results.md").read_text()
    assert "| plain pipeline (baseline) | 1 |" in table and "| naive-blur | 1 |" in table
    assert (tmp_path / "results.csv").read_text().count("\n") == 4
    assert (tmp_path / "plots" / "metrics.png").exists() and (
        tmp_path / "plots" / "motion_vs_fidelity.png"
    ).exists()

    # Resume: a rerun does no work; a grown grid only runs the new cells.
    monkeypatch.setattr(ablation, "generate", lambda *a, **k: pytest.fail("finished cells must not rerun"))
    assert len(ablation.run_sweep(sweep, tmp_path, progress=False, plots=False)) == 3
    monkeypatch.undo()
    calls = []
    real = ablation.generate
    monkeypatch.setattr(ablation, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    grown = attrs.evolve(sweep, seeds=[0, 1])
    assert len(ablation.run_sweep(grown, tmp_path, progress=False, plots=False)) == 6
    assert len(calls) == 3


def test_interrupted_line_is_ignored_on_resume(tmp_path):
    (tmp_path / "cells-0.jsonl").write_text('{"id": "abc", "params"')  # cut mid-write
    assert ablation.done_cells(tmp_path) == {}


def test_sharding_splits_cells_between_processes(tmp_path, monkeypatch):
    sweep = small(ablation.Sweep.load(ablation.builtin_sweeps()["all-terms"]))
    for rank in (1, 0):  # two processes of a world of 2, the main one last
        monkeypatch.setattr(ablation, "_process", lambda rank=rank: (rank, 2, None))
        rows = ablation.run_sweep(sweep, tmp_path, progress=False, plots=False)
    assert len((tmp_path / "cells-0.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "cells-1.jsonl").read_text().splitlines()) == 1
    assert [r["params"]["mode"] for r in rows] == ["alg", "replace", "cond_only"]


@pytest.mark.parametrize(
    "data,message",
    [
        ({"grid": {"filter.factr": [0.5]}}, "no parameter(s) ['factr']"),
        ({"grid": {"schedule.end": []}}, "non-empty lists"),
        ({"grid": {}, "speed": 2}, "unknown key(s) ['speed']"),
        ({"grid": {"recipe": ["alg", "nope"]}}, "unknown recipe 'nope'"),
    ],
)
def test_bad_sweeps(data, message):
    with pytest.raises(
        gk.GuidanceKitError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        ablation.Sweep.from_dict(data)


def test_ablate_command(tmp_path, capsys):
    args = [
        "ablate",
        "filter-strength",
        "--out",
        str(tmp_path),
        "--steps",
        "3",
        "--seeds",
        "0",
        "--images",
        "tiny:0",
        "--no-progress",
        "--no-plots",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| down/up 1/1.6 | 1 |" in out and "+29%" in out


@pytest.mark.parametrize(
    "script,args",
    [
        ("quickstart.py", ["--steps", "4"]),
        ("custom_schedule.py", []),
        ("ablation_window.py", ["--steps", "3"]),
        ("noise_level_windows.py", []),
    ],
)
def test_examples_run(script, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")


def test_benchmark_runs():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_alg.py"),
            "--steps",
            "4",
            "--repeats",
            "1",
            "--size",
            "32",
            "--families",
            "wan2.1",
            "cogvideox",
            "ltx-2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "wan2.1" in out and "cogvideox" in out and "ALG/base" in out
    # The pass ratio comes from the traces: 4 steps, 2 filtered; LTX-2 runs 4 passes a step
    # (CFG pair, STG, modality) and has no diffusers cache (nan).
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["wan2.1"][1:3] == ["10", "1.250"]
    assert rows["ltx-2"][1:3] == ["18", "1.125"] and rows["ltx-2"][-3] == "nan"


def test_real_model_path_loads_a_local_diffusers_folder(tmp_path, image):
    # The from_pretrained path, exercised on a tiny pipeline saved to disk (no hub access).
    from guidance_kit.generate import load
    from guidance_kit.tiny import tiny_pipeline

    pipe, kwargs = tiny_pipeline("cogvideox")
    pipe.save_pretrained(tmp_path / "cog")
    # The tiny pipeline has no text encoder (fixed prompt embeddings); a real folder has one.
    loaded = load(str(tmp_path / "cog"), dtype=torch.float32, device="cpu", tokenizer=None, text_encoder=None)
    assert not loaded.tiny and type(loaded.pipe).__name__ == "CogVideoXImageToVideoPipeline"
    with gk.guide(loaded.pipe, "alg") as run:
        loaded.pipe(image=image, num_inference_steps=3, output_type="latent", **kwargs)
    assert run.backend.name == "cogvideox" and run.last.passes == 2 * 3 + 1


def test_sweep_shards_over_real_processes(tmp_path):
    # Two processes launched by torchrun (as accelerate launch does on GPUs): each runs half the
    # cells into its own shard, the main one waits for the other and writes the tables.
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "-m",
        "guidance_kit.cli",
        "ablate",
        "all-terms",
        "--out",
        str(tmp_path),
        "--steps",
        "2",
        "--seeds",
        "0",
        "1",
        "--images",
        "tiny:0",
        "--no-progress",
        "--no-plots",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("results:") == 1  # only the main process reports
    assert [len((tmp_path / f"cells-{r}.jsonl").read_text().splitlines()) for r in (0, 1)] == [3, 3]
    assert (tmp_path / "results.csv").read_text().count("\n") == 4
