"""Quickstart: ALG on a diffusers image-to-video pipeline.

    python examples/quickstart.py                 # embedded tiny Wan 2.1 pipeline, CPU, seconds
    python examples/quickstart.py --model Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --image cat.png \
        --prompt "a cat jumps onto the sofa"     # real weights (GPU)
"""

import argparse

import guidance_kit as gk
from guidance_kit.generate import generate, load, load_image


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny:wan2.1")
    parser.add_argument("--image")
    parser.add_argument("--prompt")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)

    loaded = load(args.model)
    image = load_image(args.image, size=loaded.kwargs.get("height", 480))

    # The backend's released ALG default ("alg" resolves per backend), written out explicitly:
    recipe = gk.Recipe(
        filter=gk.filters.DownUp(0.4),  # bilinear down/up by 0.4 (the paper's 1/factor = 2.5)
        schedule=gk.schedules.StepSwitch(0.0, 0.2),  # filter the first 20% of the steps
        space="latent",
        mode="alg",
    )
    video, run = generate(loaded, image, recipe, prompt=args.prompt, steps=args.steps)
    print(f"video {video.shape}; backend {run.backend.name}")
    for record in run.trace:
        print(
            f"step {record.step:2d}  p={record.progress:.2f}  strength={record.strength:.2f}  passes={record.passes}"
        )
    return run


if __name__ == "__main__":
    main()
