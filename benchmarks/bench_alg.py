"""Cost of guidance: wall time and peak memory of ALG and of an attached-but-inactive guide,
relative to the plain pipeline, and of ALG under a diffusers FirstBlockCache relative to the
cache alone, measured side by side (interleaved repeats) in one run.

    python benchmarks/bench_alg.py                      # tiny Wan 2.1 and CogVideoX, batched extra pass
    python benchmarks/bench_alg.py --execution sequential --size 64 --repeats 7
    python benchmarks/bench_alg.py --heavy --size 128   # a denoiser that dominates, as in real models

The expected ALG ratio is the pass-count ratio (2N + filtered) / 2N: the denoiser passes are the
real cost. On tiny pipelines the fixed cost (VAE encode, scheduler, Python) is a large share, so
the script also reports the time spent inside the denoiser alone ("ALG/base denoiser"), which is
what the pass-count ratio predicts, and the denoiser's share of the baseline's wall time.
``--size`` scales the resolution so the denoiser weighs more, as it does in real models. Peak memory is CUDA's allocator peak on a GPU, else the peak resident set size
sampled during the call.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import torch
from diffusers.hooks import FirstBlockCacheConfig

import guidance_kit as gk
from guidance_kit.tiny import tiny_image, tiny_pipeline


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or sampled RSS on the CPU."""

    def __init__(self, device: str):
        self.device, self.peak = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base, self._stop = _rss_bytes(), threading.Event()
            self.peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.0005)

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
        self.delta = self.peak - self._base


# A heavier denoiser for --heavy: like a real model, the transformer then dominates the run.
HEAVY = {
    "wan2.1": {"num_layers": 8, "num_attention_heads": 4, "attention_head_dim": 64, "ffn_dim": 1024},
    "cogvideox": {"num_layers": 8, "num_attention_heads": 4, "attention_head_dim": 64},
}


def bench(
    family: str,
    steps: int,
    end: float,
    size: int,
    repeats: int,
    execution: str,
    device: str,
    heavy: bool = False,
    cache_threshold: float = 0.05,
) -> dict:
    pipe, kwargs = tiny_pipeline(family, torch.float32)
    kwargs.update(height=size, width=size)
    image = tiny_image(size)
    changes = dict(HEAVY.get(family, {})) if heavy else {}  # families without a heavy config stay tiny
    if family == "cogvideox":  # learned positional embeddings are sized to the latent grid
        latent = size // pipe.vae_scale_factor_spatial
        changes.update(sample_height=latent, sample_width=latent)
    if changes:
        torch.manual_seed(0)
        transformer = type(pipe.transformer).from_config({**dict(pipe.transformer.config), **changes})
        pipe.register_modules(transformer=transformer)
    pipe.to(device)

    def call() -> None:
        pipe(
            **gk.controller.image_arguments(pipe, image, kwargs),
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            **kwargs,
        )
        if device == "cuda":
            torch.cuda.synchronize()

    # Time spent inside the denoiser's own forward (inside guide()'s hooks), to compare the
    # denoiser cost with the pass count separately from the fixed cost (VAE encode, scheduler).
    denoiser_time = [0.0]
    modules = list(gk.find_backend(pipe).denoisers(pipe).values())
    for module in modules:
        module.forward = _timed(module.forward, denoiser_time, device)

    alg = gk.Recipe(filter=gk.filters.DownUp(0.4), schedule=gk.schedules.StepSwitch(0.0, end))
    inactive = gk.Recipe(filter=gk.filters.DownUp(0.4), schedule=gk.schedules.Constant(0.0))
    # The guide's own cost per denoiser call: time from a pre-hook placed before guide()'s to a
    # hook placed after guide()'s, minus the time inside forward.
    outer_time = [0.0]

    def inactive_timed() -> int:
        started = [0.0]

        def start(*_: object) -> None:
            started[0] = time.perf_counter()

        def stop(*_: object) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            outer_time[0] += time.perf_counter() - started[0]

        with gk.guide(pipe, inactive, execution=execution) as run:
            handles = [
                h
                for m in modules
                for h in (m.register_forward_pre_hook(start, prepend=True), m.register_forward_hook(stop))
            ]
            call()
            for handle in handles:
                handle.remove()
        return sum(record.calls for record in run.trace)

    def cached(run: Callable[[], None]) -> Callable[[], None]:
        def with_cache() -> None:
            for module in modules:
                module.enable_cache(FirstBlockCacheConfig(threshold=cache_threshold))
            try:
                run()
            finally:
                for module in modules:
                    module.disable_cache()

        return with_cache

    variants: dict[str, Callable[[], None]] = {
        "baseline": call,
        "inactive": lambda: _guided(pipe, inactive, execution, call),
        "alg": lambda: _guided(pipe, alg, execution, call),
    }
    if _caches(modules[0]):
        variants.update(
            cache=cached(call), **{"alg+cache": cached(lambda: _guided(pipe, alg, execution, call))}
        )
    for run in variants.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    inner: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, int] = {name: 0 for name in variants}
    for _ in range(repeats):  # interleaved, so drift hits every variant alike
        for name, run in variants.items():
            with PeakMemory(device) as memory:
                denoiser_time[0] = 0.0
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
                inner[name].append(denoiser_time[0])
            peaks[name] = max(peaks[name], memory.delta)
    with gk.guide(pipe, alg, execution=execution) as traced:
        call()
    with gk.guide(pipe, inactive, execution=execution) as plain:  # the pipeline's own passes
        call()
    overheads = []
    for _ in range(repeats):
        outer_time[0] = denoiser_time[0] = 0.0
        calls = inactive_timed()
        overheads.append((outer_time[0] - denoiser_time[0], denoiser_time[0], calls))
    for module in modules:
        del module.forward
    filtered = len(traced.last.filtered_steps)
    best = {name: min(t) for name, t in times.items()}  # the least-disturbed run of each
    best_inner = {name: min(t) for name, t in inner.items()}
    return {
        "family": family,
        "steps": steps,
        "filtered": filtered,
        "passes": traced.last.passes,
        # ALG's passes over the pipeline's own (Wan: (2N + filtered) / 2N; LTX-2 adds STG and
        # modality passes to both).
        "expected_ratio": traced.last.passes / plain.last.passes,
        "alg_ratio": best["alg"] / best["baseline"],
        "alg_denoiser_ratio": best_inner["alg"] / best_inner["baseline"],
        "denoiser_share": best_inner["baseline"] / best["baseline"],
        "inactive_ratio": best["inactive"] / best["baseline"],
        "alg_cache_ratio": best["alg+cache"] / best["cache"] if "cache" in best else float("nan"),
        "cache_ratio": best["cache"] / best["baseline"] if "cache" in best else float("nan"),
        "baseline_s": best["baseline"],
        "wrapper_us_per_call": min(o / n for o, _, n in overheads) * 1e6,
        "wrapper_share": min(o / d for o, d, _ in overheads),
        "peak_mb": {name: peak / 2**20 for name, peak in peaks.items()},
    }


def _caches(module: torch.nn.Module) -> bool:
    """Whether diffusers' cache hooks know ``module``'s blocks (not LTX-2's in diffusers 0.42)."""
    try:
        module.enable_cache(FirstBlockCacheConfig(threshold=0.0))
    except ValueError:
        return False
    module.disable_cache()
    return True


def _timed(forward, total: list[float], device: str):  # noqa: ANN001
    def timed(*args, **kwargs):  # noqa: ANN002, ANN003
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        total[0] += time.perf_counter() - start
        return out

    return timed


def _guided(pipe, recipe, execution, call) -> None:  # noqa: ANN001
    with gk.guide(pipe, recipe, execution=execution):
        call()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=["wan2.1", "cogvideox"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--end", type=float, default=0.5, help="ALG window end (progress)")
    parser.add_argument("--size", type=int, default=64, help="image height and width in pixels")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--execution", choices=gk.controller.EXECUTIONS, default="batched")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--heavy", action="store_true", help="a deeper, wider denoiser that dominates the run"
    )
    parser.add_argument("--cache-threshold", type=float, default=0.05, help="FirstBlockCache threshold")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    print(
        f"device={args.device} execution={args.execution} steps={args.steps} size={args.size} repeats={args.repeats}"
    )
    header = (
        f"{'family':<10} {'passes':>6} {'pass ratio':>10} {'ALG/base':>8} {'ALG/base denoiser':>17} "
        f"{'denoiser share':>14} {'inactive/base':>13} {'guide us/call':>13} {'guide/denoiser':>14} {'base s':>7}"
        f" {'cache/base':>10} {'ALG+cache/cache':>15}  peak MB (base/inactive/alg)"
    )
    print(header)
    for family in args.families:
        r = bench(
            family,
            args.steps,
            args.end,
            args.size,
            args.repeats,
            args.execution,
            args.device,
            args.heavy,
            args.cache_threshold,
        )
        peaks = "/".join(f"{r['peak_mb'][k]:.1f}" for k in ("baseline", "inactive", "alg"))
        print(
            f"{family:<10} {r['passes']:>6} {r['expected_ratio']:>10.3f} {r['alg_ratio']:>8.3f} "
            f"{r['alg_denoiser_ratio']:>17.3f} {r['denoiser_share']:>14.2f} {r['inactive_ratio']:>13.3f} "
            f"{r['wrapper_us_per_call']:>13.1f} {r['wrapper_share']:>14.4f} {r['baseline_s']:>7.3f}"
            f" {r['cache_ratio']:>10.3f} {r['alg_cache_ratio']:>15.3f}  {peaks}"
        )
        results.append(r)
    return results


if __name__ == "__main__":
    main()
