"""What a run reads and writes, with named errors: conditioning images, output folders, videos.

Everything here is checked before a model is loaded or a video generated, so a bad ``--image``
or ``--out`` fails in a second, not after the whole run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from guidance_kit.errors import (
    InputFileError,
    InvalidParameterError,
    MissingFileError,
    OutputError,
    brief,
    shown,
)
from guidance_kit.validators import check_number, check_text

# Prefixes of generated test images (no file): "tiny:<seed>", "testbed:<k>".
GENERATED_IMAGES = ("tiny:", "testbed:")


def generated_image(source: str) -> bool:
    return source.startswith(GENERATED_IMAGES)


def check_image_source(label: str, source: Any) -> str:
    """A generated image name or the path of an existing file (not yet decoded)."""
    source = check_text(label, source)
    if generated_image(source):
        suffix = source.split(":", 1)[1]
        if suffix and not suffix.isdigit():
            raise InvalidParameterError(f"{label} must be <prefix>:<non-negative int>, got {shown(source)}")
        return source
    _existing_file(Path(source))
    return source


def _existing_file(path: Path) -> None:
    if path.is_dir():
        raise MissingFileError(f"image {path} is a directory, not a file")
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")


def open_image(path: str | Path) -> Image.Image:
    """An RGB image from a file, fully decoded: a truncated or non-image file fails here."""
    path = Path(path)
    _existing_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise InputFileError(f"{path} is not an image file PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise InputFileError(f"image {path} is too large: {brief(exc)}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data, unreadable file
        raise InputFileError(f"cannot read image {path}: {brief(exc)}") from None


def image_digest(source: str) -> str:
    """What identifies an image in a resume key: a generated image's name, or the SHA-256 of a
    file's bytes (after checking it decodes), so an edited photo is a new image."""
    if generated_image(source):
        return source
    open_image(source)
    return "sha256:" + hashlib.sha256(Path(source).read_bytes()).hexdigest()


def prepare_out(path: str | Path) -> Path:
    """Create the output folder and prove it is writable, before anything is computed."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:  # a parent that is a file, no permission, read-only file system
        raise OutputError(f"cannot write into output folder {path}: {exc.strerror or brief(exc)}") from None
    return path


def write_video(frames: Any, path: str | Path, fps: Any) -> Path:
    """Write ``frames`` as an mp4 and check that the file is there."""
    from diffusers.utils import export_to_video

    fps = check_number("fps", fps, lo=0, lo_open=True, hi=1000)
    path = Path(path)
    try:
        export_to_video(list(frames), str(path), fps=fps)
    except Exception as exc:  # ffmpeg's failures come as several exception types
        raise OutputError(f"cannot write video {path}: {type(exc).__name__}: {brief(exc)}") from None
    if not path.is_file() or path.stat().st_size == 0:
        raise OutputError(f"writing video {path} produced no file")
    return path


def tag_video(path: str | Path, comment: str) -> None:
    """Store ``comment`` in the mp4's metadata (its ``comment`` tag), remuxing without re-encoding."""
    import subprocess

    import imageio_ffmpeg

    path = Path(path)
    tagged = path.with_name(f".{path.stem}.tagged{path.suffix}")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-i",
        str(path),
        "-map",
        "0",
        "-c",
        "copy",
    ]
    command += ["-metadata", f"comment={comment}", str(tagged)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not tagged.is_file():
        tagged.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write metadata into {path}: {brief(done.stderr.strip() or 'ffmpeg failed')}"
        )
    os.replace(tagged, path)


def read_video_tag(path: str | Path) -> str:
    """The ``comment`` tag of an mp4 written by :func:`tag_video`."""
    import subprocess

    import imageio_ffmpeg

    path = Path(path)
    _existing_file(path)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("comment="):
            # ffmetadata escapes '=', ';', '#', '\' and newlines with a backslash.
            value, escaped = [], False
            for char in line[len("comment=") :]:
                if escaped or char != "\\":
                    value.append(char)
                    escaped = False
                else:
                    escaped = True
            return "".join(value)
    raise InputFileError(f"{path} carries no guidance_kit settings in its metadata")
