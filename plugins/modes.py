"""Built-in guidance modes: each declares its passes and owns its formula (see
:class:`guidance_kit.types.GuidanceMode`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from guidance_kit.hookspecs import hookimpl
from guidance_kit.types import C_LP, U_I, U_LP, Branch, GuidanceMode, Prediction


class ALG(GuidanceMode):
    name = "alg"
    description = (
        "eps = U(I) + w * (C(LP I) - U(LP I)): the paper's method, one extra pass per filtered step with CFG"
    )

    def predictions(self, cfg: bool) -> tuple[Prediction, ...]:
        return (U_I, U_LP, C_LP) if cfg else (C_LP,)

    def forward(self, preds: Mapping[Prediction, torch.Tensor], cfg: bool) -> dict[Branch, torch.Tensor]:
        if not cfg:
            return {"cond": preds[C_LP]}
        # The unconditional anchor keeps the sharp image; only the guidance direction is low-passed.
        return {"uncond": preds[U_I], "cond": preds[C_LP] + (preds[U_I] - preds[U_LP])}


class Replace(GuidanceMode):
    name = "replace"
    description = (
        "eps = U(LP I) + w * (C(LP I) - U(LP I)): every term sees the filtered image (naive ablation)"
    )

    def predictions(self, cfg: bool) -> tuple[Prediction, ...]:
        return (U_LP, C_LP) if cfg else (C_LP,)

    def forward(self, preds: Mapping[Prediction, torch.Tensor], cfg: bool) -> dict[Branch, torch.Tensor]:
        return {"uncond": preds[U_LP], "cond": preds[C_LP]} if cfg else {"cond": preds[C_LP]}


class CondOnly(GuidanceMode):
    name = "cond_only"
    description = "eps = U(I) + w * (C(LP I) - U(I)): only the conditional branch is filtered, no extra pass"

    def predictions(self, cfg: bool) -> tuple[Prediction, ...]:
        return (U_I, C_LP) if cfg else (C_LP,)

    def forward(self, preds: Mapping[Prediction, torch.Tensor], cfg: bool) -> dict[Branch, torch.Tensor]:
        return {"uncond": preds[U_I], "cond": preds[C_LP]} if cfg else {"cond": preds[C_LP]}


BUILTIN_MODES = (ALG(), Replace(), CondOnly())


@hookimpl
def register_modes() -> list[GuidanceMode]:
    return list(BUILTIN_MODES)
