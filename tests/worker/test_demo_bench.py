"""``riskstream demo`` and ``riskstream bench``: the pieces without a broker, then each end to end.

The end-to-end tests check that the commands work and account for every event, never how fast
anything is: performance is what the benchmark reports, not what a test asserts.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from worker.tools.bench.harness import SYSTEMS, BenchConfig, _phase_means, process_tree_cpu_seconds, run_bench
from worker.tools.bench.report import BenchResult, LatencyStats, PointResult, SystemSummary, markdown, write_outputs
from worker.tools.kit import BOOTSTRAP_ENV, bootstrap_configured
from worker.tools.produce import OutgoingEvent, send_paced

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- without a broker ---------------------------------------------------------------------------


def test_bootstrap_is_configured_by_the_environment_or_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    assert not bootstrap_configured(None)
    plain = tmp_path / "plain.toml"
    plain.write_text('group_id = "x"\n[kafka]\nclient_id = "y"\n')
    assert not bootstrap_configured(plain)
    named = tmp_path / "named.toml"
    named.write_text('[kafka]\nbootstrap_servers = "broker:9092"\n')
    assert bootstrap_configured(named)
    monkeypatch.setenv(BOOTSTRAP_ENV, "broker:9092")
    assert bootstrap_configured(None)


class _RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, float]] = []

    def send(self, topic: str, *, value: bytes, key: bytes) -> None:
        self.sent.append((value, time.perf_counter()))

    def flush(self) -> None:
        return None


def test_send_paced_takes_each_event_when_it_is_due_without_skipping_any() -> None:
    taken: list[float] = []

    def events() -> Any:
        for index in range(5):
            taken.append(time.perf_counter())  # a re-stamping generator stamps here
            yield OutgoingEvent(b"k", str(index).encode(), str(index), False, None)

    producer = _RecordingProducer()
    report = send_paced(producer, "t", events(), count=None, rate=1000.0)  # type: ignore[arg-type]
    assert report.sent == 5 and [value for value, _ in producer.sent] == [b"0", b"1", b"2", b"3", b"4"]
    assert taken[-1] - taken[0] >= 0.004 - 0.0006  # the fifth event is due 4 ms after the first
    # Each event is taken (stamped) only when it is due, right before it is sent.
    assert all(sent_at - took < 0.002 for (_, sent_at), took in zip(producer.sent, taken, strict=True))


_BURNER = """
import sys, time
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""
_PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, sys.argv[1]], stdin=subprocess.PIPE)
sys.stdin.read()
child.stdin.close()
sys.exit(child.wait())
"""


def test_process_cpu_counts_the_children_a_worker_forks(tmp_path: Path) -> None:
    """With ``--processes N`` the scoring CPU is spent in the supervisor's children: the bench counts them."""
    (tmp_path / "burner.py").write_text(_BURNER)
    (tmp_path / "parent.py").write_text(_PARENT)
    with subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "burner.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None and parent.stdin is not None
        assert parent.stdout.readline().strip() == "burnt"  # the child's CPU is spent
        tree = process_tree_cpu_seconds(parent.pid)
        parent.stdin.close()
        assert parent.wait(30) == 0
    assert tree is not None and tree >= 0.3
    assert process_tree_cpu_seconds(parent.pid) is None  # gone (reaped)


def test_latency_stats_treat_unfinished_events_as_later_than_any_percentile_they_fall_on() -> None:
    finished = np.arange(1.0, 101.0)  # 1..100 ms
    stats = LatencyStats.of(np.concatenate([finished, np.full(2, np.inf)]), budget_ms=50.0)
    assert stats.p50_ms == pytest.approx(51.0)
    assert stats.p99_ms is None and stats.p999_ms is None and stats.max_ms is None
    assert stats.budget_miss_pct == pytest.approx(52 / 102 * 100, abs=1e-3)
    assert LatencyStats.of(finished, budget_ms=50.0).p99_ms == pytest.approx(99.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loads": (200.0, 100.0)}, "increasing"),
        ({"loads": ()}, "positive"),
        ({"systems": ("relay", "kafka-streams")}, "kafka-streams"),
        ({"seconds": 0.0}, "seconds"),
    ],
)
def test_bench_config_rejects_nonsense(overrides: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        BenchConfig(out_dir=tmp_path, **overrides)


def _point(system: str, load: float, p99: float | None, *, role: str = "sweep") -> PointResult:
    stats = LatencyStats(p50_ms=2.0, p95_ms=5.0, p99_ms=p99, p999_ms=p99, max_ms=p99, budget_miss_pct=0.0)
    return PointResult(
        system=system,
        role=role,
        offered_per_s=load,
        generator_per_s=load,
        throughput_per_s=load,
        events=100,
        completed=100,
        duplicates=0,
        latency=stats,
        visible=stats,
        in_budget=p99 is not None and p99 <= 50.0,
    )


def _result() -> BenchResult:
    result = BenchResult(
        command="riskstream bench --out x",
        started="2026-01-01T00:00:00+00:00",
        seconds=60.0,
        budget_ms=50.0,
        settings={"seconds": 10, "warmup_s": 3, "partitions": 4, "kafka_version": "4.1.2"},
        machine={
            "cpu": "Test CPU",
            "usable_cpus": 2,
            "logical_cpus": 2,
            "memory_gib": 8.0,
            "os": "Linux",
            "python": "3.11",
            "torch": "2",
            "kafka_python": "3",
            "load_average_at_start": [0.1, 0.1, 0.1],
        },
        model={"name": "m", "version": "v", "preset": "tiny", "parameters": 1000, "quantization": "int8"},
    )
    result.points = [
        _point("relay", 100, 5.0),
        _point("relay", 1000, 9.0),
        _point("naive", 100, 30.0),
        _point("naive", 1000, None),
        _point("riskstream-alo", 100, 10.0),
        _point("riskstream-alo", 1000, 40.0),
        _point("riskstream-alo", 800, 30.0, role="check"),
    ]
    result.summaries = {
        "relay": SystemSummary("relay", 1000, lower_bound=True),
        "naive": SystemSummary("naive", 100, lower_bound=False),
        "riskstream-alo": SystemSummary("riskstream-alo", 1000, lower_bound=True, check=result.points[-1]),
    }
    return result


def test_report_compares_riskstream_with_the_naive_baseline_and_the_relay_ceiling(tmp_path: Path) -> None:
    result = _result()
    comparison = result.comparisons()["riskstream-alo"]
    assert comparison["vs_naive"] == 10.0
    assert comparison["vs_relay"] == 1.0
    assert comparison["p99_ms_at_80pct"] == 30.0
    assert result.acceptance() == {
        "riskstream_vs_naive_at_least_10x": True,
        "riskstream_p99_within_budget_at_80pct": True,
    }
    page = markdown(result)
    assert "| riskstream-alo (80% check) | 800 |" in page
    assert "| naive | 1,000 | 1,000 | 2.0 | 5.0 | — |" in page
    paths = write_outputs(result, tmp_path / "out")
    assert json.loads(paths[0].read_text())["acceptance"]["riskstream_vs_naive_at_least_10x"] is True
    assert paths[2].read_bytes().startswith(b"\x89PNG")


def test_transaction_phases_are_means_over_the_point_with_events_per_transaction() -> None:
    before = {"send": (1.0, 100.0), "add_offsets": (2.0, 100.0), "acks": (0.5, 100.0), "end_txn": (0.4, 100.0)}
    after = {"send": (1.1, 150.0), "add_offsets": (2.5, 150.0), "acks": (0.75, 150.0), "end_txn": (0.6, 150.0)}
    means = _phase_means(before, after, events=300)
    assert means == {
        "send": 2.0,
        "add_offsets": 10.0,
        "acks": 5.0,
        "end_txn": 4.0,
        "steps": 50.0,
        "events_per_step": 6.0,
    }
    assert _phase_means(after, after, events=300) == {}  # no transaction in the point: no row
    assert _phase_means({}, {}, events=10) == {}  # at-least-once has no such histogram

    result = _result()
    eos = _point("riskstream-eos", 300, 40.0)
    result.points.append(dataclasses.replace(eos, transaction_phase_ms=means))
    page = markdown(result)
    assert "| riskstream-eos | 300 | 50 | 6.0 | 2.0 | 10.0 | 5.0 | 4.0 | 21.0 |" in page
    assert markdown(_result()).count("Exactly-once transaction steps") == 0


def test_acceptance_is_unknown_when_the_baseline_was_never_within_budget() -> None:
    result = _result()
    result.summaries["naive"] = SystemSummary("naive", None, lower_bound=False)
    assert result.comparisons()["riskstream-alo"]["vs_naive"] is None
    assert result.acceptance()["riskstream_vs_naive_at_least_10x"] is None


# -- end to end, on the real broker -------------------------------------------------------------


@pytest.mark.slow
def test_bench_harness_runs_a_tiny_sweep(
    kafka: Any, serving_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BOOTSTRAP_ENV, kafka.bootstrap_servers)
    systems = ("relay", "naive", "riskstream-alo")
    config = BenchConfig(
        out_dir=tmp_path,
        model=serving_model,
        loads=(20.0, 40.0),
        systems=systems,
        seconds=2.0,
        warmup_s=0.5,
        partitions=2,
        completion_timeout_s=10.0,
        command="pytest smoke",
    )
    result = run_bench(config, Console(file=io.StringIO()))

    data = json.loads((tmp_path / "bench.json").read_text())
    assert list(data["summary"]) == list(systems)
    assert set(data["systems"]) <= set(SYSTEMS)
    assert data["machine"]["usable_cpus"] >= 1 and data["model"]["preset"] == "tiny"
    for system in systems:
        points = [p for p in result.points if p.system == system and p.role == "sweep"]
        assert points, f"{system} measured nothing"
        first = points[0]
        assert first.events == 40  # 2 s at 20/s
        assert first.completed > 0 and first.latency.p50_ms is not None and first.latency.p50_ms > 0
        assert math.isfinite(first.throughput_per_s)
        assert first.cpu_us_per_event is not None and first.cpu_us_per_event > 0
    stages = result.points[-1].stage_cpu_us if result.points[-1].system == "riskstream-alo" else {}
    assert {"decode", "inference", "encode", "produce", "network_io", "producer_io"} <= set(stages), stages
    assert not result.failures
    check = result.summaries["riskstream-alo"].check
    assert (check is not None) == (result.summaries["riskstream-alo"].max_in_budget_per_s is not None)
    assert (tmp_path / "bench.md").read_text().startswith("# riskstream bench")
    assert (tmp_path / "p99_vs_load.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_demo_runs_end_to_end_and_accounts_for_every_event(
    kafka: Any, serving_model: Path, topic_factory: Callable[..., str]
) -> None:
    topics = {name: topic_factory(4, prefix=f"demo-{name}") for name in ("INPUT", "SCORES", "DEAD_LETTERS")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM_")}
    env.update({f"RISKSTREAM_TOPICS__{name}": topic for name, topic in topics.items()})
    env.update(
        {
            BOOTSTRAP_ENV: kafka.bootstrap_servers,
            "RISKSTREAM_GROUP_ID": f"demo-test-{uuid.uuid4().hex[:8]}",
            "COLUMNS": "200",  # one summary row per line, whatever the terminal
            "PYTHONWARNINGS": "ignore",
        }
    )
    run = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--duration", "10", "--rate", "200", "--model", str(serving_model)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert re.search(r"events in\s+2,000 in", output), output
    assert "none: every event has its outcome" in output, output
    assert "stopped cleanly" in output, output
