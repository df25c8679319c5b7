"""Built-in guidance modes (see :class:`guidance_kit.types.GuidanceMode` for the formulas)."""

from __future__ import annotations

from guidance_kit.hookspecs import hookimpl
from guidance_kit.types import GuidanceMode

ALG = GuidanceMode(
    "alg",
    filter_cond=True,
    filter_uncond=True,
    original_anchor=True,
    description="eps = U(I) + w * (C(LP I) - U(LP I)): the paper's method, one extra pass per filtered step with CFG",
)
REPLACE = GuidanceMode(
    "replace",
    filter_cond=True,
    filter_uncond=True,
    original_anchor=False,
    description="eps = U(LP I) + w * (C(LP I) - U(LP I)): every term sees the filtered image (naive ablation)",
)
COND_ONLY = GuidanceMode(
    "cond_only",
    filter_cond=True,
    filter_uncond=False,
    original_anchor=False,
    description="eps = U(I) + w * (C(LP I) - U(I)): only the conditional branch is filtered, no extra pass",
)


@hookimpl
def register_modes() -> list[GuidanceMode]:
    return [ALG, REPLACE, COND_ONLY]
