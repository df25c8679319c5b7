"""Run the paper's window-length ablation from Python (the same as `guidance-kit ablate
window-length`) and print the table. Rerunning resumes: finished cells are not redone.

    python examples/ablation_window.py --out outputs/window --seeds 0 1 2
"""

import argparse

import attrs

from guidance_kit.ablation import Sweep, builtin_sweeps, run_sweep


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="outputs/ablation-window")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--model", default="tiny:wan2.1")
    args = parser.parse_args(argv)

    sweep = Sweep.load(builtin_sweeps()["window-length"])
    sweep = attrs.evolve(sweep, seeds=args.seeds, steps=args.steps, model=args.model)
    rows = run_sweep(sweep, args.out, progress=False)
    print(open(f"{args.out}/results.md").read())
    return rows


if __name__ == "__main__":
    main()
