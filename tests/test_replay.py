"""generate writes everything that made a video into video.json; --from makes the same video again."""

import json

from PIL import Image

from guidance_kit import cli


def test_a_video_is_made_again_from_its_settings(tmp_path, capsys):
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 30, 90)).save(image)
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["generate", "--steps", "3", "--seed", "5", "--recipe", "alg-cfg-early", "--image", str(image)]
    assert cli.main([*args, "--out", str(first)]) == 0
    settings = json.loads((first / "video.json").read_text())["settings"]
    assert settings["seed"] == 5 and settings["image"] == str(image)
    assert settings["recipe"]["guidance"] == {"name": "step_switch", "start": 0.0, "end": 0.3}
    assert cli.main(["generate", "--from", str(first / "video.json"), "--out", str(second)]) == 0
    assert (first / "video.mp4").read_bytes() == (second / "video.mp4").read_bytes()
    assert json.loads((second / "video.json").read_text()) == json.loads((first / "video.json").read_text())
    # The mp4 carries the same settings in its metadata.
    third = tmp_path / "third"
    assert cli.main(["generate", "--from", str(first / "video.mp4"), "--out", str(third)]) == 0
    assert (third / "video.mp4").read_bytes() == (first / "video.mp4").read_bytes()
    # A changed image is refused, not silently used.
    Image.new("RGB", (32, 32), (0, 0, 0)).save(image)
    capsys.readouterr()
    assert cli.main(["generate", "--from", str(first / "video.json"), "--out", str(tmp_path / "fourth")]) == 2
    assert "is not the one" in capsys.readouterr().err
