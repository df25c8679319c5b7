"""The CLI on bad input: exit 2 with one line on stderr and no traceback, before any model loads;
Ctrl-C: one line and exit 130."""

import os
import signal
import subprocess
import sys

import pytest
from PIL import Image

import guidance_kit.generate
from guidance_kit import files
from guidance_kit.cli import main
from guidance_kit.errors import InvalidParameterError, OutputError


@pytest.fixture
def no_model(monkeypatch):
    """Bad input must be refused before the model loads."""
    monkeypatch.setattr(guidance_kit.generate, "load", lambda *a, **k: pytest.fail("a model was loaded"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args,message",
    [
        (["generate", "--steps", "0"], "argument --steps: must be an int >= 1, got 0"),
        (["generate", "--steps", "abc"], "argument --steps: expected an int, got 'abc'"),
        (["generate", "--num-frames", "0"], "argument --num-frames: must be an int >= 1"),
        (["generate", "--guidance-scale", "nan"], "argument --guidance-scale: must be a finite number >= 0"),
        (["generate", "--guidance-scale", "inf"], "argument --guidance-scale: must be a finite number"),
        (["generate", "--fps", "-1"], "argument --fps: must be an int in [1, 1000], got -1"),
        (["generate", "--seed", "-1"], "argument --seed: must be an int in [0, "),
        (["generate", "--execution", "fast"], "argument --execution: invalid choice"),
        (["ablate", "window-length", "--seeds", "x"], "argument --seeds: expected an int"),
        (["plot", "--size", "0"], "argument --size: must be an int in [8, 4096]"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, capsys, no_model):
    assert main(args) == 2
    assert message in one_line_error(capsys)


def test_bad_files_exit_2_with_one_line_before_loading(tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "bad.yaml").write_text("filter: &a [1]\nschedule: *a\n")
    (tmp_path / "sweep.toml").write_text('prompts = "a dog"\n[grid]\n"schedule.end" = [0.1]\n')
    cases = [
        (["generate", "--out", "file"], "output folder file exists and is not a folder"),
        (["generate", "--out", "file/sub"], "cannot write into output folder file/sub"),
        (["generate", "--out", "o", "--image", "."], "image . is a directory, not a file"),
        (["generate", "--out", "o", "--image", "text.png"], "text.png is not an image file"),
        (["generate", "--out", "o", "--image", "tiny:abc"], "--image must be <prefix>:<non-negative int>"),
        (["generate", "--out", "o", "--recipe", "dir.toml"], "recipe file dir.toml is a directory"),
        (["generate", "--out", "o", "--recipe", "bad.yaml"], "aliases (*name) are not allowed"),
        (["ablate", "sweep.toml", "--out", "a"], "sweep prompts must be a non-empty list, got 'a dog'"),
        (
            ["ablate", "window-length", "--images", "missing.png", "--out", "a"],
            "image not found: missing.png",
        ),
        (["ablate", ".", "--out", "a"], "is a directory, not a sweep file"),
        (["plot", "--out", "file"], "exists and is not a folder"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        assert message in one_line_error(capsys), args


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_loading(tmp_path, capsys, no_model):
    tmp_path.chmod(0o500)
    try:
        assert main(["generate", "--out", str(tmp_path / "o")]) == 2
    finally:
        tmp_path.chmod(0o700)
    assert "cannot write into output folder" in one_line_error(capsys)


def test_video_writing_is_checked(tmp_path, monkeypatch):
    frames = [Image.new("RGB", (16, 16))] * 2
    with pytest.raises(InvalidParameterError, match="fps must be in"):
        files.write_video(frames, tmp_path / "v.mp4", fps=-1)
    import diffusers.utils

    monkeypatch.setattr(
        diffusers.utils, "export_to_video", lambda *a, **k: None
    )  # "succeeds", writes nothing
    with pytest.raises(OutputError, match="produced no file"):
        files.write_video(frames, tmp_path / "v.mp4", fps=8)

    def broken(*args, **kwargs):
        raise BrokenPipeError("ffmpeg exited")

    monkeypatch.setattr(diffusers.utils, "export_to_video", broken)
    with pytest.raises(OutputError, match="cannot write video .*BrokenPipeError: ffmpeg exited"):
        files.write_video(frames, tmp_path / "v.mp4", fps=8)


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    cmd = [
        sys.executable,
        "-u",
        "-m",
        "guidance_kit.cli",
        "generate",
        "--steps",
        "100000",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(20):  # library notices may come first
            if "tiny random-weight pipeline" in proc.stdout.readline():
                break  # generating now
        else:
            pytest.fail("the CLI never started generating")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "guidance-kit: interrupted" and "Traceback" not in err
