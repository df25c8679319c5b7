"""Ablation resume: keyed on the full configuration, survives torn lines, one writer per folder,
and the whole sweep is checked before any model loads."""

import json
import subprocess
import sys
import textwrap
import time

import attrs
import numpy as np
import pytest
from PIL import Image

import guidance_kit as gk
from guidance_kit import ablation, cells
from guidance_kit.errors import FolderLockedError, InputFileError, MissingFileError, ResumeMismatchError


class Fake:
    """Stands in for the model: counts loads and generated cells, returns a small video."""

    def __init__(self, monkeypatch, video=None):
        self.loads, self.calls = 0, []
        self.video = video
        monkeypatch.setattr(ablation, "load", self.load)
        monkeypatch.setattr(ablation, "generate", self.generate)

    def load(self, model):
        self.loads += 1
        return attrs.make_class("Loaded", ["kwargs", "tiny"])({}, True)

    def generate(self, loaded, image, recipe, *, prompt, steps, seed, **call):
        self.calls.append((seed, steps))
        if self.video is not None:
            return self.video, None
        rng = np.random.default_rng(seed)
        return rng.random((3, 16, 16, 3)).astype(np.float32), None


def sweep(**changes):
    data = {"name": "t", "grid": {"schedule.end": [0.1, 0.2]}, "steps": 2, "seeds": [0]}
    return ablation.Sweep.from_dict({**data, **changes})


def run(s, out, **kw):
    return ablation.run_sweep(s, out, progress=False, plots=False, **kw)


def test_rows_record_their_configuration(tmp_path, monkeypatch):
    Fake(monkeypatch)
    rows = run(sweep(), tmp_path)
    config = rows[0]["config"]
    assert config["steps"] == 2 and config["model"] == "tiny:wan2.1" and config["version"] == gk.__version__
    assert config["recipe"]["schedule"]["end"] == 0.1 and config["image"] == "tiny:0" and config["seed"] == 0
    assert rows[0]["config_key"] == cells.config_key(config)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"steps": 3}, "steps 2 -> 3"),
        ({"model": "tiny:cogvideox"}, "model 'tiny:wan2.1' -> 'tiny:cogvideox'"),
        ({"recipe": "alg-gaussian"}, "recipe"),
        ({"call": {"guidance_scale": 3.0}}, "call {} -> {'guidance_scale': 3.0}"),
    ],
)
def test_changed_configuration_is_refused_before_loading_anything(tmp_path, monkeypatch, change, message):
    fake = Fake(monkeypatch)
    run(sweep(), tmp_path)
    assert fake.loads == 1 and len(fake.calls) == 2
    with pytest.raises(ResumeMismatchError, match=f"2 of these cells .*{message}.*--recompute") as caught:
        run(sweep(**change), tmp_path)
    assert fake.loads == 1 and len(fake.calls) == 2  # nothing loaded, nothing computed
    assert str(tmp_path) in str(caught.value)


def test_changed_image_bytes_and_library_version_are_refused(tmp_path, monkeypatch):
    Fake(monkeypatch)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(photo)
    out = tmp_path / "out"
    run(sweep(images=[str(photo)]), out)
    Image.new("RGB", (8, 8), (0, 0, 200)).save(photo)  # same name, other picture
    with pytest.raises(ResumeMismatchError, match="image 'sha256:"):
        run(sweep(images=[str(photo)]), out)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(photo)
    assert len(run(sweep(images=[str(photo)]), out)) == 2  # the original picture: resumes
    version = gk.__version__
    monkeypatch.setattr(gk, "__version__", "9.9.9")
    with pytest.raises(ResumeMismatchError, match=f"version '{version}' -> '9.9.9'"):
        run(sweep(images=[str(photo)]), out)


def test_recompute_replaces_stale_cells_only(tmp_path, monkeypatch):
    fake = Fake(monkeypatch)
    run(sweep(), tmp_path)
    rows = run(sweep(steps=3, grid={"schedule.end": [0.1, 0.2, 0.3]}), tmp_path, recompute=True)
    assert [r["config"]["steps"] for r in rows] == [3, 3, 3]
    assert fake.calls == [(0, 2), (0, 2), (0, 3), (0, 3), (0, 3)]
    assert len(run(sweep(steps=3), tmp_path)) == 2 and len(fake.calls) == 5  # now current: no work


def test_rows_from_before_keying_are_refused(tmp_path, monkeypatch):
    Fake(monkeypatch)
    s = sweep()
    first = next(s.cells())
    (tmp_path / "cells-0.jsonl").write_text(json.dumps({**first, "dynamic": 1.0}) + "\n")
    with pytest.raises(ResumeMismatchError, match="rows written before results were keyed"):
        run(s, tmp_path)


def test_seed_prompt_and_grid_changes_are_new_cells_not_stale(tmp_path, monkeypatch):
    fake = Fake(monkeypatch)
    run(sweep(), tmp_path)
    assert len(run(sweep(seeds=[0, 1]), tmp_path)) == 4 and len(fake.calls) == 4
    assert len(run(sweep(seeds=[1]), tmp_path)) == 2 and len(fake.calls) == 4  # a subset resumes


def test_torn_last_line_loses_no_grid_point(tmp_path, monkeypatch):
    fake = Fake(monkeypatch)
    run(sweep(grid={"schedule.end": [0.1, 0.2, 0.3]}), tmp_path)
    shard = tmp_path / "cells-0.jsonl"
    text = shard.read_text()
    shard.write_text(text[: len(text) - 40])  # interrupted while writing the third row
    rows = run(sweep(grid={"schedule.end": [0.1, 0.2, 0.3]}), tmp_path)
    assert len(rows) == 3 and len(fake.calls) == 4  # exactly the torn cell again
    lines = shard.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert len(run(sweep(grid={"schedule.end": [0.1, 0.2, 0.3]}), tmp_path)) == 3 and len(fake.calls) == 4


def test_second_writer_into_the_same_folder_is_refused(tmp_path, monkeypatch):
    fake = Fake(monkeypatch)
    with cells.locked(tmp_path, 0), pytest.raises(FolderLockedError, match="another ablation .* --out"):
        run(sweep(), tmp_path)
    assert fake.loads == 0 and fake.calls == []
    assert len(run(sweep(), tmp_path)) == 2  # released: runs


def test_lock_is_held_across_processes(tmp_path, monkeypatch):
    Fake(monkeypatch)
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from guidance_kit import cells
        with cells.locked(Path({str(tmp_path)!r}), 0):
            print("locked", flush=True)
            sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLockedError, match=f"pid {proc.pid}"):
            run(sweep(), tmp_path)
    finally:
        proc.communicate("", timeout=60)
    assert len(run(sweep(), tmp_path)) == 2


def test_each_shard_is_read_once_before_and_once_after(tmp_path, monkeypatch):
    Fake(monkeypatch)
    reads = []
    real = cells.read_rows
    monkeypatch.setattr(cells, "read_rows", lambda out: reads.append(1) or real(out))
    big = sweep(seeds=list(range(4)))
    run(big, tmp_path)
    run(big, tmp_path)
    assert len(reads) == 4


def test_resuming_1200_done_cells_is_fast(tmp_path, monkeypatch):
    Fake(monkeypatch)
    big = sweep(grid={"schedule.end": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]}, images=["tiny:0", "tiny:1"])
    big = attrs.evolve(big, seeds=list(range(100)))
    configs = big.configs()
    with (tmp_path / "cells-0.jsonl").open("w") as f:
        for cell in big.cells():
            config = configs[cell["id"]]
            f.write(
                json.dumps({**cell, "config": config, "config_key": cells.config_key(config), "dynamic": 0.0})
            )
            f.write("\n")
    monkeypatch.setattr(ablation.report, "write_report", lambda *a, **k: None)
    start = time.perf_counter()
    assert len(run(big, tmp_path)) == 1200
    assert time.perf_counter() - start < 5  # 19 s before the rows were read once


def test_non_finite_video_is_flagged_not_counted_as_static(tmp_path, monkeypatch):
    Fake(monkeypatch, video=np.full((3, 16, 16, 3), np.nan, np.float32))
    rows = ablation.run_sweep(sweep(), tmp_path, progress=False, plots=False)
    assert [r["finite"] for r in rows] == [False, False] and "dynamic" not in rows[0]
    assert (tmp_path / "results.csv").exists()


@pytest.mark.parametrize(
    "change,match",
    [
        ({"prompts": "a dog"}, r"sweep prompts must be a non-empty list, got 'a dog' of type str"),
        ({"images": "tiny:0"}, r"sweep images must be a non-empty list"),
        ({"seeds": []}, r"sweep seeds must be a non-empty list"),
        ({"images": []}, r"sweep images must be a non-empty list"),
        ({"seeds": ["a"]}, r"sweep seeds\[0\] must be an int"),
        ({"seeds": [True]}, r"sweep seeds\[0\] must be an int .* got True"),
        ({"seeds": [-1]}, r"sweep seeds\[0\] must be an int in \[0, "),
        ({"steps": 0}, r"sweep steps must be an int in \[1, 10000\], got 0"),
        ({"steps": True}, r"sweep steps must be an int .* got True"),
        ({"steps": "10"}, r"sweep steps .* got '10' of type str"),
        ({"call": {"guidance_scale": "x"}}, r"sweep call.guidance_scale must be a finite number >= 0"),
        ({"call": {"guidance_scale": float("nan")}}, r"sweep call.guidance_scale must be a finite number"),
        ({"call": {"num_frames": 0}}, r"sweep call.num_frames must be an int in \[1, "),
        ({"call": {"prompt": "x"}}, r"sweep call must not set \['prompt'\]"),
        ({"call": [1]}, r"sweep call must be a table"),
        ({"call": {"x": object()}}, r"sweep call.x must be a number, string"),
        ({"images": ["tiny:abc"]}, r"sweep images\[0\] must be <prefix>:<non-negative int>"),
        ({"model": ""}, r"sweep model must be a non-empty string"),
        ({"grid": {"schedule.end": "0.1"}}, r"grid must map keys to non-empty lists"),
        ({"recipe": 3}, r"sweep recipe must be a recipe name or a table, got 3"),
    ],
)
def test_bad_sweeps_fail_before_any_model_loads(change, match, monkeypatch):
    fake = Fake(monkeypatch)
    with pytest.raises(gk.InvalidParameterError, match=match):
        sweep(**change)
    assert fake.loads == 0


def test_bad_images_fail_before_any_model_loads(tmp_path, monkeypatch):
    fake = Fake(monkeypatch)
    with pytest.raises(MissingFileError, match="image not found: .*missing.png"):
        sweep(images=[str(tmp_path / "missing.png")])
    with pytest.raises(MissingFileError, match="is a directory"):
        sweep(images=[str(tmp_path)])
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputFileError, match="not an image file"):
        run(sweep(images=[str(tmp_path / "text.png")]), tmp_path / "o1")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(InputFileError, match="cannot read image .*cut.png"):
        run(sweep(images=[str(tmp_path / "cut.png")]), tmp_path / "o2")
    assert fake.loads == 0


def test_unwritable_out_fails_before_any_model_loads(tmp_path, monkeypatch):
    fake = Fake(monkeypatch)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(gk.errors.OutputError, match="file"):
            run(sweep(), out)
    assert fake.loads == 0
