"""Load a pipeline (a model id, a local path, or an embedded tiny one) and generate a video with
or without a recipe. Used by the CLI and the ablation runner."""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from PIL import Image

from guidance_kit.controller import Run, find_backend, guide, image_arguments
from guidance_kit.errors import GuidanceKitError, InvalidParameterError, UnsupportedPipelineError
from guidance_kit.files import check_image_source, open_image
from guidance_kit.recipe import Recipe
from guidance_kit.tiny import FAMILIES, tiny_image, tiny_pipeline
from guidance_kit.validators import check_call_args, check_number, check_text

TINY_PREFIX = "tiny:"
TESTBED = "testbed"  # the trained toy model of guidance_kit.testbed (shipped weights, no download)
DEFAULT_MODEL = "tiny:wan2.1"


@attrs.define
class Loaded:
    """A pipeline ready to call, the keyword arguments it needs, and whether it is a tiny one."""

    pipe: Any
    kwargs: dict[str, Any]
    tiny: bool
    name: str


def load(
    model: str | None = None, dtype: torch.dtype | None = None, device: str | None = None, **components: Any
) -> Loaded:
    """``model``: ``"tiny:<family>"`` (random weights, no download), ``"testbed"`` (the trained toy
    model of ``guidance_kit.testbed``, shipped), a Hugging Face model id or a local diffusers folder
    (``DiffusionPipeline.from_pretrained``; ``components`` such as a quantized ``transformer=...``
    are passed through)."""
    model = check_text("model", model or DEFAULT_MODEL)
    if model == TESTBED:
        from guidance_kit import testbed

        pipe, kwargs = testbed.load(device or "cpu", dtype or torch.float32)
        return Loaded(pipe, kwargs, True, model)
    if model.startswith(TINY_PREFIX):
        family = model[len(TINY_PREFIX) :] or "wan2.1"
        if family not in FAMILIES:
            raise InvalidParameterError(f"unknown tiny model family {family!r}; choose from {list(FAMILIES)}")
        pipe, kwargs = tiny_pipeline(family, dtype or torch.float32)
        if device:
            pipe.to(device)
        return Loaded(pipe, kwargs, True, model)
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=dtype or torch.bfloat16, **components)
    except (OSError, ValueError) as exc:
        raise GuidanceKitError(f"cannot load model {model!r}: {exc}") from exc
    try:
        find_backend(pipe)
    except UnsupportedPipelineError as exc:
        raise UnsupportedPipelineError(f"unknown model family for {model!r}: {exc}") from None
    pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return Loaded(pipe, {}, False, model)


def load_image(source: str | Path | Image.Image | None, size: int = 32) -> Image.Image:
    """An RGB image from a path, ``"tiny:<seed>"`` (a generated test image), ``"testbed:<k>"``
    (the testbed's k-th held-out image) or a PIL image."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if str(source).startswith(TESTBED + ":"):
        from guidance_kit import testbed

        return testbed.image(int(str(source)[len(TESTBED) + 1 :]))
    if source is None or str(source).startswith(TINY_PREFIX):
        seed = int(str(source)[len(TINY_PREFIX) :] or 0) if source else 0
        return tiny_image(size, seed)
    return open_image(check_image_source("image", str(source)))


def _check_call_names(pipe: Any, kwargs: dict[str, Any]) -> None:
    """Refuse call arguments the pipeline does not take, before it runs (a typo in a sweep's
    ``call`` table would otherwise end in a TypeError traceback)."""
    params = inspect.signature(pipe.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise InvalidParameterError(
            f"{type(pipe).__name__} takes no call argument(s) {unknown}; it takes: {', '.join(sorted(params))}"
        )


def generate(
    loaded: Loaded,
    image: Image.Image,
    recipe: Recipe | str | None,
    *,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    steps: int = 10,
    seed: int = 0,
    execution: str = "batched",
    **call_kwargs: Any,
) -> tuple[np.ndarray, Run | None]:
    """One video as float frames ``[T, H, W, 3]`` in [0, 1], and the guide() run (None unguided)."""
    steps = check_number("steps", steps, lo=1, integer=True)
    seed = check_number("seed", seed, lo=0, hi=2**64 - 1, integer=True)
    kwargs = {**loaded.kwargs, **check_call_args("call", call_kwargs)}
    _check_call_names(loaded.pipe, kwargs)
    if not loaded.tiny:
        if prompt is None:
            raise InvalidParameterError("a prompt is needed for a real model")
        kwargs.update(prompt=prompt)
        if negative_prompt is not None:
            kwargs.update(negative_prompt=negative_prompt)
    context = nullcontext(None) if recipe is None else guide(loaded.pipe, recipe, execution=execution)
    with context as run:
        out = loaded.pipe(
            **image_arguments(loaded.pipe, image, kwargs),
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
            **kwargs,
        )
    frames = np.asarray(out.frames[0], dtype=np.float32)
    return frames, run
