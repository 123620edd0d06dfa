"""``meshnode sim``: run the many-node simulator on the real core and summarise the run."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from meshnode.cli.context import emit_json
from meshnode.errors import MeshnodeError
from meshnode.sim.scenario import Scenario, run_scenario

if TYPE_CHECKING:
    from collections.abc import Callable

    from meshnode.cli.context import Context

__all__ = ["add_sim_commands"]


def add_sim_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register sim."""
    p = sub.add_parser(
        "sim",
        help="simulate N nodes replicating over in-memory links (deterministic from --seed)",
    )
    p.add_argument("--nodes", type=_bounded(int, 2, 2000), default=20, help="nodes (default 20)")
    p.add_argument(
        "--degree", type=_bounded(float, 1, 100), default=4.0, help="mean links per node (4)"
    )
    p.add_argument("--loss", type=_bounded(float, 0, 0.9), default=0.0, help="frame loss 0..0.9")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--authors", type=_bounded(int, 1, 2000), default=5, help="posting nodes (5)")
    p.add_argument("--posts", type=_bounded(int, 0, 10000), default=10, help="posts each (10)")
    p.add_argument(
        "--kill", type=_bounded(float, 0, 0.9), default=0.0, help="fraction to crash at 30 s"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_sim)


def _bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` within [low, high]."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not within {low:g}..{high:g}")
        return value

    return parse


def cmd_sim(ctx: Context, args: argparse.Namespace) -> int:
    """Run one scenario and print its figures."""
    del ctx  # the simulator needs no data dir
    if args.degree >= args.nodes:
        raise MeshnodeError(f"--degree {args.degree:g} needs more than {args.nodes} nodes")
    scenario = Scenario(
        nodes=args.nodes,
        degree=args.degree,
        loss=args.loss,
        seed=args.seed,
        authors=min(args.authors, args.nodes),
        posts=args.posts,
        kill_fraction=args.kill,
    )
    started = time.perf_counter()
    result = run_scenario(scenario)
    result["wall_s"] = round(time.perf_counter() - started, 2)
    if args.json:
        emit_json(result)
        return 0
    print(
        f"{result['nodes']} nodes, {result['links']} links, loss {args.loss:.0%}, "
        f"seed {args.seed}: {result['entries']} entries from {scenario.authors} authors"
    )
    print(
        f"delivered {result['delivered']:.1%} (converged at {result['converged_s']:.1f} s "
        f"simulated, {result['wall_s']:.1f} s real)"
    )
    print(
        f"redundancy {result['redundancy']:.3f} transmissions per delivery, "
        f"control {result['control_bytes_per_delivery']:.1f} bytes per delivery, "
        f"median note {result['note_bytes_median']} bytes"
    )
    return 0 if result["delivered"] == 1.0 else 1
