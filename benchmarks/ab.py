"""Two revisions of the project, one benchmark, side by side in one run.

    python benchmarks/ab.py --base REV [--head HEAD] [--rounds 5] -- benchmarks/bench_env.py

Checks both revisions out into temporary git worktrees (so editing the working tree meanwhile
changes nothing), then runs the benchmark command (each revision's own copy of the script, or
with ``--same-script`` the head's, with the revision's package first on ``PYTHONPATH``)
alternately in both, ``--rounds`` times, so load on a shared machine hits both alike.
Every Markdown table row the benchmark prints (``| name | number | ...``) is matched by its
first cell; the table gives, per row, the median of its first numeric cell over the rounds
for both revisions and their ratio (head / base: below 1 is faster when the number is a
time). The temporary worktrees are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_NUMBER = re.compile(r"^-?[\d,]*\.?\d+(?:e-?\d+)?$")


def rows(output: str) -> dict[str, float]:
    """First numeric cell of every Markdown table row, keyed by the row's first cell."""
    out: dict[str, float] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|") or set(cells[1]) <= set("-: "):
            continue
        for cell in cells[1:]:
            token = cell.split()[0] if cell else ""
            if _NUMBER.match(token):
                out[cells[0]] = float(token.replace(",", ""))
                break
    return out


def run(tree: Path, command: list[str], script_tree: Path | None = None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    script, *args = command
    proc = subprocess.run(
        [sys.executable, str((script_tree or tree) / script), *args],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    return rows(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--head", default="HEAD", help="git revision to measure (default HEAD)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument(
        "--same-script",
        action="store_true",
        help="run the working tree's copy of the script in both (its options are new)",
    )
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...]")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.rounds < 1:
        ap.error("give a benchmark script after --, and --rounds >= 1")
    with tempfile.TemporaryDirectory(prefix="shift_rl-ab-") as tmp:
        trees = {"base": Path(tmp) / "base", "head": Path(tmp) / "head"}
        for label, rev in (("base", args.base), ("head", args.head)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                            str(trees[label]), rev], check=True)  # fmt: skip
        try:
            results: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
            for _ in range(args.rounds):
                for label, tree in trees.items():
                    script_tree = trees["head"] if args.same_script else None
                    for key, value in run(tree, command, script_tree).items():
                        results[label].setdefault(key, []).append(value)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)  # fmt: skip
    print(f"{' '.join(command)}: base {args.base} vs head {args.head}, {args.rounds} "
          "alternating rounds, median of each row's first number")  # fmt: skip
    print("\n| row | base | head | head / base |\n|---|---:|---:|---:|")
    for key, values in results["head"].items():
        if key not in results["base"]:
            continue
        b, h = statistics.median(results["base"][key]), statistics.median(values)
        print(f"| {key} | {b:,.4g} | {h:,.4g} | {h / b if b else float('nan'):.3f} |")


if __name__ == "__main__":
    main()
