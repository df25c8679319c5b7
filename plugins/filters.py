"""Built-in low-pass filters: down/up-sampling, Gaussian blur and a Butterworth FFT filter.

All act on the last two axes of a ``[..., H, W]`` tensor (per frame, per channel, spatial only),
keep shape, dtype and device, and are the identity at strength 0. DownUp and Gaussian modulate
their strength exactly as the authors' ALG release does, so results can match it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F

from guidance_kit.errors import InvalidParameterError, shown
from guidance_kit.hookspecs import hookimpl
from guidance_kit.types import Filter
from guidance_kit.validators import check_number, number

# Interpolation and conv kernels are not implemented for every low-precision dtype on every
# device; low-precision inputs are filtered in float32 and cast back.
_COMPUTE_DTYPES = (torch.float32, torch.float64)


def _as_images(x: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """[..., H, W] -> [N, 1, H, W] in a dtype the kernels support."""
    dtype = x.dtype
    y = x.reshape(-1, 1, *x.shape[-2:])
    if dtype not in _COMPUTE_DTYPES:
        y = y.float()
    return y, dtype


def _back(y: torch.Tensor, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return y.reshape(like.shape).to(dtype)


@attrs.frozen
class DownUp(Filter):
    """Bilinear down-sampling by ``factor`` then back up: the authors' "down_up" filter.

    At strength s the factor is f_s = 1 - (1 - f) * s (f_s == 1 is the identity); the image is
    resized to (max(1, round(H * f_s)), max(1, round(W * f_s))) with Python rounding and back to
    (H, W), both bilinear with antialias=True and align_corners=False.
    """

    name: ClassVar[str] = "downup"
    factor: float = number(
        "DownUp factor",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        what="the resize factor; 1/factor is the paper's 'filter strength'",
    )

    def factor_at(self, strength: float) -> float:
        return 1.0 - (1.0 - self.factor) * strength

    def is_identity(self, strength: float) -> bool:
        return self.factor_at(strength) == 1.0

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        f = self.factor_at(strength)
        height, width = x.shape[-2:]
        size = (max(1, round(height * f)), max(1, round(width * f)))
        y, dtype = _as_images(x)
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=True)
        y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        return _back(y, x, dtype)

    def effective(self, strength: float, height: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"strength": strength, "factor": self.factor_at(strength)}
        if height is not None:
            out["height"] = max(1, round(height * out["factor"]))
        return out


def gaussian_kernel1d(
    kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """torchvision's gaussian_blur kernel: sampled at integer offsets, normalised to sum 1."""
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, steps=kernel_size, dtype=dtype, device=device)
    pdf = torch.exp(-0.5 * (x / sigma) ** 2)
    return pdf / pdf.sum()


@attrs.frozen
class Gaussian(Filter):
    """Gaussian blur with torchvision's ``gaussian_blur`` definition: the authors' "gaussian_blur".

    At strength s, sigma_s = sigma * s (0 is the identity). ``kernel_size`` is an odd int, or a
    float fraction of H: k = int(H * fraction), plus one if even. Reflect padding.

    The authors' default fraction 0.02734375 gives k = 1 (a silent no-op) whenever H * fraction
    < 2, i.e. below about 73 px: every latent. Use an explicit int kernel in latent space; a
    warning is raised when the kernel degenerates to 1x1. A kernel shorter than 6 sigma + 1
    truncates the Gaussian; as sigma grows it tends to a box filter whose response rebounds near
    Nyquist, so attenuation is monotone in strength only for k >= 2 * ceil(3 * sigma) + 1.
    """

    name: ClassVar[str] = "gaussian"
    sigma: float = number("Gaussian sigma", lo=0)
    kernel_size: int | float = attrs.field(default=0.02734375)

    @kernel_size.validator
    def _check_kernel(self, _: Any, value: int | float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParameterError(
                f"Gaussian kernel_size must be an odd int or a float in (0, 1], got {shown(value)}"
            )
        if isinstance(value, int) and (value < 1 or value % 2 == 0):
            raise InvalidParameterError(
                f"Gaussian kernel_size as an int must be odd and >= 1, got {shown(value)}"
            )
        if isinstance(value, float):
            check_number(
                "Gaussian kernel_size fraction", value, lo=0.0, hi=1.0, lo_open=True, what="of the height H"
            )

    def kernel_size_for(self, height: int) -> int:
        if isinstance(self.kernel_size, int):
            return self.kernel_size
        k = int(height * self.kernel_size)
        return k + 1 if k % 2 == 0 else k

    def is_identity(self, strength: float) -> bool:
        return self.sigma * strength == 0.0

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        sigma = self.sigma * strength
        height, width = x.shape[-2:]
        k = self.kernel_size_for(height)
        if k == 1:
            warnings.warn(
                f"Gaussian kernel_size {self.kernel_size!r} gives a 1x1 kernel at H={height}: the blur is a no-op. "
                "Pass an explicit odd int kernel_size (e.g. 2 * ceil(3 * sigma) + 1) for latent-space filtering.",
                stacklevel=3,
            )
            return x
        pad = k // 2
        if pad >= height or pad >= width:
            raise InvalidParameterError(
                f"Gaussian kernel_size {k} needs reflect padding {pad} < H and W, got H={height}, W={width}; "
                f"use kernel_size <= {2 * min(height, width) - 1}"
            )
        y, dtype = _as_images(x)
        # float64: a subnormal sigma would be 0 in float32 and make the centre tap 0/0.
        kernel = gaussian_kernel1d(k, sigma, torch.float64, y.device).to(y.dtype)
        y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
        # The 2-D kernel is the outer product of the 1-D one, so two 1-D passes are exact.
        y = F.conv2d(y, kernel.view(1, 1, 1, k))
        y = F.conv2d(y, kernel.view(1, 1, k, 1))
        return _back(y, x, dtype)

    def effective(self, strength: float, height: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"strength": strength, "sigma": self.sigma * strength}
        if height is not None:
            out["kernel_size"] = self.kernel_size_for(height)
        return out


def butterworth_response(
    height: int,
    width: int,
    cutoff: float,
    order: int,
    strength: float,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """H_s(r) = 1 / (1 + (s * r / r_c)^(2n)) on the rfft2 grid, r = sqrt(fy^2 + fx^2) in cycles/sample.

    Computed as a float64 ratio s * r / r_c: squaring a tiny cutoff first underflows to 0 and
    turns the DC term into 0/0 (an all-NaN video); the ratio only overflows to inf (response 0)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=device)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64, device=device)
    ratio = strength * torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / cutoff
    return (1.0 / (1.0 + ratio ** (2 * order))).to(dtype)


@attrs.frozen
class Butterworth(Filter):
    """Butterworth low-pass in the Fourier domain: H(r) = 1 / (1 + (r / r_c)^(2n)).

    r is the radial frequency in cycles per sample (Nyquist = 0.5), ``cutoff`` r_c in (0, 0.5] is
    where the response is 1/2 and ``order`` n its steepness; the same definition as
    ``skimage.filters.butterworth`` (squared_butterworth=True, npad=0), applied with periodic
    boundaries.

    Strength modulation: at strength s the cutoff becomes r_c / s, i.e.
    H_s(r) = 1 / (1 + (s r / r_c)^(2n)). s = 1 is the full filter, s -> 0 widens the pass band
    to everything and s = 0 is the exact identity (no FFT is taken). Like sigma * s for the
    Gaussian, the attenuation of every frequency grows monotonically with s and DC is kept.
    """

    name: ClassVar[str] = "butterworth"
    cutoff: float = number(
        "Butterworth cutoff", lo=0.0, hi=0.5, lo_open=True, what="cycles per sample; 0.5 is Nyquist"
    )
    # Beyond order 64 the response is a brick wall to float precision.
    order: int = number("Butterworth order", default=2, lo=1, hi=64, integer=True)

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        y, dtype = _as_images(x)
        height, width = y.shape[-2:]
        response = butterworth_response(height, width, self.cutoff, self.order, strength, y.dtype, y.device)
        y = torch.fft.irfft2(torch.fft.rfft2(y) * response, s=(height, width))
        return _back(y, x, dtype)

    def effective(self, strength: float, height: int | None = None) -> dict[str, Any]:
        return {
            "strength": strength,
            "cutoff": self.cutoff / strength if strength else math.inf,
            "order": self.order,
        }


@hookimpl
def register_filters() -> list[type[Filter]]:
    return [DownUp, Gaussian, Butterworth]
