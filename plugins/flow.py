"""Built-in optical-flow estimators for the motion metrics.

``farneback``: OpenCV's dense Farneback flow; needs no weights (the embedded default).
``raft``: torchvision's RAFT (what VBench uses), for users who have torchvision and the weights
file; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from guidance_kit.errors import GuidanceKitError, InvalidParameterError
from guidance_kit.hookspecs import hookimpl


class Farneback:
    """Dense flow by polynomial expansion (Farneback 2003) on the grayscale frames."""

    name: ClassVar[str] = "farneback"

    def __init__(self, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15, iterations: int = 3):
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - opencv is a dependency
            raise GuidanceKitError(
                "the farneback flow estimator needs opencv: pip install opencv-python-headless"
            ) from exc
        self._cv2 = cv2
        self.params = (pyr_scale, levels, winsize, iterations, 5, 1.2, 0)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        a = cv2.cvtColor((first * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor((second * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
        return cv2.calcOpticalFlowFarneback(a, b, None, *self.params)


class RAFT:
    """torchvision's ``raft_large`` loaded from a local weights file (``weights=...``)."""

    name: ClassVar[str] = "raft"

    def __init__(self, weights: str | Path | None = None, device: str = "cpu", iterations: int = 20):
        if weights is None or not Path(weights).is_file():
            raise InvalidParameterError(
                f"the raft flow estimator needs a local weights file (raft_large state dict), got weights={weights!r}"
            )
        try:
            from torchvision.models.optical_flow import raft_large
        except Exception as exc:
            raise GuidanceKitError(
                f"the raft flow estimator needs torchvision ({exc}); use 'farneback' instead"
            ) from exc
        self.model = raft_large(weights=None)
        self.model.load_state_dict(torch.load(weights, map_location="cpu"))
        self.model.eval().to(device)
        self.device, self.iterations = device, iterations

    @torch.no_grad()
    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        def prep(frame: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(frame).permute(2, 0, 1)[None].to(self.device) * 2 - 1
            h, w = x.shape[-2:]  # RAFT needs sizes divisible by 8
            return torch.nn.functional.pad(x, (0, (-w) % 8, 0, (-h) % 8), mode="replicate")

        h, w = first.shape[:2]
        flow = self.model(prep(first), prep(second), num_flow_updates=self.iterations)[-1]
        return flow[0, :, :h, :w].permute(1, 2, 0).cpu().numpy()


@hookimpl
def register_flow_estimators() -> list[type]:
    return [Farneback, RAFT]
