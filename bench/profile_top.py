"""Top five of a py-spy profile (`py-spy record --format raw`: one collapsed stack per line,
`frame;frame;...;leaf COUNT`, each frame `function (file:line)`).

Three views, as shares of all samples (the bench records with `--gil`: only the thread
holding the GIL is sampled, so this is where the Python CPU goes):
* self time by library of the leaf frame (sqlalchemy, asyncpg, aiokafka, json, asyncio, the
  worker's own packages, ...);
* inclusive time by library anywhere on the stack (SQLAlchemy's async layer runs its work in
  greenlets, whose stacks do not hold the worker's frames, so a library view is the one
  that adds up);
* self time by leaf function.

    .venv/bin/python bench/profile_top.py bench/results/profile-mix.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    """(frames as (function, file), count) per stack line; malformed lines are skipped."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            m = _FRAME.match(raw.strip())
            frames.append((m["func"], m["file"]) if m else (raw.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


def library(file: str) -> str:
    """A short name for where a file lives: `sqlalchemy`, `asyncio`, `campaign_worker.service`."""
    path = file.replace("\\", "/")
    if "campaign_worker/" in path:
        parts = path.split("campaign_worker/", 1)[1].split("/")
        if parts[:2] == ["entrypoints", "cli.py"]:
            return "campaign_worker.entrypoints.cli"  # the bottom of every stack
        return "campaign_worker." + parts[0].removesuffix(".py")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    m = re.search(r"/python3\.\d+/([^/]+)", path)
    if m:
        return m[1].removesuffix(".py")
    return path.rsplit("/", 1)[-1] or "?"


ROOTS = frozenset(
    {"?", "asyncio", "selectors", "threading", "runners", "campaign_worker.entrypoints.cli"}
)


def top(counter: Counter[str], total: int, n: int = 5) -> list[tuple[str, float]]:
    return [(k, v / total * 100) for k, v in counter.most_common(n)]


def summarise(text: str, n: int = 5) -> str:
    stacks = parse(text)
    total = sum(c for _, c in stacks)
    if not total:
        return "profile: no samples"
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    function: Counter[str] = Counter()
    for frames, count in stacks:
        func, file = frames[-1]
        leaf[library(file)] += count
        function[f"{func} ({library(file)})"] += count
        for lib in {library(f) for _, f in frames}:
            inclusive[lib] += count
    # the roots of stacks (the script, the CLI, the event loop, threads) say nothing
    for k in [k for k in inclusive if k in ROOTS or k.endswith(("-worker", "_worker.py"))]:
        del inclusive[k]
    lines = [f"profile: {total} samples"]
    lines.append(f"  top {n} by library of the leaf frame (self time):")
    lines += [f"    {share:5.1f}%  {name}" for name, share in top(leaf, total, n)]
    lines.append(f"  top {n} libraries anywhere on the stack (inclusive):")
    lines += [f"    {share:5.1f}%  {name}" for name, share in top(inclusive, total, n)]
    lines.append(f"  top {n} leaf functions:")
    lines += [f"    {share:5.1f}%  {name}" for name, share in top(function, total, n)]
    return "\n".join(lines)


def main(paths: Iterable[str]) -> int:
    for path in paths:
        with open(path) as f:
            print(summarise(f.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
