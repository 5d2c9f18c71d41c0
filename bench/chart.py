"""The suite's picture: ``python -m bench.chart RESULTS.json OUT.png`` redraws it.

Two panels drawn with matplotlib (Agg backend, no display needed) from the suite's
JSON results: lookups per second by registry size for each backend, and the main
throughput figures per backend beside the peers (Pyro5's name server) and the raw
limits (bare trio echo, ``sqlite3`` upsert). Bars are medians, whiskers min-max.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

MISSING = "matplotlib is not installed (pip install -e '.[bench]')"

BACKEND_COLORS = {"memory": "#4C72B0", "sqlite": "#DD8452", "redis": "#C44E52"}
PEER_COLORS = {"pyro5 mem": "#8C8C8C", "pyro5 sql": "#B5B5B5", "bare": "#55A868"}
SIZES = (10, 1_000, 10_000, 100_000)

#: Bottom panel: (group label, [(series, metric key)]).
GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "lookup\n1 client, tcp",
        [
            ("memory", "lookup.memory.tcp"),
            ("sqlite", "lookup.sqlite.tcp"),
            ("redis", "lookup.redis.tcp"),
            ("pyro5 mem", "pyro.lookup.memory"),
            ("pyro5 sql", "pyro.lookup.sqlite"),
            ("bare", "echo.tcp"),
        ],
    ),
    (
        "lookup\n16 clients, tcp",
        [
            ("memory", "lookup16t.memory.tcp"),
            ("sqlite", "lookup16t.sqlite.tcp"),
            ("redis", "lookup16t.redis.tcp"),
            ("pyro5 mem", "pyro.lookup16.memory"),
            ("pyro5 sql", "pyro.lookup16.sqlite"),
            ("bare", "echo16.tcp"),
        ],
    ),
    (
        "find_actor\ntcp",
        [
            ("memory", "find.memory.tcp"),
            ("sqlite", "find.sqlite.tcp"),
            ("redis", "find.redis.tcp"),
            ("bare", "connect.tcp"),
        ],
    ),
    (
        "register\n1 client",
        [
            ("memory", "reg.memory"),
            ("sqlite", "reg.sqlite"),
            ("redis", "reg.redis"),
            ("pyro5 mem", "pyro.register.memory"),
            ("pyro5 sql", "pyro.register.sqlite"),
            ("bare", "raw.sqlite3"),
        ],
    ),
    (
        "register\n16 clients",
        [
            ("memory", "reg16.memory"),
            ("sqlite", "reg16.sqlite"),
            ("redis", "reg16.redis"),
            ("pyro5 mem", "pyro.register16.memory"),
            ("pyro5 sql", "pyro.register16.sqlite"),
        ],
    ),
    (
        "storm of\n1,000",
        [
            ("memory", "storm.1000.memory"),
            ("sqlite", "storm.1000.sqlite"),
            ("redis", "storm.1000.redis"),
        ],
    ),
    (
        "storm of\n10,000",
        [
            ("memory", "storm.10000.memory"),
            ("sqlite", "storm.10000.sqlite"),
            ("redis", "storm.10000.redis"),
        ],
    ),
]
SERIES = ["memory", "sqlite", "redis", "pyro5 mem", "pyro5 sql", "bare"]
SERIES_LABELS = {
    "memory": "tractor_reg memory://",
    "sqlite": "tractor_reg sqlite://",
    "redis": "tractor_reg redis://",
    "pyro5 mem": "Pyro5 NS (memory)",
    "pyro5 sql": "Pyro5 NS (sql storage)",
    "bare": "raw limit: bare trio echo / connect / sqlite3 upsert",
}


def _pyplot() -> Any | None:
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _stat(metrics: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    m = metrics.get(key)
    if not m or m.get("median") is None:
        return None
    return float(m["median"]), float(m["min"]), float(m["max"])


def _color(series: str) -> str:
    return BACKEND_COLORS.get(series) or PEER_COLORS.get(series, "#999999")


def write_chart(result: dict[str, Any], path: Path) -> bool:
    """Draw the chart of a suite result into ``path``; False if matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return False
    metrics: dict[str, Any] = result.get("metrics", {})
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(13, 10), gridspec_kw={"height_ratios": [1, 1.25]}
    )

    # -- lookups by registry size ------------------------------------------------------
    backends = [b for b in BACKEND_COLORS if any(f"scale.{s}.{b}" in metrics for s in SIZES)]
    width = 0.8 / max(1, len(backends))
    for j, backend in enumerate(backends):
        xs, ys, lo, hi = [], [], [], []
        for i, size in enumerate(SIZES):
            stat = _stat(metrics, f"scale.{size}.{backend}")
            if stat is None:
                continue
            xs.append(i + (j - (len(backends) - 1) / 2) * width)
            ys.append(stat[0])
            lo.append(stat[0] - stat[1])
            hi.append(stat[2] - stat[0])
        top.bar(
            xs,
            ys,
            width,
            yerr=[lo, hi],
            capsize=3,
            color=_color(backend),
            label=SERIES_LABELS[backend],
        )
        for x, y, up in zip(xs, ys, hi, strict=True):
            top.text(x, y + up, f"{y:,.0f}", ha="center", va="bottom", fontsize=7)
    top.set_xticks(range(len(SIZES)), [f"{s:,} entries" for s in SIZES])
    top.set_ylabel("lookups / s (1 client, TCP)")
    top.set_title("Registrar lookups by registry size (median, whiskers min-max)")
    top.legend(loc="lower right", fontsize=8)
    top.grid(axis="y", alpha=0.3)

    # -- throughput per backend beside the peers ----------------------------------------
    present = [
        s for s in SERIES if any(_stat(metrics, k) for _, row in GROUPS for n, k in row if n == s)
    ]
    width = 0.84 / max(1, len(present))
    drawn: set[str] = set()
    for i, (_group, row) in enumerate(GROUPS):
        for series, key in row:
            stat = _stat(metrics, key)
            if stat is None or series not in present:
                continue
            j = present.index(series)
            x = i + (j - (len(present) - 1) / 2) * width
            bottom.bar(
                [x],
                [stat[0]],
                width,
                yerr=[[stat[0] - stat[1]], [stat[2] - stat[0]]],
                capsize=2,
                color=_color(series),
                label=SERIES_LABELS[series] if series not in drawn else None,
            )
            drawn.add(series)
            bottom.text(
                x,
                stat[2] * 1.1,
                f"{stat[0]:,.0f}",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
            )
    bottom.set_yscale("log")
    bottom.set_xticks(range(len(GROUPS)), [g for g, _ in GROUPS], fontsize=8)
    bottom.set_ylabel("operations / s (log scale)")
    bottom.set_title("Throughput per backend, beside Pyro5's name server and the raw limits")
    bottom.legend(loc="upper right", fontsize=7, ncol=2)
    bottom.grid(axis="y", alpha=0.3, which="both")
    ymin, ymax = bottom.get_ylim()
    bottom.set_ylim(ymin, ymax * 4)

    machine = result.get("machine", {})
    load = result.get("load", {}).get("before", {})
    config = result.get("config", {})
    mode = "quick" if config.get("quick") else "full"
    fig.suptitle(
        f"tractor_reg {machine.get('tractor_reg', '')} benchmark suite ({mode} run, "
        f"{config.get('reps', '?')} repetitions) - {machine.get('cpus', '?')} vCPU, "
        f"{machine.get('cpu_model', '')}, Python {machine.get('python', '?')}, "
        f"load average at start {load.get('loadavg_1m', 0):.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.chart RESULTS.json OUT.png", file=sys.stderr)
        return 2
    result = json.loads(Path(args[0]).read_text())
    if not write_chart(result, Path(args[1])):
        print(MISSING, file=sys.stderr)
        return 1
    print(f"chart written to {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
