"""Benchmark results and how they are written: ``bench.json``, ``bench.md`` and ``p99_vs_load.png``.

Numbers are reported, never asserted: on a shared machine they are noisy, and performance is
judged by people reading a table, not by a test.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.costs import STAGES
from worker.metrics import TRANSACTION_PHASES

SYSTEM_LABELS = {
    "relay": "relay ceiling (consume → produce the same bytes; no parsing, no model)",
    "naive": "naive baseline (one event at a time: validate, score 1, produce and wait, commit)",
    "riskstream-alo": "riskstream, at-least-once",
    "riskstream-eos": "riskstream, exactly-once (Kafka transactions)",
}
OUTPUT_FILES = ("bench.json", "bench.md", "p99_vs_load.png")
PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles in milliseconds; ``None`` where the percentile falls on an event whose output
    had not appeared by the completion deadline (its latency is only known to be larger)."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    budget_miss_pct: float

    @classmethod
    def of(cls, latencies_ms: npt.NDArray[np.float64], budget_ms: float) -> LatencyStats:
        """``latencies_ms`` holds ``inf`` for events without an output."""
        if latencies_ms.size == 0:
            return cls(None, None, None, None, None, 0.0)

        def finite(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        values = {
            name: finite(float(np.percentile(latencies_ms, q, method="inverted_cdf")))
            for name, q in PERCENTILES.items()
        }
        miss = float(np.count_nonzero(latencies_ms > budget_ms)) / latencies_ms.size * 100.0
        return cls(**values, max_ms=finite(float(latencies_ms.max())), budget_miss_pct=round(miss, 3))


@dataclass(frozen=True)
class PointResult:
    """One system at one offered load.

    ``latency`` is event time (the load generator's CreateTime, also written into the event) to
    the output record's LogAppendTime; ``visible`` is event time to the moment a ``read_committed``
    consumer received the output (for exactly-once that includes the transaction commit).
    """

    system: str
    role: str
    """``sweep``, or ``check``: riskstream measured again at 80% of its highest in-budget load."""
    offered_per_s: float
    generator_per_s: float
    """The load generator's actual send rate over the measurement window."""
    throughput_per_s: float
    """Outputs appended to the output topic per second during the measurement window."""
    events: int
    completed: int
    """Events of the window with an output by the completion deadline."""
    duplicates: int
    latency: LatencyStats
    visible: LatencyStats
    in_budget: bool
    mean_batch: float | None = None
    """Events per model call (riskstream from its metrics; 1 for the naive loop; None: no model)."""
    load_average: float | None = None
    """The machine's 1-minute load average at the end of the window: other work on a shared machine."""
    cpu_us_per_event: float | None = None
    """The system process's CPU time (all its threads) per event over the point, microseconds."""
    stage_cpu_us: dict[str, float] = field(default_factory=dict)
    """riskstream only: CPU microseconds per event per pipeline stage (``riskstream_stage_cpu_seconds_total``)."""
    transaction_phase_ms: dict[str, float] = field(default_factory=dict)
    """Exactly-once only: mean wall milliseconds per transaction phase over the point (warm-up included),
    ``steps`` (transactions committed) and ``events_per_step`` (``riskstream_transaction_phase_seconds``)."""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("offered_per_s", "generator_per_s", "throughput_per_s"):
            data[key] = round(data[key], 1)
        return data


@dataclass(frozen=True)
class SystemSummary:
    system: str
    max_in_budget_per_s: float | None
    """The highest offered load whose p99 was within budget at full throughput (None: none was)."""
    lower_bound: bool
    """True when that load was the highest one tried: the real limit is higher."""
    check: PointResult | None = None


@dataclass
class BenchResult:
    command: str
    started: str
    seconds: float
    budget_ms: float
    settings: dict[str, Any]
    machine: dict[str, Any]
    model: dict[str, Any]
    points: list[PointResult] = field(default_factory=list)
    summaries: dict[str, SystemSummary] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Systems whose run broke off (they could not start, or died), and why."""

    def comparisons(self) -> dict[str, Any]:
        """Ratios of highest in-budget loads, and riskstream's p99 at 80% of its own."""

        def ratio(numerator: str, denominator: str) -> float | None:
            a, b = self.summaries.get(numerator), self.summaries.get(denominator)
            if a is None or b is None or not a.max_in_budget_per_s or not b.max_in_budget_per_s:
                return None
            return round(a.max_in_budget_per_s / b.max_in_budget_per_s, 2)

        out: dict[str, Any] = {}
        for system in ("riskstream-alo", "riskstream-eos"):
            summary = self.summaries.get(system)
            if summary is None:
                continue
            check = summary.check
            out[system] = {
                "max_in_budget_per_s": summary.max_in_budget_per_s,
                "vs_naive": ratio(system, "naive"),
                "vs_relay": ratio(system, "relay"),
                "check_load_per_s": check.offered_per_s if check else None,
                "p99_ms_at_80pct": check.latency.p99_ms if check else None,
                "p99_at_80pct_within_budget": check.in_budget if check else None,
            }
        return out

    def acceptance(self) -> dict[str, Any]:
        """The issue's two performance criteria, for riskstream at-least-once.

        None where a figure is missing: a system never within budget has no highest load to compare.
        """
        alo = self.comparisons().get("riskstream-alo", {})
        vs_naive = alo.get("vs_naive")
        p99 = alo.get("p99_ms_at_80pct")
        return {
            "riskstream_vs_naive_at_least_10x": None if vs_naive is None else vs_naive >= 10,
            "riskstream_p99_within_budget_at_80pct": None if p99 is None else p99 <= self.budget_ms,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "started": self.started,
            "seconds": round(self.seconds, 1),
            "budget_ms": self.budget_ms,
            "settings": self.settings,
            "machine": self.machine,
            "model": self.model,
            "systems": {name: SYSTEM_LABELS[name] for name in self.summaries},
            "points": [point.to_json() for point in self.points],
            "summary": {
                name: {
                    "max_in_budget_per_s": s.max_in_budget_per_s,
                    "lower_bound": s.lower_bound,
                }
                for name, s in self.summaries.items()
            },
            "failures": self.failures,
            "comparisons": self.comparisons(),
            "acceptance": self.acceptance(),
        }


# -- machine ------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (a shared machine's load average included)."""
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": round(pages * page_size / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "kafka_python": _version("kafka-python"),
        "riskstream": _version("riskstream"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- markdown -----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def rate_text(events_per_s: float) -> str:
    """An events/s figure as people write it: ``1,500``, ``12.5``; tenths only below 100."""
    return f"{events_per_s:,.0f}" if events_per_s >= 100 else f"{events_per_s:.1f}".removesuffix(".0")


def _cpu_table(result: BenchResult) -> list[str]:
    """CPU microseconds per event: every system in total, riskstream by stage (per-thread CPU clocks)."""
    points = [p for p in result.points if p.cpu_us_per_event is not None]
    if not points:
        return []
    stages = sorted({stage for p in points for stage in p.stage_cpu_us}, key=STAGES.index)
    lines = [
        "",
        "CPU per event, µs (process CPU time of the system under test over the point, divided by its events; "
        "riskstream's stages from its per-thread CPU clocks, the rest is interpreter, metrics and logging):",
        "",
        "| system | offered/s | total | " + " | ".join(stages) + " |",
        "|---|--:|--:|" + "--:|" * len(stages),
    ]
    for p in points:
        cells = [f"{p.stage_cpu_us[stage]:.0f}" if stage in p.stage_cpu_us else "" for stage in stages]
        name = p.system + (" (80% check)" if p.role == "check" else "")
        lines.append(
            f"| {name} | {rate_text(p.offered_per_s)} | {p.cpu_us_per_event:.0f} | " + " | ".join(cells) + " |"
        )
    return lines


def _transaction_table(result: BenchResult) -> list[str]:
    """Exactly-once: mean milliseconds per phase of a transaction step, and events per transaction."""
    points = [p for p in result.points if p.transaction_phase_ms.get("steps")]
    if not points:
        return []
    phases = [phase for phase in TRANSACTION_PHASES if any(phase in p.transaction_phase_ms for p in points)]
    lines = [
        "",
        "Exactly-once transaction steps (wall time per phase, mean ms; from riskstream_transaction_phase_seconds):",
        "",
        "| system | offered/s | transactions | events per transaction | " + " | ".join(phases) + " | total |",
        "|---|--:|--:|--:|" + "--:|" * (len(phases) + 1),
    ]
    for p in points:
        phase_ms = p.transaction_phase_ms
        steps = phase_ms["steps"]
        cells = [f"{phase_ms[phase]:.1f}" if phase in phase_ms else "" for phase in phases]
        total = sum(phase_ms.get(phase, 0.0) for phase in phases)
        name = p.system + (" (80% check)" if p.role == "check" else "")
        lines.append(
            f"| {name} | {rate_text(p.offered_per_s)} | {steps:.0f} | {phase_ms['events_per_step']:.1f} | "
            + " | ".join(cells)
            + f" | {total:.1f} |"
        )
    return lines


def markdown(result: BenchResult) -> str:
    """The results as a markdown page: settings, the table of every point, and the comparisons."""
    m, model = result.machine, result.model
    lines = [
        f"# riskstream bench, {result.started}",
        "",
        f"Command: `{result.command}`",
        "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, "
        f"{m['memory_gib']} GiB RAM; {m['os']}; Python {m['python']}, torch {m['torch']}, "
        f"kafka-python {m['kafka_python']}; Kafka {result.settings.get('kafka_version') or 'external'}; "
        f"load average at start {', '.join(str(x) for x in m['load_average_at_start'])}.",
        "",
        f"Model: {model.get('name')} {model.get('version')} (preset {model.get('preset')}, "
        f"{model.get('parameters') or '?'} parameters, {model.get('quantization')} on CPU).",
        "",
        f"Budget {result.budget_ms:.0f} ms event → output (LogAppendTime); {result.settings['seconds']} s measured "
        f"per point after {result.settings['warmup_s']} s warm-up; {result.settings['partitions']} partitions; "
        f"open-loop load generator (CreateTime). Run took {result.seconds / 60:.1f} min.",
        "",
        "| system | offered/s | achieved/s | p50 ms | p95 ms | p99 ms | p99.9 ms | over budget | "
        "p99 visible ms | batch | load avg | within budget |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    order = {name: index for index, name in enumerate(result.summaries)}
    for p in sorted(result.points, key=lambda p: (order.get(p.system, len(order)), p.role != "sweep", p.offered_per_s)):
        name = p.system + (" (80% check)" if p.role == "check" else "")
        verdict = "yes" if p.in_budget else "no"
        if p.note:
            verdict += f" ({p.note})"
        lines.append(
            f"| {name} | {rate_text(p.offered_per_s)} | {rate_text(p.throughput_per_s)} | {_ms(p.latency.p50_ms)} | "
            f"{_ms(p.latency.p95_ms)} | {_ms(p.latency.p99_ms)} | {_ms(p.latency.p999_ms)} | "
            f"{p.latency.budget_miss_pct:.2f}% | {_ms(p.visible.p99_ms)} | {_ms(p.mean_batch)} | "
            f"{_ms(p.load_average)} | {verdict} |"
        )
    lines += _cpu_table(result)
    lines += _transaction_table(result)
    lines += ["", "| system | highest load within budget (events/s) |", "|---|--:|"]
    for name, summary in result.summaries.items():
        value = summary.max_in_budget_per_s
        text = "none" if value is None else rate_text(value) + (" (the highest tried)" if summary.lower_bound else "")
        lines.append(f"| {SYSTEM_LABELS[name]} | {text} |")
    for name, reason in result.failures.items():
        lines.append(f"| {SYSTEM_LABELS[name]} | failed: {reason} |")
    comparisons = result.comparisons()
    if comparisons:
        lines.append("")
    for system, c in comparisons.items():
        parts = []
        if c["vs_naive"] is not None:
            parts.append(f"{c['vs_naive']:.1f}x the naive baseline's highest in-budget load")
        if c["vs_relay"] is not None:
            parts.append(f"{c['vs_relay']:.0%} of the relay ceiling's")
        if c["p99_ms_at_80pct"] is not None:
            parts.append(f"p99 {c['p99_ms_at_80pct']:.1f} ms at 80% of its own ({rate_text(c['check_load_per_s'])}/s)")
        if parts:
            lines.append(f"- **{system}**: " + "; ".join(parts) + ".")
    lines += [
        "",
        "Columns: *achieved* = outputs appended per second during the window; *over budget* = share of the "
        "window's events whose output came later than the budget (or not before the completion deadline: "
        "then percentiles that fall on them show —); *p99 visible* = when a `read_committed` consumer got the "
        "output (includes the commit for exactly-once); *batch* = mean events per model call; *load avg* = "
        "the machine's 1-minute load average after the window (other work on the machine).",
        "",
    ]
    return "\n".join(lines)


# -- plot ---------------------------------------------------------------------------------------


def plot(result: BenchResult, path: Path) -> None:
    """p99 latency against offered load, one line per system; unfinished points drawn as ▲ at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    finite = [p.latency.p99_ms for p in result.points if p.latency.p99_ms is not None]
    top = max([*finite, result.budget_ms * 4]) * 1.5
    for system in result.summaries:
        sweep = sorted(
            (p for p in result.points if p.system == system and p.role == "sweep"), key=lambda p: p.offered_per_s
        )
        xs = [p.offered_per_s for p in sweep]
        ys = [p.latency.p99_ms if p.latency.p99_ms is not None else top for p in sweep]
        (line,) = axes.plot(xs, ys, marker="o", label=system)
        unfinished = [p.offered_per_s for p in sweep if p.latency.p99_ms is None]
        if unfinished:
            axes.scatter(unfinished, [top] * len(unfinished), marker="^", s=80, color=line.get_color())
        checks = [
            (p.offered_per_s, p.latency.p99_ms)
            for p in result.points
            if p.system == system and p.role == "check" and p.latency.p99_ms is not None
        ]
        if checks:
            axes.scatter(
                [x for x, _ in checks],
                [y for _, y in checks],
                marker="*",
                s=160,
                color=line.get_color(),
                zorder=3,
                label=f"{system} at 80% of its max",
            )
    axes.axhline(result.budget_ms, color="grey", linestyle="--", linewidth=1, label=f"budget {result.budget_ms:.0f} ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered load (events/s, open loop)")
    axes.set_ylabel("p99 event → output latency (ms)")
    axes.set_title(f"riskstream bench · {result.machine['cpu']} · {result.machine['usable_cpus']} CPUs", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_outputs(result: BenchResult, out_dir: Path) -> list[Path]:
    """Write ``OUTPUT_FILES`` (JSON, markdown, plot) into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in OUTPUT_FILES]
    paths[0].write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(result), encoding="utf-8")
    plot(result, paths[2])
    return paths
