"""Ablation sweeps: recipe parameters x images x prompts x seeds -> a results table and plots.

A sweep file (TOML or YAML)::

    name = "window-length"
    model = "tiny:wan2.1"            # or a model id / local diffusers folder
    steps = 10
    seeds = [0, 1]
    images = ["tiny:0", "photo.png"]
    prompts = ["a dog runs on the beach"]
    recipe = "alg"                   # base recipe: a registered name or an inline table
    baseline = "window 0-6%"         # the cell the others are compared with (default: the first)

    [grid]                           # dotted keys into the recipe; "recipe" picks whole recipes
    "schedule.end" = [0.02, 0.06, 0.1, { value = 0.2, label = "released default" }]

Every cell (grid point, image, prompt, seed) appends one JSON line to ``cells-<rank>.jsonl`` in
the output folder as soon as it is done, so an interrupted sweep resumes where it stopped. Each
row records the full configuration it was computed with (model, steps, resolved recipe, call
arguments, image bytes hash, prompt, seed, library version): a rerun with anything different
refuses with :class:`~guidance_kit.errors.ResumeMismatchError` (or, with ``recompute=True``,
recomputes those cells) instead of reusing stale results. The whole sweep, images included, is
checked before any model is loaded.
Launched with ``accelerate launch``, cells are sharded round-robin across processes and the
main process writes the report (:mod:`guidance_kit.report`): ``results.csv``, ``results.jsonl``,
``results.md``, ``results.html`` and ``plots/``; ``torchrun`` works too (CPU processes
synchronise over gloo).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from guidance_kit import cells, metrics, recipes, report
from guidance_kit.errors import (
    InvalidParameterError,
    MissingFileError,
    NonFiniteVideoError,
    ResumeMismatchError,
    shown,
)
from guidance_kit.files import check_image_source, image_digest, prepare_out
from guidance_kit.generate import DEFAULT_MODEL, generate, load, load_image
from guidance_kit.recipe import Recipe, read_mapping
from guidance_kit.validators import check_call_args, check_number, check_text, listing, mapping, number, text

NO_GUIDANCE = "none"  # a grid value of "recipe" meaning: the plain pipeline


MAX_STEPS = 10_000
MAX_SEED = 2**63 - 1


def _grid(value: Any) -> dict[str, list[Any]]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, list) and v for k, v in value.items()
    ):
        raise InvalidParameterError(f"sweep grid must map keys to non-empty lists, got {shown(value)}")
    return dict(value)


def _base_recipe(value: Any) -> Any:
    if not isinstance(value, str | Mapping):
        raise InvalidParameterError(f"sweep recipe must be a recipe name or a table, got {shown(value)}")
    return value


def _seed(label: str, value: Any) -> int:
    return check_number(label, value, lo=0, hi=MAX_SEED, integer=True)


def _prompt(label: str, value: Any) -> str:
    return check_text(label, value, empty=True)


def _optional_text(value: Any) -> str | None:
    return None if value is None else check_text("sweep baseline", value)


@attrs.frozen
class Sweep:
    """A sweep, validated whole on construction (``attrs.evolve`` included): bad fields fail
    before any model is loaded, and a bare string is never iterated as a list."""

    name: str = text("sweep name")
    grid: dict[str, list[Any]] = attrs.field(converter=_grid)
    recipe: Any = attrs.field(default="alg", converter=_base_recipe)
    model: str = text("sweep model", default=DEFAULT_MODEL)
    steps: int = number("sweep steps", default=10, lo=1, hi=MAX_STEPS, integer=True)
    seeds: list[int] = listing("sweep seeds", _seed, default=attrs.Factory(lambda: [0]))
    images: list[str] = listing("sweep images", check_image_source, default=attrs.Factory(lambda: ["tiny:0"]))
    prompts: list[str] = listing("sweep prompts", _prompt, default=attrs.Factory(lambda: [""]))
    description: str = text("sweep description", default="", empty=True)
    paper: dict[str, Any] = mapping("sweep paper", default=attrs.Factory(dict))
    # extra pipeline call arguments (guidance_scale, ...)
    call: dict[str, Any] = attrs.field(
        default=attrs.Factory(dict), converter=lambda value: check_call_args("sweep call", value)
    )
    baseline: str | None = attrs.field(
        default=None, converter=_optional_text
    )  # the label of the cell the report compares the others with

    def __attrs_post_init__(self) -> None:
        for params, _ in report.grid_points(self.grid):  # every recipe, before running anything
            self.recipe_for(params)
        report.baseline_index(self, report.cell_labels(self))

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        return cls.from_dict(read_mapping(path, "sweep"), default_name=Path(path).stem)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_name: str = "sweep") -> Sweep:
        if not isinstance(data, Mapping):
            raise InvalidParameterError(f"a sweep must be a table, got {shown(data)}")
        valid = [a.name for a in attrs.fields(cls)]
        unknown = sorted(k if isinstance(k, str) else shown(k) for k in set(data) - set(valid))
        if unknown:
            raise InvalidParameterError(f"sweep has unknown key(s) {unknown}; valid keys: {valid}")
        return cls(**{"name": default_name, "grid": {}, **data})

    def base_recipe(self) -> dict[str, Any]:
        base = self.recipe
        if isinstance(base, str):
            return recipes.get(base).to_dict()
        return Recipe.from_dict(base).to_dict()

    def recipe_for(self, params: Mapping[str, Any]) -> Recipe | None:
        data = self.base_recipe()
        if "recipe" in params:
            if params["recipe"] == NO_GUIDANCE:
                return None
            data = recipes.get(params["recipe"]).to_dict()
        for key, value in params.items():
            if key == "recipe":
                continue
            target = data
            *path, last = key.split(".")
            for part in path:
                if not isinstance(target.get(part), dict):
                    raise InvalidParameterError(
                        f"sweep grid key {shown(key)}: recipe has no table {shown(part)}"
                    )
                target = target[part]
            if isinstance(value, Mapping):
                target[last] = dict(value)
            else:
                target[last] = value
        return Recipe.from_dict(data)

    def cells(self) -> Iterator[dict[str, Any]]:
        for params, _ in report.grid_points(self.grid):  # labels are for people, not part of a cell
            for image, prompt, seed in itertools.product(self.images, self.prompts, self.seeds):
                cell = {"params": params, "image": image, "prompt": prompt, "seed": seed}
                cell["id"] = hashlib.sha1(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[
                    :12
                ]
                yield cell

    def configs(self) -> dict[str, dict[str, Any]]:
        """Per cell id, everything its result depends on: the key resume matches rows on.
        Reads and decodes every image file, so a missing or broken one fails here."""
        from guidance_kit import __version__

        digests = {image: image_digest(image) for image in self.images}
        resolved: dict[str, dict[str, Any] | None] = {}
        configs = {}
        for cell in self.cells():
            point = json.dumps(cell["params"], sort_keys=True, default=str)
            if point not in resolved:
                recipe = self.recipe_for(cell["params"])
                resolved[point] = None if recipe is None else recipe.to_dict()
            configs[cell["id"]] = {
                "version": __version__,
                "model": self.model,
                "steps": self.steps,
                "recipe": resolved[point],
                "call": self.call,
                "image": digests[cell["image"]],
                "prompt": cell["prompt"],
                "seed": cell["seed"],
            }
        return configs


def _process() -> tuple[int, int, Callable[[], Any] | None]:
    """(rank, world size, barrier): one process unless launched by ``accelerate launch`` or
    ``torchrun`` (which set RANK and WORLD_SIZE)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    try:
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes == world:  # accelerate set up the process group (e.g. multi-GPU)
            return state.process_index, world, state.wait_for_everyone
    except ImportError:
        pass
    import torch.distributed as dist

    if not dist.is_initialized():  # CPU processes: accelerate leaves them alone; gloo works anywhere
        dist.init_process_group("gloo")
    return dist.get_rank(), world, dist.barrier


def done_cells(out: Path) -> dict[str, dict[str, Any]]:
    """Finished rows in ``out`` by cell id (each shard read once; a torn line is skipped)."""
    return {row["id"]: row for row in cells.read_rows(Path(out))}


def _stale(
    rows: list[dict[str, Any]], configs: dict[str, dict[str, Any]], keys: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Cells with a row computed under another configuration and none under the current one."""
    current = {(row["id"], row.get("config_key")) for row in rows}
    return {
        row["id"]: row for row in rows if row["id"] in configs and (row["id"], keys[row["id"]]) not in current
    }


def _mismatch(out: Path, stale: dict[str, dict[str, Any]], configs: dict[str, dict[str, Any]]) -> str:
    cell_id, row = next(iter(stale.items()))
    old, new = row.get("config") or {}, configs[cell_id]
    changed = [
        f"{key} {shown(old.get(key), 60)} -> {shown(new[key], 60)}" for key in new if old.get(key) != new[key]
    ]
    what = "; ".join(changed[:4]) if old else "rows written before results were keyed on their configuration"
    return (
        f"{out} holds results for {len(stale)} of these cells computed with a different configuration "
        f"({what}). Rerun with the original settings, pass a new --out, or pass --recompute "
        "(recompute=True) to recompute those cells"
    )


def _scores(video: Any, image: Any) -> dict[str, Any]:
    """The metrics row; a NaN/inf video is flagged and scores nothing instead of counting as static."""
    try:
        return {**metrics.summarize(video, image), "finite": True}
    except NonFiniteVideoError:
        return {"finite": False}


def run_sweep(
    sweep: Sweep, out: str | Path, progress: bool = True, plots: bool = True, recompute: bool = False
) -> list[dict[str, Any]]:
    """Run every cell not already in ``out`` and write the report.

    Before any model is loaded: the images are read and hashed, ``out`` is checked writable and
    locked (:class:`~guidance_kit.errors.FolderLockedError` if another ablation writes there),
    and rows computed under another configuration raise
    :class:`~guidance_kit.errors.ResumeMismatchError` unless ``recompute``."""
    from tqdm.auto import tqdm

    out = prepare_out(out)
    rank, world, barrier = _process()
    configs = sweep.configs()
    keys = {cell_id: cells.config_key(config) for cell_id, config in configs.items()}
    mine = [c for i, c in enumerate(sweep.cells()) if i % world == rank]
    with cells.locked(out, rank):
        rows = cells.read_rows(out)
        stale = _stale(rows, configs, keys)  # over every rank's cells, so all ranks refuse alike
        if stale and not recompute:
            raise ResumeMismatchError(_mismatch(out, stale, configs))
        done = cells.by_key(rows)
        todo = [c for c in mine if (c["id"], keys[c["id"]]) not in done]
        loaded = load(sweep.model) if todo else None
        with cells.appender(cells.shard_path(out, rank)) as shard:
            for cell in tqdm(
                todo,
                desc=f"{sweep.name} [{rank}]",
                disable=not progress,
                initial=len(mine) - len(todo),
                total=len(mine),
            ):
                image = load_image(cell["image"], size=_image_size(loaded))
                recipe = sweep.recipe_for(cell["params"])
                start = time.perf_counter()
                video, run = generate(
                    loaded,
                    image,
                    recipe,
                    prompt=cell["prompt"] or None,
                    steps=sweep.steps,
                    seed=cell["seed"],
                    **sweep.call,
                )
                row = {**cell, "config": configs[cell["id"]], "config_key": keys[cell["id"]]}
                row.update(seconds=time.perf_counter() - start, **_scores(video, image))
                row["passes"] = run.last.passes if run else None
                if not row["finite"]:
                    tqdm.write(f"{sweep.name}: cell {cell['id']} {cell['params']} gave a NaN/inf video")
                cells.append(shard, row)
    if barrier is not None:
        barrier()
    if rank != 0:
        return []
    done = cells.by_key(cells.read_rows(out))
    rows = [done[(c["id"], keys[c["id"]])] for c in sweep.cells() if (c["id"], keys[c["id"]]) in done]
    report.write_report(sweep, rows, out, plots=plots)
    return rows


def _image_size(loaded: Any) -> int:
    return loaded.kwargs.get("height", 512) if loaded is not None and loaded.tiny else 512


def builtin_sweeps() -> dict[str, Path]:
    """The sweep files shipped for the paper's ablations (``plugins/sweeps/*.toml``)."""
    folder = Path(str(resources.files("guidance_kit.plugins") / "sweeps"))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_sweep(name_or_path: str | Path) -> Path:
    """A sweep file path, or the path of a built-in sweep by name."""
    if not isinstance(name_or_path, str | Path):
        raise InvalidParameterError(f"a sweep is a file path or a built-in name, got {shown(name_or_path)}")
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = builtin_sweeps()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    what = "is a directory, not a sweep file" if path.is_dir() else "sweep file not found"
    raise MissingFileError(f"{what}: {name_or_path}; built-in sweeps: {', '.join(shipped)}")
