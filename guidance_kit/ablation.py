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
the output folder as soon as it is done, so an interrupted sweep resumes where it stopped.
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

from guidance_kit import metrics, recipes, report
from guidance_kit.errors import InvalidParameterError
from guidance_kit.generate import DEFAULT_MODEL, generate, load, load_image
from guidance_kit.recipe import Recipe, read_mapping

NO_GUIDANCE = "none"  # a grid value of "recipe" meaning: the plain pipeline


@attrs.frozen
class Sweep:
    name: str
    grid: dict[str, list[Any]]
    recipe: Any = "alg"
    model: str = DEFAULT_MODEL
    steps: int = 10
    seeds: list[int] = attrs.Factory(lambda: [0])
    images: list[str] = attrs.Factory(lambda: ["tiny:0"])
    prompts: list[str] = attrs.Factory(lambda: [""])
    description: str = ""
    paper: dict[str, Any] = attrs.Factory(dict)
    call: dict[str, Any] = attrs.Factory(dict)  # extra pipeline call arguments (guidance_scale, ...)
    baseline: str | None = None  # the label of the cell the report compares the others with

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        return cls.from_dict(read_mapping(path, "sweep"), default_name=Path(path).stem)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_name: str = "sweep") -> Sweep:
        valid = [a.name for a in attrs.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise InvalidParameterError(f"sweep has unknown key(s) {unknown}; valid keys: {valid}")
        data = {"name": default_name, **data}
        grid = data.get("grid") or {}
        if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
            raise InvalidParameterError(f"sweep grid must map keys to non-empty lists, got {grid!r}")
        sweep = cls(**{**data, "grid": dict(grid)})
        for cell in sweep.cells():  # validate every recipe before running anything
            sweep.recipe_for(cell["params"])
        report.baseline_index(sweep, report.cell_labels(sweep))
        return sweep

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
                    raise InvalidParameterError(f"sweep grid key {key!r}: recipe has no table {part!r}")
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
    rows = {}
    for shard in sorted(out.glob("cells-*.jsonl")):
        for line in shard.read_text().splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interruption
                    continue
                rows[row["id"]] = row
    return rows


def run_sweep(
    sweep: Sweep, out: str | Path, progress: bool = True, plots: bool = True
) -> list[dict[str, Any]]:
    """Run every cell not already in ``out`` and write the tables (and plots)."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world, barrier = _process()
    done = done_cells(out)
    cells = [c for i, c in enumerate(sweep.cells()) if i % world == rank]
    todo = [c for c in cells if c["id"] not in done]
    loaded = load(sweep.model) if todo else None
    with (out / f"cells-{rank}.jsonl").open("a") as shard:
        for cell in tqdm(
            todo,
            desc=f"{sweep.name} [{rank}]",
            disable=not progress,
            initial=len(cells) - len(todo),
            total=len(cells),
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
            row = {**cell, "seconds": time.perf_counter() - start, **metrics.summarize(video, image)}
            row["passes"] = run.last.passes if run else None
            shard.write(json.dumps(row, default=str) + "\n")
            shard.flush()
    if barrier is not None:
        barrier()
    if rank != 0:
        return []
    rows = [done_cells(out)[c["id"]] for c in sweep.cells() if c["id"] in done_cells(out)]
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
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = builtin_sweeps()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise FileNotFoundError(f"sweep file not found: {name_or_path}; built-in sweeps: {', '.join(shipped)}")
