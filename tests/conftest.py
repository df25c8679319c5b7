import warnings

import pytest
import torch

from guidance_kit.controller import image_arguments
from guidance_kit.tiny import tiny_image, tiny_pipeline

warnings.filterwarnings("ignore", message=".*should be kept in float32.*")
warnings.filterwarnings("ignore", message=".*requires torchvision.*")
# The tiny pipelines are far too small for intra-op threads to pay: one thread is faster and keeps
# the suite's time steady when the machine is shared (some float64 kernels stall on contention).
torch.set_num_threads(1)

_cache: dict = {}


def pipeline(family: str, dtype: torch.dtype = torch.float64):
    """A tiny pipeline, built once per test session (guide() restores it after every use)."""
    key = (family, dtype)
    if key not in _cache:
        _cache[key] = tiny_pipeline(family, dtype)
    return _cache[key]


@pytest.fixture
def image():
    return tiny_image(32, seed=0)


def run_pipe(pipe, kwargs, image, steps=6, seed=0, **extra):
    call = {**kwargs, **extra}
    out = pipe(
        **image_arguments(pipe, image, call),
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
        **call,
    )
    return out.frames
