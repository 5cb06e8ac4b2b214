"""``lrtune schedule``: preview a named schedule (lr and momentum per step) before training."""

from __future__ import annotations

import argparse
import json

from lrtune.cli.checks import MAX_SCHEDULE_STEPS
from lrtune.cli.common import bounded_int, momentum_value, nonnegative_float, positive_float

EPILOG = """examples:
  lrtune schedule linear --lr 0.03 --lr-end 0.0001 --momentum 0.9 --momentum-end 0.999 --steps 100
  lrtune schedule one_cycle --lr 0.1 --steps 1000 --out one_cycle.png
  lrtune schedule step --lr 0.1 --steps 90 --json

names: constant, linear, one_cycle, cosine, warmup_cosine, cyclic, cosine_restarts, step,
exponential (see lrtune.schedules.named_schedule for each one's defaults)
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "schedule", help="preview a learning-rate / momentum schedule", description=__doc__,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", help="schedule name (see below)")
    p.add_argument("--lr", type=positive_float, default=0.1,
                   help="start (peak for one_cycle, cyclic, warmup_cosine) lr (default 0.1)")
    p.add_argument("--steps", type=bounded_int(1, MAX_SCHEDULE_STEPS), default=100,
                   help=f"steps in the run (at most {MAX_SCHEDULE_STEPS:,}; default 100)")
    p.add_argument("--lr-end", type=nonnegative_float, default=None, help="lr at the last step")
    p.add_argument("--momentum", type=momentum_value, default=None,
                   help="momentum (start value) in [0, 1)")
    p.add_argument("--momentum-end", type=momentum_value, default=None,
                   help="momentum at the last step (one_cycle, cyclic: at the lr peak)")
    p.add_argument("--out", default=None, help="write the plot to this PNG file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: lists lr and momentum, one value per step")
    p.set_defaults(run=run)


def run(args) -> int:
    from lrtune.cli.checks import check_output_path

    if args.out is not None:
        check_output_path(args.out, folder=False)
    from lrtune.schedules import (
        constant,
        find_jumps,
        named_schedule,
        plot_schedule,
        schedule_table,
        schedule_values,
    )

    schedules = named_schedule(args.name, lr=args.lr, total_steps=args.steps, lr_end=args.lr_end,
                               momentum=args.momentum, momentum_end=args.momentum_end)
    if "momentum" not in schedules and args.momentum is not None:
        schedules["momentum"] = constant(args.momentum)  # the optimizer keeps it: show it
    values = schedule_values(schedules, args.steps)
    jumps = {key: find_jumps(v) for key, v in values.items()}
    if args.out:
        plot_schedule(schedules, args.steps, title=f"{args.name} ({args.steps} steps)",
                      out=args.out)
    if args.json:
        print(json.dumps({"name": args.name, "total_steps": args.steps, "lr": values["lr"],
                          "momentum": values.get("momentum"), "jumps": jumps}))
        return 0
    print(f"{args.name} over {args.steps} steps")
    print(schedule_table(values))
    for key, found in jumps.items():
        if found:
            print(f"jumps in {key} at step{'s' if len(found) > 1 else ''} "
                  f"{', '.join(map(str, found))}")
    if args.out:
        print(f"wrote {args.out}")
    return 0
