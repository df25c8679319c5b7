"""Why key a schedule on the noise level: the steps ALG's step window and a noise-level window
filter at different step counts and flow shifts (no model needed, only the scheduler).

    python examples/noise_level_windows.py
"""

from __future__ import annotations

from diffusers import FlowMatchEulerDiscreteScheduler

from guidance_kit.clock import StepState, noise_levels
from guidance_kit.schedules import SigmaWindow, StepSwitch
from guidance_kit.types import progress

WINDOWS = {"step window [0, 0.1]": StepSwitch(0.0, 0.1), "noise level >= 0.9": SigmaWindow(low=0.9)}


def filtered(schedule, levels: list[float]) -> str:  # noqa: ANN001
    n = len(levels)
    on = [
        (i, level)
        for i, level in enumerate(levels)
        if schedule.strength(StepState(i, n, progress(i, n), None, level, level)) > 0
    ]
    if not on:
        return "none"
    return f"{len(on)} steps, levels {min(lv for _, lv in on):.3f}-{max(lv for _, lv in on):.3f}"


def main() -> None:
    print(f"{'steps':>5} {'shift':>5}  " + "  ".join(f"{name:<34}" for name in WINDOWS))
    for shift in (1.0, 5.0):
        for steps in (4, 8, 30, 50):
            scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
            scheduler.set_timesteps(steps)
            levels = [level for _, _, level in noise_levels(scheduler)]
            cells = "  ".join(f"{filtered(schedule, levels):<34}" for schedule in WINDOWS.values())
            print(f"{steps:>5} {shift:>5.1f}  {cells}")


if __name__ == "__main__":
    main()
