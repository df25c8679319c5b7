"""The ``guidance-kit`` command: generate, ablate, recipes, plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from guidance_kit import registry
from guidance_kit.errors import GuidanceKitError
from guidance_kit.recipe import Recipe


def _recipe(value: str) -> Recipe | str | None:
    """A recipe file path, a registered recipe name, or "none" (no guidance)."""
    if value == "none":
        return None
    if Path(value).suffix.lower() in (".toml", ".yaml", ".yml", ".json"):
        return Recipe.load(value)
    registry.lookup("recipe", value)  # a clear error for an unknown name
    return value


def cmd_generate(args: argparse.Namespace) -> int:
    from diffusers.utils import export_to_video

    from guidance_kit.generate import DEFAULT_MODEL, generate, load, load_image

    model = args.model or DEFAULT_MODEL
    recipe = _recipe(args.recipe)
    loaded = load(model)
    if loaded.tiny:
        print(
            f"No model given: running the embedded tiny random-weight pipeline {model!r} on the CPU "
            "(no weights are downloaded; the video is noise-like, the code path is the real one)."
        )
    image = load_image(args.image, size=loaded.kwargs.get("height", 512) if loaded.tiny else 512)
    call: dict[str, Any] = {}
    if args.guidance_scale is not None:
        call["guidance_scale"] = args.guidance_scale
    if args.num_frames is not None:
        call["num_frames"] = args.num_frames
    video, run = generate(
        loaded,
        image,
        recipe,
        prompt=args.prompt,
        steps=args.steps,
        seed=args.seed,
        execution=args.execution,
        **call,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video_path = export_to_video(list(video), str(out / "video.mp4"), fps=args.fps)
    print(f"video: {video_path} ({video.shape[0]} frames, {video.shape[2]}x{video.shape[1]})")
    if run is not None:
        (out / "trace.json").write_text(run.to_json(indent=2))
        from guidance_kit.plotting import plot_schedule

        plot_schedule(run.recipe, args.steps, out / "schedule.png", trace=run.trace)
        last = run.last
        print(
            f"recipe: {json.dumps(run.recipe.to_dict())}\nbackend: {run.backend.name}; filtered steps "
            f"{last.filtered_steps} of {args.steps}; denoiser passes {last.passes}; VAE encodes {last.vae_encodes}"
        )
        print(f"trace: {out / 'trace.json'}\nschedule plot: {out / 'schedule.png'}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    import attrs

    from guidance_kit.ablation import Sweep, resolve_sweep, run_sweep

    sweep = Sweep.load(resolve_sweep(args.sweep))
    changes: dict[str, Any] = {}
    for name in ("model", "steps", "seeds", "images", "prompts"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if changes:
        sweep = Sweep.from_dict({**attrs.asdict(sweep), **changes})
    out = Path(args.out or f"outputs/ablate/{sweep.name}")
    rows = run_sweep(sweep, out, progress=not args.no_progress, plots=not args.no_plots)
    if rows:
        print((out / "results.md").read_text())
        print(
            f"results: {out / 'results.md'}, {out / 'results.html'}, {out / 'results.csv'}"
            + ("" if args.no_plots else f", {out / 'plots'}")
        )
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from guidance_kit import recipes
    from guidance_kit.ablation import builtin_sweeps

    listed = registry.list_registered()
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    for kind, names in listed.items():
        print(f"{kind}s:")
        for name, plugin in names.items():
            detail = ""
            if kind == "recipe":
                entry = recipes.entry(*name.split("@")) if "@" in name else recipes.entry(name)
                detail = f"  {json.dumps(entry.recipe.to_dict())}  {entry.description}"
            elif kind == "backend":
                detail = f"  {registry.lookup('backend', name).describe()}"
            print(f"  {name:<22} [{plugin}]{detail}")
    print("sweeps:\n" + "\n".join(f"  {name:<22} {path}" for name, path in builtin_sweeps().items()))
    for error in registry.plugin_errors():
        print(f"plugin error: {error}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from guidance_kit.generate import load_image
    from guidance_kit.plotting import plot_filter, plot_schedule
    from guidance_kit.recipes import get

    recipe = _recipe(args.recipe)
    recipe = get(recipe) if isinstance(recipe, str) else recipe
    if recipe is None:
        raise GuidanceKitError("plot needs a recipe, not 'none'")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = np.asarray(load_image(args.image, size=args.size), dtype=np.float32) / 255.0
    paths = [plot_schedule(recipe, args.steps, out / "schedule.png"), *plot_filter(recipe, image, out)]
    print("\n".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guidance-kit", description="Composable guidance for image-to-video diffusion."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate a video with a recipe (default: tiny model on the CPU)")
    gen.add_argument(
        "--model", help="model id or local diffusers folder, or tiny:<family> (default tiny:wan2.1)"
    )
    gen.add_argument(
        "--image", help="conditioning image path (default: a generated test image for tiny models)"
    )
    gen.add_argument("--prompt", help="text prompt (needed for real models)")
    gen.add_argument("--recipe", default="alg", help="recipe name, recipe file (.toml/.yaml) or 'none'")
    gen.add_argument("--steps", type=int, default=10)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--guidance-scale", type=float)
    gen.add_argument("--num-frames", type=int)
    gen.add_argument("--fps", type=int, default=8)
    gen.add_argument("--execution", choices=["batched", "sequential"], default="batched")
    gen.add_argument("--out", default="outputs/generate")
    gen.set_defaults(func=cmd_generate)

    abl = sub.add_parser("ablate", help="run an ablation sweep (a file or a built-in sweep name)")
    abl.add_argument("sweep", help="sweep file (.toml/.yaml) or built-in name, e.g. window-length")
    abl.add_argument("--out", help="output folder (default outputs/ablate/<name>); rerun to resume")
    abl.add_argument("--model")
    abl.add_argument("--steps", type=int)
    abl.add_argument("--seeds", type=int, nargs="+")
    abl.add_argument("--images", nargs="+")
    abl.add_argument("--prompts", nargs="+")
    abl.add_argument("--no-plots", action="store_true")
    abl.add_argument("--no-progress", action="store_true")
    abl.set_defaults(func=cmd_ablate)

    rec = sub.add_parser("recipes", help="list everything registered, with the plugin that registered it")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_recipes)

    plot = sub.add_parser("plot", help="plot a recipe: strength per step, filtered image, spectrum")
    plot.add_argument("--recipe", default="alg")
    plot.add_argument("--steps", type=int, default=50)
    plot.add_argument("--image", help="image path (default: a generated test image)")
    plot.add_argument("--size", type=int, default=128, help="size of the generated test image")
    plot.add_argument("--out", default="outputs/plot")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (GuidanceKitError, FileNotFoundError) as exc:
        print(f"guidance-kit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
