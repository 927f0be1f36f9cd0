"""Top five of a py-spy profile (`py-spy record --format raw`: one collapsed stack per line,
`frame;frame;...;leaf COUNT`, each frame `function (file:line)`).

Two views, as shares of all samples (py-spy leaves idle threads out by default, so this is
roughly where the CPU goes):
* by where a sample is spent (its leaf frame's library: sqlalchemy, asyncpg, aiokafka, json,
  asyncio, the worker's own packages, ...);
* by what the worker was doing (the innermost frame of the worker's own code in the stack).

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
        return "campaign_worker." + parts[0].removesuffix(".py")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    m = re.search(r"/python3\.\d+/([^/]+)", path)
    if m:
        return m[1].removesuffix(".py")
    return path.rsplit("/", 1)[-1] or "?"


def top(counter: Counter[str], total: int, n: int = 5) -> list[tuple[str, float]]:
    return [(k, v / total * 100) for k, v in counter.most_common(n)]


def summarise(text: str, n: int = 5) -> str:
    stacks = parse(text)
    total = sum(c for _, c in stacks)
    if not total:
        return "profile: no samples"
    leaf: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        leaf[library(frames[-1][1])] += count
        mine = [f for f in frames if "campaign_worker/" in f[1]]
        where = f"{mine[-1][0]} ({library(mine[-1][1])})" if mine else "(not in the worker's code)"
        own[where] += count
    lines = [f"profile: {total} samples"]
    lines.append(f"  top {n} by library of the leaf frame:")
    lines += [f"    {share:5.1f}%  {name}" for name, share in top(leaf, total, n)]
    lines.append(f"  top {n} by innermost worker function on the stack:")
    lines += [f"    {share:5.1f}%  {name}" for name, share in top(own, total, n)]
    return "\n".join(lines)


def main(paths: Iterable[str]) -> int:
    for path in paths:
        with open(path) as f:
            print(summarise(f.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
