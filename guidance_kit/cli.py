"""The ``guidance-kit`` command: generate, ablate, recipes, plot."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from guidance_kit import registry
from guidance_kit.errors import GuidanceKitError, InvalidParameterError, brief, shown
from guidance_kit.recipe import Recipe
from guidance_kit.validators import check_number

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``guidance-kit <command>: error: ...`` and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(integer: bool, **bounds: Any) -> Callable[[str], Any]:
    """An argparse type: the text parsed and checked by the shared validator."""

    def parse(text: str) -> Any:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an int' if integer else 'a number'}, got {shown(text)}"
            ) from None
        try:
            return check_number("value", value, integer=integer, **bounds)
        except GuidanceKitError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    return parse


POSITIVE_INT = _number(True, lo=1)
SEED = _number(True, lo=0, hi=2**63 - 1)
FPS = _number(True, lo=1, hi=1000)
GUIDANCE_SCALE = _number(False, lo=0)


def _recipe(value: str) -> Recipe | str | None:
    """A recipe file path, a registered recipe name, or "none" (no guidance)."""
    if value == "none":
        return None
    if Path(value).suffix.lower() in (".toml", ".yaml", ".yml", ".json"):
        return Recipe.load(value)
    registry.lookup("recipe", value)  # a clear error for an unknown name
    return value


def _replay(args: argparse.Namespace) -> Recipe | None:
    """Fill ``args`` from a video's ``video.json`` (or the settings in an mp4's metadata) and
    return its resolved recipe (None: plain)."""
    from guidance_kit.files import read_video_tag
    from guidance_kit.recipe import parse_mapping, read_mapping

    if Path(args.replay).suffix.lower() == ".mp4":  # JSON is YAML
        stored = parse_mapping(read_video_tag(args.replay), "yaml", f"the metadata of {args.replay}")
    else:
        stored = read_mapping(args.replay, "video settings")
    settings = stored.get("settings")
    if not isinstance(settings, dict):
        raise InvalidParameterError(
            f"{args.replay} holds no 'settings' table; is it a video.json from generate?"
        )
    for name in ("model", "image", "prompt", "steps", "seed", "execution", "fps"):
        setattr(args, name, settings.get(name, getattr(args, name)))
    call = settings.get("call") or {}
    args.guidance_scale, args.num_frames = call.get("guidance_scale"), call.get("num_frames")
    args.expected_image = settings.get("image_sha256")
    return None if settings.get("recipe") is None else Recipe.from_dict(settings["recipe"])


def cmd_generate(args: argparse.Namespace) -> int:
    from guidance_kit.files import (
        check_image_source,
        generated_image,
        open_image,
        prepare_out,
        tag_video,
        write_video,
    )
    from guidance_kit.generate import DEFAULT_MODEL, TESTBED, generate, load, load_image

    replayed = _replay(args) if args.replay else None
    model = args.model or DEFAULT_MODEL
    recipe = replayed if args.replay else _recipe(args.recipe)
    out = prepare_out(args.out)  # before the model loads: a bad --out fails in a second
    image_source = args.image  # as given, for video.json
    if args.image is not None:
        source = check_image_source("--image", args.image)
        args.image = source if generated_image(source) else open_image(source)
    loaded = load(model)
    if loaded.tiny and model != TESTBED:
        print(
            f"No model given: running the embedded tiny random-weight pipeline {model!r} on the CPU "
            "(no weights are downloaded; the video is noise-like, the code path is the real one)."
        )
    image = load_image(args.image, size=loaded.kwargs.get("height", 512) if loaded.tiny else 512)
    expected = getattr(args, "expected_image", None)
    if expected is not None and hashlib.sha256(image.tobytes()).hexdigest() != expected:
        raise InvalidParameterError(
            f"the conditioning image {args.image!r} is not the one {args.replay} was made from (its pixels changed)"
        )
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
    video_path = write_video(video, out / "video.mp4", fps=args.fps)
    print(f"video: {video_path} ({video.shape[0]} frames, {video.shape[2]}x{video.shape[1]})")
    settings = {
        "model": model,
        "image": image_source,
        "image_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
        "prompt": args.prompt,
        "steps": args.steps,
        "seed": args.seed,
        "execution": args.execution,
        "call": call,
        "fps": args.fps,
        "recipe": None if run is None else run.recipe.to_dict(),
    }
    from guidance_kit import __version__

    sidecar = {
        "guidance_kit": __version__,
        "settings": settings,
        "trace": None if run is None else run.to_dict(),
    }
    (out / "video.json").write_text(json.dumps(sidecar, indent=2))
    tag_video(
        video_path, json.dumps({"guidance_kit": __version__, "settings": settings}, separators=(",", ":"))
    )
    print(f"settings: {out / 'video.json'} and the video's metadata (generate --from either makes it again)")
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
    if args.model == "testbed" and args.images is None:  # the sweep's own images are tiny:<k>
        from guidance_kit import testbed

        changes["images"] = testbed.sweep_images()
    if changes:
        sweep = Sweep.from_dict({**attrs.asdict(sweep), **changes})
    out = Path(args.out or f"outputs/ablate/{sweep.name}")
    rows = run_sweep(
        sweep, out, progress=not args.no_progress, plots=not args.no_plots, recompute=args.recompute
    )
    if rows:
        print((out / "results.md").read_text())
        print(
            f"results: {out / 'results.md'}, {out / 'results.html'}, {out / 'results.csv'}"
            + ("" if args.no_plots else f", {out / 'plots'}")
        )
    return 0


def cmd_testbed_train(args: argparse.Namespace) -> int:
    from guidance_kit import testbed

    settings = {k: getattr(args, k) for k in ("steps", "batch", "seed") if getattr(args, k) is not None}
    path = testbed.train(args.out, threads=args.threads, **settings)
    print(f"weights: {path} (ship them as {testbed.weights_path()})")
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
                backend = registry.lookup("backend", name)
                detail = f"  {backend.describe()}" + (f"  ({backend.description})" if backend.description else "")
            print(f"  {name:<22} [{plugin}]{detail}")
    print("sweeps:\n" + "\n".join(f"  {name:<22} {path}" for name, path in builtin_sweeps().items()))
    for error in registry.plugin_errors():
        print(f"plugin error: {error}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from guidance_kit.files import prepare_out
    from guidance_kit.generate import load_image
    from guidance_kit.plotting import plot_filter, plot_schedule
    from guidance_kit.recipes import get

    recipe = _recipe(args.recipe)
    recipe = get(recipe) if isinstance(recipe, str) else recipe
    if recipe is None:
        raise GuidanceKitError("plot needs a recipe, not 'none'")
    out = prepare_out(args.out)
    image = np.asarray(load_image(args.image, size=args.size), dtype=np.float32) / 255.0
    paths = [plot_schedule(recipe, args.steps, out / "schedule.png"), *plot_filter(recipe, image, out)]
    print("\n".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="guidance-kit", description="Composable guidance for image-to-video diffusion.")
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
    gen.add_argument("--steps", type=POSITIVE_INT, default=10)
    gen.add_argument("--seed", type=SEED, default=0)
    gen.add_argument("--guidance-scale", type=GUIDANCE_SCALE)
    gen.add_argument("--num-frames", type=POSITIVE_INT)
    gen.add_argument("--fps", type=FPS, default=8)
    gen.add_argument("--execution", choices=["batched", "sequential"], default="batched")
    gen.add_argument("--out", default="outputs/generate")
    gen.add_argument(
        "--from",
        dest="replay",
        metavar="VIDEO_JSON",
        help="make a video again from the video.json written next to it (model, image, prompt, seed, recipe, ...)",
    )
    gen.set_defaults(func=cmd_generate)

    abl = sub.add_parser("ablate", help="run an ablation sweep (a file or a built-in sweep name)")
    abl.add_argument("sweep", help="sweep file (.toml/.yaml) or built-in name, e.g. window-length")
    abl.add_argument("--out", help="output folder (default outputs/ablate/<name>); rerun to resume")
    abl.add_argument("--model")
    abl.add_argument("--steps", type=POSITIVE_INT)
    abl.add_argument("--seeds", type=SEED, nargs="+")
    abl.add_argument("--images", nargs="+", help="default: the sweep's (with --model testbed: testbed:0..15)")
    abl.add_argument("--prompts", nargs="+")
    abl.add_argument("--no-plots", action="store_true")
    abl.add_argument("--no-progress", action="store_true")
    abl.add_argument(
        "--recompute",
        action="store_true",
        help="recompute cells whose stored results were computed with another configuration",
    )
    abl.set_defaults(func=cmd_ablate)

    bed = sub.add_parser("testbed", help="the trained toy model on which ALG's effect is measurable")
    bed_train = bed.add_subparsers(dest="action", required=True).add_parser(
        "train", help="train the testbed transformer from scratch (the shipped weights' recipe)"
    )
    bed_train.add_argument("--out", default="outputs/testbed/testbed.safetensors")
    for name in ("steps", "batch", "seed"):
        bed_train.add_argument(f"--{name}", type=int, help="default: the shipped weights' setting")
    bed_train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    bed_train.set_defaults(func=cmd_testbed_train)

    rec = sub.add_parser("recipes", help="list everything registered, with the plugin that registered it")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_recipes)

    plot = sub.add_parser("plot", help="plot a recipe: strength per step, filtered image, spectrum")
    plot.add_argument("--recipe", default="alg")
    plot.add_argument("--steps", type=POSITIVE_INT, default=50)
    plot.add_argument("--image", help="image path (default: a generated test image)")
    plot.add_argument(
        "--size", type=_number(True, lo=8, hi=4096), default=128, help="size of the generated test image"
    )
    plot.add_argument("--out", default="outputs/plot")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 with one line on stderr for bad input, 130 on Ctrl-C."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument (already reported on one line)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return args.func(args)
    except GuidanceKitError as exc:
        print(f"guidance-kit: error: {brief(exc, 2000)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a path the user gave that the OS refuses (permissions, disk full)
        print(f"guidance-kit: error: {type(exc).__name__}: {brief(exc, 2000)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("guidance-kit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The console entry point: exit with :func:`main`'s status. An interrupted run was seen to
    end by SIGINT at interpreter shutdown although ``main()`` had handled the Ctrl-C (status -2
    instead of 130, under load), so after Ctrl-C the process exits here, streams flushed."""
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
