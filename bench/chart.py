"""The README's chart: p99 ack latency against concurrency, ours (HTTP mode, Socket Mode) and the baseline."""

from __future__ import annotations

import math
from pathlib import Path

from bench.config import CLIENT_TIMEOUT, SLACK_DEADLINE
from bench.figures import figures, inf_if_none
from bench.results import ServerResult
from bench.targets import TARGET_P99_ACK_MS

LABELS = {
    "http": "ours, HTTP mode (gunicorn)",
    "socket": "ours, Socket Mode",
    "baseline": "baseline: Bolt app.start() dev server",
}
STYLES = {"http": ("tab:blue", "o"), "socket": ("tab:green", "s"), "baseline": ("tab:red", "^")}


def draw(servers: list[ServerResult], levels: list[int], path: Path, subtitle: str) -> Path:
    """Write the chart to `path` (PNG or SVG by its suffix). A failed request is drawn at the top, as x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling = CLIENT_TIMEOUT * 1000
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for server in servers:
        if server.fatal:
            continue
        figs = figures(server, levels)
        color, marker = STYLES.get(server.kind.name, ("tab:gray", "o"))
        xs, ys, failed_xs = [], [], []
        for people in levels:
            worst = max(inf_if_none(figs[people].command.p99), inf_if_none(figs[people].submit.p99))
            xs.append(people)
            ys.append(min(worst, ceiling))
            if math.isinf(worst):
                failed_xs.append(people)
        ax.plot(xs, ys, color=color, marker=marker, label=LABELS.get(server.kind.name, server.kind.name))
        if failed_xs:
            ax.scatter(failed_xs, [ceiling] * len(failed_xs), color=color, marker="x", s=120, zorder=5)
    ax.axhline(SLACK_DEADLINE * 1000, color="black", linestyle="--", linewidth=1)
    ax.text(levels[0], SLACK_DEADLINE * 1000 * 1.08, "Slack's 3 s deadline", fontsize=9)
    ax.axhline(TARGET_P99_ACK_MS, color="gray", linestyle=":", linewidth=1)
    ax.text(
        levels[0], TARGET_P99_ACK_MS * 1.08, f"target {TARGET_P99_ACK_MS:.0f} ms", fontsize=9, color="gray"
    )
    ax.text(
        levels[0], ceiling * 0.8, f"x = requests failed (no answer within {CLIENT_TIMEOUT:.0f} s)", fontsize=8
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(levels)
    ax.set_xticklabels([str(p) for p in levels])
    ax.set_ylim(5, ceiling * 1.5)
    ax.set_xlabel("concurrent people (each: command, then submission)")
    ax.set_ylabel("p99 ack latency, ms (worse of command and submission)")
    ax.set_title("Ack latency against concurrency\n" + subtitle, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
