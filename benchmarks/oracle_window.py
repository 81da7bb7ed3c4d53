"""How far a clairvoyant planner gets: ``oracle-mpc`` with longer windows and more candidates.

    python benchmarks/oracle_window.py [--suite configs/suites/generalist.yaml] [--episodes 5]
        [--settings 6x8,12x32,20x64] [--workers 1]

``oracle-mpc`` plans on the true future demand under the rails (warm-up, shift limits,
stabilization); the leaderboard's ``oracle`` bound reallocates freely every tick. Each setting
``HxC`` (``horizon`` ticks past the warm-up, ``candidates`` sources and destinations) plays the
suite's eval split as ``scripts/benchmark.py`` does (same seeds, the same bound), and one
Markdown table gives the gap closed per class and the mean of the classes side by side: the
ceiling a student of such a planner would meet. The leaderboard plays built-ins by name with
their defaults, so each setting is run with the planner's defaults set to it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from shift_rl.agents.oracle import OracleMPCPolicy
from shift_rl.benchmark import benchmark


@contextlib.contextmanager
def _planner_defaults(horizon: int, candidates: int) -> Iterator[None]:
    init = OracleMPCPolicy.__init__
    saved = init.__defaults__
    init.__defaults__ = (horizon, candidates)  # fork-based workers inherit it
    try:
        yield
    finally:
        init.__defaults__ = saved


def _setting(text: str) -> tuple[int, int]:
    try:
        h, c = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HORIZONxCANDIDATES, got {text!r}") from None
    if h < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return h, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="configs/suites/generalist.yaml")
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--settings", default="6x8,12x32,20x64", help="HxC,HxC,...")
    args = ap.parse_args()
    settings = [_setting(t) for t in args.settings.split(",") if t.strip()]
    columns = []
    for h, c in settings:
        with _planner_defaults(h, c):
            board = benchmark(args.suite, ["oracle-mpc"], episodes=args.episodes,
                              baselines=["static"], workers=args.workers).to_dict()  # fmt: skip
        columns.append(board)
    order = columns[0]["class_order"]
    head = [f"{h} / {c}" for h, c in settings]
    print(f"oracle-mpc gap closed (horizon / candidates), {args.episodes} episodes a scenario\n")
    print("| class | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for cls in order:
        cells = [f"{b['classes'][cls]['policies']['oracle-mpc']['gap_closed']['mean']:.2f}"
                 for b in columns]  # fmt: skip
        print(f"| {cls} | " + " | ".join(cells) + " |")
    means = [f"{b['mean_gap_closed']['oracle-mpc']:.3f}" for b in columns]
    print("| **mean of the classes** | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()
