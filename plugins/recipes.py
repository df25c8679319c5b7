"""Built-in recipes: ALG's released and paper defaults per backend, and the paper's ablations.

Released defaults (50 steps): Wan 2.1 I2V: down/up 0.4, window [0, 0.2]; CogVideoX-5B-I2V:
down/up 0.25, window [0, 0.04]; HunyuanVideo-I2V: down/up 0.625, window [0, 0.04] (no CFG: one
pass). Paper (CVPR) settings as (window end, 1/factor): Wan 2.2 (0.1, 2.5), LTX-Video (0.1, 4.0),
generic (0.1, 2.5).
"""

from __future__ import annotations

from guidance_kit.hookspecs import hookimpl
from guidance_kit.plugins.filters import DownUp, Gaussian
from guidance_kit.plugins.schedules import Constant, SigmaWindow, StepSwitch
from guidance_kit.plugins.transforms import Chain, MotionAmplitude, Noise, Scale
from guidance_kit.recipe import Recipe, RecipeEntry


def alg(factor: float, end: float) -> Recipe:
    """ALG as released: down/up filter in latent space over the window [0, end]."""
    return Recipe(filter=DownUp(factor), schedule=StepSwitch(0.0, end), space="latent", mode="alg")


GENERIC = alg(1 / 2.5, 0.1)


def not_in_paper(model: str) -> tuple[Recipe, str]:
    """The generic default, for a model the paper does not report."""
    return GENERIC, f"generic paper default (window 0.1, 1/factor 2.5); {model} is not in the paper"


DEFAULTS = {
    "wan2.1": (alg(0.4, 0.2), "released default (Wan 2.1 I2V 14B, w=5); paper: (0.2, 2.5)"),
    "wan2.2-a14b": (alg(1 / 2.5, 0.1), "paper (CVPR) setting for Wan 2.2: window 0.1, 1/factor 2.5"),
    "wan2.2-ti2v": (
        alg(1 / 2.5, 0.1),
        "paper's Wan 2.2 setting (the paper reports A14B; TI2V-5B assumed alike)",
    ),
    "cogvideox": (alg(0.25, 0.04), "released default (CogVideoX-5B-I2V, w=6)"),
    "hunyuan-video": (alg(0.625, 0.04), "released default (HunyuanVideo-I2V, embedded guidance: one pass)"),
    "ltx-video": (alg(1 / 4.0, 0.1), "paper (CVPR) setting for LTX-Video: window 0.1, 1/factor 4.0"),
    "ltx-2": not_in_paper("LTX-2"),
    "ltx-condition": (
        GENERIC,
        "generic paper default (window 0.1, 1/factor 2.5); the paper's LTX-Video setting (0.1, 4.0) is for "
        "LTXImageToVideoPipeline, not LTXConditionPipeline",
    ),
    "ltx2-condition": not_in_paper("LTX-2"),
    "svd": not_in_paper("SVD"),
    "sana-video": not_in_paper("Sana-Video"),
    "hunyuan-skyreels": not_in_paper("SkyReels-V1"),
    "chronoedit": not_in_paper("ChronoEdit"),
    "kandinsky5": not_in_paper("Kandinsky 5"),
    "kandinsky6": not_in_paper("Kandinsky 6"),
    "cosmos2": not_in_paper("Cosmos-Predict2"),
    "cosmos2.5": not_in_paper("Cosmos-Predict2.5"),
    "motif-video": not_in_paper("Motif-Video"),
    "hunyuan-video-1.5": not_in_paper("HunyuanVideo 1.5"),
    "skyreels-v2-df": not_in_paper("SkyReels-V2 diffusion forcing"),
    "hunyuan-framepack": not_in_paper("HunyuanVideo Framepack"),
    # VACE runs a Wan 2.1 transformer, but the image reaches it through VACE's control blocks (hints
    # added to the main blocks), not Wan 2.1 I2V's channel concat that the released setting was tuned on.
    "wan-vace": (
        GENERIC,
        "generic paper default (window 0.1, 1/factor 2.5); Wan VACE is not in the paper, and the Wan 2.1 I2V "
        "release's setting was tuned on the channel-concat I2V model, not on VACE's control blocks",
    ),
    # Wan-Animate's reference image sits in a latent frame of its own and the motion comes from pose
    # and face videos: none of the released or paper settings was tuned on it.
    "wan-animate": not_in_paper("Wan-Animate"),
}

ABLATIONS = [
    RecipeEntry(
        "alg-window-6pct",
        alg(0.4, 0.06),
        description="window ablation: first 6% of steps (+32% in the paper)",
    ),
    RecipeEntry(
        "alg-strength-1.6", alg(1 / 1.6, 0.2), description="filter-strength ablation: 1/factor 1.6 (+29%)"
    ),
    RecipeEntry(
        "alg-gaussian",
        Recipe(filter=Gaussian(sigma=1.0, kernel_size=5), schedule=StepSwitch(0.0, 0.2), mode="alg"),
        description="filter-type ablation: latent Gaussian blur instead of down/up (down/up is better)",
    ),
    RecipeEntry(
        "naive-blur",
        Recipe(filter=DownUp(0.4), schedule=Constant(1.0), mode="replace"),
        description="naive ablation: every branch sees the filtered image at every step (motion, but blurry)",
    ),
    RecipeEntry(
        "alg-all-terms",
        Recipe(filter=DownUp(0.4), schedule=StepSwitch(0.0, 0.2), mode="replace"),
        description="ablation: filter all three CFG terms, i.e. no original-image anchor (unstable)",
    ),
]


# One preset per motion lever (docs/levers.md), comparable in plugins/sweeps/motion-levers.toml.
LEVERS = [
    RecipeEntry(
        "alg-sigma",
        Recipe(filter=DownUp(0.4), schedule=SigmaWindow(low=0.975), mode="alg"),
        description="ALG keyed on the noise level: filter while the noise level is >= 0.975, at any step count",
    ),
    RecipeEntry(
        "noise-aug",
        Recipe(filter=Noise(std=0.2), schedule=StepSwitch(0.0, 0.2), mode="alg"),
        description="noise augmentation of the image latent in the early steps, with ALG's original-image anchor",
    ),
    RecipeEntry(
        "weak-condition",
        Recipe(filter=Scale(factor=0.7, toward="mean"), schedule=StepSwitch(0.0, 0.2), mode="alg"),
        description="condition strength 0.7 (towards the latent mean) in the early steps",
    ),
    RecipeEntry(
        "motion-amplitude",
        Recipe(filter=MotionAmplitude(1.15), schedule=Constant(1.0), mode="replace"),
        description="PainterI2V: padding-frame latents pushed 15% away from the first frame's, every step",
    ),
    RecipeEntry(
        "cfg-early",
        Recipe(filter=DownUp(0.4), schedule=Constant(0.0), guidance=StepSwitch(0.0, 0.3)),
        description="no filtering; classifier-free guidance only in the first 30% of the steps, the conditional prediction after",
    ),
    RecipeEntry(
        "alg-cfg-early",
        Recipe(filter=DownUp(0.4), schedule=StepSwitch(0.0, 0.2), guidance=StepSwitch(0.0, 0.3)),
        description="ALG in its window, and guidance only in the first 30% of the steps",
    ),
    RecipeEntry(
        "alg-noise",
        Recipe(filter=Chain([DownUp(0.4), Noise(std=0.1)]), schedule=StepSwitch(0.0, 0.2), mode="alg"),
        description="ALG's low-pass followed by light noise augmentation, in ALG's window",
    ),
]


@hookimpl
def register_recipes() -> list[RecipeEntry]:
    entries = [RecipeEntry("alg", GENERIC, description="generic paper default: window 0.1, 1/factor 2.5")]
    entries += [
        RecipeEntry("alg", recipe, backend=name, description=text)
        for name, (recipe, text) in DEFAULTS.items()
    ]
    return entries + ABLATIONS + LEVERS
