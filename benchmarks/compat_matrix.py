"""ALG under diffusers caches on the tiny float64 pipelines: each cache's own error against the
plain pipeline next to ALG+cache's error against ALG, per execution, in one run.

    python benchmarks/compat_matrix.py                    # Wan 2.1 and CogVideoX, every cache
    python benchmarks/compat_matrix.py --families wan2.1 --caches first-block mag

"refused" rows name the error guide() raises (caches that keep one state for every call).
"""

from __future__ import annotations

import argparse
import warnings

import torch

import guidance_kit as gk
from guidance_kit.tiny import cache_configs, tiny_image, tiny_pipeline

STEPS = 6
RECIPE = gk.Recipe(filter=gk.filters.DownUp(0.5), schedule=gk.schedules.StepSwitch(0.0, 0.4))
CACHES = list(cache_configs(tiny_pipeline("wan2.1")[0], STEPS))


def _run(pipe, kwargs, image):  # noqa: ANN001
    return pipe(
        image=image,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        **kwargs,
    ).frames


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=["wan2.1", "cogvideox"])
    parser.add_argument("--caches", nargs="+", default=CACHES, choices=CACHES)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    image = tiny_image(32, seed=0)
    print(
        f"{'family':<10} {'cache':<18} {'|cache-plain|':>13} {'batched |ALG+cache-ALG|':>24} {'sequential':>11}"
    )
    for family in args.families:
        pipe, kwargs = tiny_pipeline(family, torch.float64)
        plain = _run(pipe, kwargs, image)
        with gk.guide(pipe, RECIPE):
            alg = _run(pipe, kwargs, image)
        for name in args.caches:
            try:
                pipe.transformer.enable_cache(cache_configs(pipe, STEPS)[name][0])
            except Exception as exc:  # diffusers' own limits on this tiny model
                print(f"{family:<10} {name:<18} cannot be enabled here: {type(exc).__name__}: {exc}")
                continue
            try:
                cached = _run(pipe, kwargs, image)
                cells, refusal = [], ""
                for execution in ("batched", "sequential"):
                    try:
                        with gk.guide(pipe, RECIPE, execution=execution):
                            cells.append(f"{_rel(_run(pipe, kwargs, image), alg):.2e}")
                    except gk.GuidanceKitError as exc:
                        cells.append("refused")
                        refusal = str(exc).split(" on ")[0]
                print(f"{family:<10} {name:<18} {_rel(cached, plain):>13.2e} {cells[0]:>24} {cells[1]:>11}")
                if "refused" in cells:
                    print(f"{'':<29} refused: {refusal} keeps one state for every denoiser call")
            except Exception as exc:
                print(f"{family:<10} {name:<18} the cache alone fails here: {type(exc).__name__}: {exc}")
            finally:
                pipe.transformer.disable_cache()


if __name__ == "__main__":
    main()
