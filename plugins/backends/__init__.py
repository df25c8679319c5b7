"""Built-in backends for the diffusers image-to-video pipelines (see ``docs/backends``)."""

from __future__ import annotations

from guidance_kit.backend import Backend
from guidance_kit.hookspecs import hookimpl
from guidance_kit.plugins.backends.cogvideox import CogVideoXBackend
from guidance_kit.plugins.backends.cosmos import Cosmos2Backend, Cosmos25Backend
from guidance_kit.plugins.backends.framepack import HunyuanFramepackBackend
from guidance_kit.plugins.backends.hunyuan import HunyuanSkyreelsBackend, HunyuanVideoBackend
from guidance_kit.plugins.backends.hunyuan15 import HunyuanVideo15Backend
from guidance_kit.plugins.backends.kandinsky import Kandinsky5Backend
from guidance_kit.plugins.backends.kandinsky6 import Kandinsky6Backend
from guidance_kit.plugins.backends.ltx import (
    LTX2Backend,
    LTX2ConditionBackend,
    LTXConditionBackend,
    LTXVideoBackend,
)
from guidance_kit.plugins.backends.motif import MotifVideoBackend
from guidance_kit.plugins.backends.sana import SanaVideoBackend
from guidance_kit.plugins.backends.skyreels_df import SkyReelsV2DFBackend
from guidance_kit.plugins.backends.svd import StableVideoDiffusionBackend
from guidance_kit.plugins.backends.wan import (
    ChronoEditBackend,
    Wan21Backend,
    Wan22A14BBackend,
    Wan22TI2VBackend,
)
from guidance_kit.plugins.backends.wan_animate import WanAnimateBackend
from guidance_kit.plugins.backends.wan_vace import WanVACEBackend

BUILTIN_BACKENDS = (
    Wan22A14BBackend(),
    Wan22TI2VBackend(),
    Wan21Backend(),
    CogVideoXBackend(),
    HunyuanVideoBackend(),
    LTXVideoBackend(),
    LTX2Backend(),
    LTXConditionBackend(),
    LTX2ConditionBackend(),
    StableVideoDiffusionBackend(),
    SanaVideoBackend(),
    HunyuanSkyreelsBackend(),
    ChronoEditBackend(),
    Kandinsky5Backend(),
    Kandinsky6Backend(),
    Cosmos2Backend(),
    Cosmos25Backend(),
    MotifVideoBackend(),
    HunyuanVideo15Backend(),
    SkyReelsV2DFBackend(),
    HunyuanFramepackBackend(),
    WanVACEBackend(),
    WanAnimateBackend(),
)


@hookimpl
def register_backends() -> list[Backend]:
    return list(BUILTIN_BACKENDS)
