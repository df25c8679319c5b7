"""Compose your own guidance: a Butterworth filter on a cosine schedule, a filter of your own
registered as a plugin at run time, and the trace of what happened at each step.

    python examples/custom_schedule.py
"""

from typing import ClassVar

import attrs
import torch

import guidance_kit as gk
from guidance_kit.tiny import tiny_image, tiny_pipeline


@attrs.frozen
class Median(gk.Filter):
    """A 3x3 median filter blended with the input by strength (an example custom filter)."""

    name: ClassVar[str] = "median3"

    def apply(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        padded = torch.nn.functional.pad(x.reshape(-1, 1, *x.shape[-2:]), (1, 1, 1, 1), mode="replicate")
        patches = padded.unfold(2, 3, 1).unfold(3, 3, 1).reshape(*padded.shape[:2], *x.shape[-2:], 9)
        return torch.lerp(x, patches.median(dim=-1).values.reshape(x.shape), strength)


class MedianPlugin:
    @gk.hookimpl
    def register_filters(self):
        return [Median]


def main():
    pipe, kwargs = tiny_pipeline("cogvideox")
    image = tiny_image(32)

    def call():
        return pipe(
            image=image,
            num_inference_steps=8,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            **kwargs,
        ).frames

    cosine = gk.Recipe(
        filter=gk.get_filter("butterworth", cutoff=0.1, order=2),
        schedule=gk.get_schedule("cosine", start_weight=1.0, end_weight=0.0, end=0.5),
    )
    with gk.guide(pipe, cosine) as run:
        call()
    print("butterworth + cosine:", [round(r.strength, 2) for r in run.trace], "passes", run.last.passes)

    plugin = MedianPlugin()
    gk.register_plugin(plugin, name="median-example")
    try:
        recipe = gk.Recipe.from_dict(
            {"filter": {"name": "median3"}, "schedule": {"name": "step_switch", "end": 0.25}, "mode": "alg"}
        )
        print(recipe.to_toml())
        with gk.guide(pipe, recipe) as run:
            call()
        print("median3 filtered steps:", run.last.filtered_steps)
    finally:
        gk.unregister_plugin(plugin)
    return run


if __name__ == "__main__":
    main()
