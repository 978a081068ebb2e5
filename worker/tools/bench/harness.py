"""The end-to-end benchmark harness: every system on one broker, over a sweep of offered loads.

Method (what the numbers mean):

* Each system under test runs as its own OS process with its own input and output topics
  (``partitions`` partitions each; the output topic uses ``LogAppendTime``), consumer group and
  log file under ``OUT/logs``. Systems run one after the other, each over the loads in ascending
  order, in one process per system (fresh topics and a fresh process again only if a point left a
  backlog behind).
* Per point, a load-generator process (``python -m worker.tools.bench load``) sends ``load`` events/s,
  open loop, for ``warmup_s`` and then for the ``seconds`` of the measurement window. Events carry
  the send time in ``event_time`` (and in their CreateTime).
* A consumer in the harness reads the output topic (``read_committed``) and records, per
  transaction id, the event time, the output's LogAppendTime and the time it was read.
  Latency = LogAppendTime minus event time. An event of the window whose output has not appeared
  ``completion_timeout_s`` after the generator finished counts as infinitely late.
* A point is *within budget* when its p99 is at most the budget, the outputs kept up with the
  offered load (≥ 95%), and the generator really offered it (≥ 95%). A system's sweep stops after
  a point whose p99 exceeds ``stop_factor`` times the budget, that left a backlog, or where the generator
  fell behind: higher loads can only be worse.
* A system already over budget at the lowest load is measured at half of it, and so on down to
  an eighth, so that its highest in-budget load is a number rather than "below the sweep".
* For riskstream, a ``check`` point at 80% of its highest in-budget load is measured explicitly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from worker.costs import stat_cpu_seconds
from worker.errors import WorkerError
from worker.guarantee import AtLeastOnce, ExactlyOnce
from worker.kafka_clients import build_admin, connection_config
from worker.settings import Settings, load_settings
from worker.tools.bench.report import (
    BenchResult,
    LatencyStats,
    PointResult,
    SystemSummary,
    machine_info,
    rate_text,
    write_outputs,
)
from worker.tools.demo import ensure_model
from worker.tools.kit import (
    BOOTSTRAP_ENV,
    Outcome,
    OutcomeCollector,
    WorkerProcess,
    bootstrap_configured,
    broker_for,
    ensure_topics,
    read_committed_consumer,
    settings_env,
)

SYSTEMS = ("relay", "naive", "riskstream-alo", "riskstream-eos")
# Dense where the naive baseline gives out (its limit sets the headline ratio), then roughly x1.5 per step.
DEFAULT_LOADS = (50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 8000.0)
KEEP_UP_SHARE = 0.95
_RELAY_LIMIT_PER_S = 200_000.0  # beyond any load generator on one machine
CHECK_SHARE = 0.8
_READY_TIMEOUT_S = 180.0
_STOP_TIMEOUT_S = 60.0
_LOAD_SLACK_S = 120.0  # generating the events up front, process start-up, the final flush


def process_tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of ``pid`` and of its live descendants; None when ``pid`` is gone.

    Read from ``/proc/PID/stat`` and ``/proc/PID/task/TID/children``; a descendant that exits
    between the reads is skipped (its time is lost, so read at quiet moments).
    """
    own = stat_cpu_seconds(f"/proc/{pid}/stat")
    if own is None:
        return None
    return own + sum(stat_cpu_seconds(f"/proc/{child}/stat") or 0.0 for child in _descendants(pid))


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            pending += children
    return found


class BenchError(WorkerError):
    """The benchmark could not run (a system would not start, a helper process failed)."""


@dataclass(frozen=True)
class BenchConfig:
    out_dir: Path
    model: Path | None = None
    """Checkpoint for the naive baseline and riskstream (default: the cached default model)."""
    loads: tuple[float, ...] = DEFAULT_LOADS
    systems: tuple[str, ...] = SYSTEMS
    seconds: float = 10.0
    """Measurement window per point."""
    warmup_s: float = 3.0
    partitions: int = 4
    stop_factor: float = 4.0
    completion_timeout_s: float = 15.0
    config_file: Path | None = None
    command: str = ""
    """How the run was started, for the report."""

    def __post_init__(self) -> None:
        if not self.loads or min(self.loads) <= 0:
            raise ValueError("loads must be positive events/s")
        if list(self.loads) != sorted(set(self.loads)):
            raise ValueError("loads must be strictly increasing")
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown or not self.systems:
            raise ValueError(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
        if self.seconds <= 0 or self.warmup_s < 0 or self.partitions < 1 or self.stop_factor < 1:
            raise ValueError("seconds and partitions must be positive, warm-up >= 0, stop factor >= 1")


# -- the measuring consumer ---------------------------------------------------------------------


class _Collector:
    """Reads one output topic from the beginning on a thread (:class:`~worker.tools.kit.OutcomeCollector`:
    the first output per transaction id counts)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = read_committed_consumer(connection_config(settings.kafka), [topic], fetch_max_wait_ms=5)
        self._outcomes = OutcomeCollector(topic)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                polled = self._consumer.poll(timeout_ms=50)
                read_ms = time.time() * 1000.0
                with self.lock:
                    for records in polled.values():
                        for record in records:
                            self._outcomes.add(record, read_ms)
        except BaseException as exc:  # reported by the session
            self.failure = exc

    @property
    def outputs(self) -> dict[str, Outcome]:
        return self._outcomes.scores

    @property
    def duplicates(self) -> int:
        return self._outcomes.duplicates

    def snapshot(self) -> dict[str, Outcome]:
        with self.lock:
            return dict(self._outcomes.scores)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close(autocommit=False)


# -- one system under test ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    config: BenchConfig
    settings: Settings
    env: dict[str, str]
    """Environment for every child process (the user's RISKSTREAM_* settings pass through)."""
    model_dir: Path
    budget_ms: float
    logs: Path
    console: Console


class _Session:
    """One system's process, topics and measuring consumer."""

    _seeds = itertools.count(1)

    def __init__(self, system: str, ctx: _Context) -> None:
        self.system = system
        self.ctx = ctx
        tag = uuid.uuid4().hex[:8]
        self.name = f"{system}-{tag}"
        self.input = f"bench-{self.name}-in"
        self.output = f"bench-{self.name}-out"
        self.dead_letters = f"bench-{self.name}-dlq"
        self.sent = 0
        appended = {"message.timestamp.type": "LogAppendTime"}
        self._topics = {self.input: {}, self.output: appended, self.dead_letters: appended}
        self._log = (ctx.logs / f"{self.name}.log").open("ab")
        self._ready_file = ctx.logs / f"{self.name}.ready"
        self.worker: WorkerProcess | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.collector: _Collector | None = None
        try:
            ensure_topics(ctx.settings, self._topics, ctx.config.partitions)
            self.process = self._start()
            self._wait_ready()
            self.collector = _Collector(ctx.settings, self.output)
        except BaseException:
            self.close()
            raise

    def _start(self) -> subprocess.Popen[bytes]:
        ctx = self.ctx
        guarantee = (ExactlyOnce if self.system == "riskstream-eos" else AtLeastOnce).name
        settings: dict[str, Any] = {
            "group_id": f"bench-{self.name}",
            "worker_id": f"bench-{self.name}",
            "model": {"dir": str(ctx.model_dir)},
            "guarantee": guarantee,
            "topics": {"input": self.input, "scores": self.output, "dead_letters": self.dead_letters},
        }
        if self.system.startswith("riskstream"):
            self.worker = WorkerProcess(
                settings,
                Path(self._log.name),
                config_file=ctx.config.config_file,
                inherit_settings=True,
                extra_env={k: v for k, v in ctx.env.items() if os.environ.get(k) != v},  # the local broker's
            )
            return self.worker.process
        config = ["--config", str(ctx.config.config_file)] if ctx.config.config_file else []
        command = [
            *(sys.executable, "-m", "worker.tools.bench", *config, self.system),
            *("--input", self.input, "--output", self.output, "--ready-file", str(self._ready_file)),
        ]
        env = {**ctx.env, **settings_env({k: v for k, v in settings.items() if k != "topics"})}
        # Our own interpreter and modules with arguments we built: nothing here comes from a shell.
        return subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603

    def _is_ready(self) -> bool:
        if self.worker is None:
            return self._ready_file.exists()
        return self.worker.ready(assigned=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self._is_ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.system} was not ready after {_READY_TIMEOUT_S:.0f}s; see {self._log.name}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise BenchError(f"{self.system} exited with {self.process.returncode}; see {self._log.name}")
        if self.collector is not None and self.collector.failure is not None:
            raise BenchError(f"reading {self.output} failed: {self.collector.failure!r}")

    def batch_size_totals(self) -> tuple[float, float] | None:
        """riskstream's (sum, count) of scored batch sizes so far, from its /metrics."""
        if self.worker is None:
            return None
        try:
            return self.worker.metric("riskstream_batch_size_sum"), self.worker.metric("riskstream_batch_size_count")
        except OSError:
            return None

    def _cpu_seconds(self) -> float | None:
        """CPU time (user + system, all threads) of the system's process and its live children so far.

        With ``--processes N`` the scoring happens in the supervisor's children, so they count too.
        """
        if self.process is None:
            return None
        return process_tree_cpu_seconds(self.process.pid)

    def _stage_seconds(self) -> dict[str, float]:
        """riskstream's CPU seconds per stage so far, summed over its processes (empty for the other systems)."""
        if self.worker is None:
            return {}
        try:
            samples = self.worker.samples("riskstream_stage_cpu_seconds_total")
        except OSError:
            return {}
        totals: dict[str, float] = {}
        for labels, value in samples:  # one sample per stage and ``process`` label
            totals[labels["stage"]] = totals.get(labels["stage"], 0.0) + value
        return totals

    def _phase_totals(self) -> dict[str, tuple[float, float]]:
        """Exactly-once: (seconds, count) per transaction phase so far, summed over riskstream's processes."""
        if self.worker is None:
            return {}
        try:
            sums = self.worker.samples("riskstream_transaction_phase_seconds_sum")
            counts = self.worker.samples("riskstream_transaction_phase_seconds_count")
        except OSError:
            return {}
        count_of = {tuple(sorted(labels.items())): count for labels, count in counts}
        totals: dict[str, tuple[float, float]] = {}
        for labels, total in sums:  # one sample per phase and ``process`` label
            seconds, n = totals.get(labels["phase"], (0.0, 0.0))
            totals[labels["phase"]] = (seconds + total, n + count_of.get(tuple(sorted(labels.items())), 0.0))
        return totals

    def drained(self) -> bool:
        """Every event sent in this session has its output."""
        assert self.collector is not None
        return len(self.collector.outputs) >= self.sent

    def run_point(self, load: float, role: str) -> PointResult:
        """Offer ``load`` events/s and measure; see the module docstring."""
        collector, budget_ms = self.collector, self.ctx.budget_ms
        assert collector is not None
        batches_before = self.batch_size_totals()
        duplicates_before = collector.duplicates
        cpu_before, stages_before, sent_before = self._cpu_seconds(), self._stage_seconds(), self.sent
        phases_before = self._phase_totals()
        sent = self._offer(load, role)
        window: list[str] = sent["window_ids"]
        self._await_outputs(window)

        events = max(1, self.sent - sent_before)
        cpu_after, stages_after = self._cpu_seconds(), self._stage_seconds()
        phase_ms = _phase_means(phases_before, self._phase_totals(), events)
        cpu_us = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / events * 1e6
        stage_us = {
            stage: (stages_after[stage] - stages_before.get(stage, 0.0)) / events * 1e6 for stage in stages_after
        }
        snapshot = collector.snapshot()
        outputs = [snapshot.get(tid) for tid in window]
        done = [o for o in outputs if o is not None]
        unfinished = np.full(len(outputs) - len(done), np.inf)  # later than any deadline we waited for
        latency = np.concatenate([np.array([o.written_ms - o.event_ms for o in done]), unfinished])
        visible = np.concatenate([np.array([o.read_ms - o.event_ms for o in done]), unfinished])
        start_ms, end_ms = float(sent["window_start_ms"]), float(sent["window_end_ms"])
        appended = sum(1 for o in snapshot.values() if start_ms <= o.written_ms <= end_ms)
        throughput = appended / max(1e-3, (end_ms - start_ms) / 1000.0)
        generator_rate = float(sent["generator_per_s"])
        stats = LatencyStats.of(latency, budget_ms)
        notes = []
        if generator_rate < KEEP_UP_SHARE * load:
            notes.append("load generator fell behind")
        if throughput < KEEP_UP_SHARE * load:
            notes.append("output fell behind")
        if not self.drained():
            notes.append("backlog left")
        in_budget = (
            stats.p99_ms is not None
            and stats.p99_ms <= budget_ms
            and generator_rate >= KEEP_UP_SHARE * load
            and throughput >= KEEP_UP_SHARE * load
        )
        batches_after = self.batch_size_totals()
        mean_batch = None
        if batches_before is not None and batches_after is not None and batches_after[1] > batches_before[1]:
            mean_batch = (batches_after[0] - batches_before[0]) / (batches_after[1] - batches_before[1])
        return PointResult(
            system=self.system,
            role=role,
            offered_per_s=load,
            generator_per_s=generator_rate,
            throughput_per_s=throughput,
            events=len(window),
            completed=len(done),
            duplicates=collector.duplicates - duplicates_before,
            latency=stats,
            visible=LatencyStats.of(visible, budget_ms),
            in_budget=in_budget,
            mean_batch=1.0 if self.system == "naive" else mean_batch,
            load_average=round(os.getloadavg()[0], 2),
            cpu_us_per_event=None if cpu_us is None else round(cpu_us, 1),
            stage_cpu_us={stage: round(us, 1) for stage, us in stage_us.items()},
            transaction_phase_ms=phase_ms,
            note="; ".join(notes),
        )

    def _offer(self, load: float, role: str) -> dict[str, Any]:
        """Run the load generator for one point; returns its report (window ids, times, rate)."""
        ctx = self.ctx
        report_path = ctx.logs / f"{self.name}-{role}-{load:g}.load.json"
        config = ["--config", str(ctx.config.config_file)] if ctx.config.config_file else []
        command = [
            *(sys.executable, "-m", "worker.tools.bench", *config, "load", "--topic", self.input),
            *("--rate", f"{load:g}", "--warmup", f"{ctx.config.warmup_s:g}", "--seconds", f"{ctx.config.seconds:g}"),
            *("--seed", str(next(self._seeds)), "--report", str(report_path)),
        ]
        generator = subprocess.Popen(command, env=ctx.env, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + ctx.config.warmup_s + ctx.config.seconds + _LOAD_SLACK_S
        try:
            while generator.poll() is None:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"the load generator for {self.system} did not finish; see {self._log.name}")
                time.sleep(0.1)
        finally:
            if generator.poll() is None:
                generator.kill()
                generator.wait()
        if generator.returncode != 0:
            raise BenchError(f"the load generator failed ({generator.returncode}); see {self._log.name}")
        sent: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
        # Keep the report on disk small: the ids are only needed here.
        report_path.write_text(json.dumps({k: v for k, v in sent.items() if k != "window_ids"}), encoding="utf-8")
        self.sent += int(sent["sent"])
        return sent

    def _await_outputs(self, window: list[str]) -> None:
        """Until every event of ``window`` (and of the session) has its output, or the completion timeout."""
        collector = self.collector
        assert collector is not None
        missing = set(window)
        deadline = time.monotonic() + self.ctx.config.completion_timeout_s
        while True:
            missing = {tid for tid in missing if tid not in collector.outputs}
            if (not missing and self.drained()) or time.monotonic() > deadline:
                return
            self._check_alive()
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL), the consumer, and delete the topics (best effort)."""
        if self.worker is not None:
            self.worker.stop(_STOP_TIMEOUT_S)
        elif self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.collector is not None:
            self.collector.close()
        self._log.close()
        with contextlib.suppress(Exception):  # a leftover benchmark topic is harmless
            admin = build_admin(self.ctx.settings)
            try:
                admin.delete_topics(list(self._topics))
            finally:
                admin.close()


# -- the sweep ----------------------------------------------------------------------------------


def _phase_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], events: int
) -> dict[str, float]:
    """Mean milliseconds per transaction phase between two totals, with ``steps`` and ``events_per_step``."""
    means: dict[str, float] = {}
    steps = 0.0
    for phase, (seconds, count) in after.items():
        seconds_before, count_before = before.get(phase, (0.0, 0.0))
        if count > count_before:
            means[phase] = round((seconds - seconds_before) / (count - count_before) * 1000.0, 2)
            steps = max(steps, count - count_before)
    if not steps:
        return {}
    return {**means, "steps": steps, "events_per_step": round(events / steps, 2)}


def _print_point(console: Console, point: PointResult) -> None:
    def ms(value: float | None) -> str:
        return f"{value:8.1f}" if value is not None else "       —"

    mark = "[green]within budget[/green]" if point.in_budget else "[red]over budget[/red]"
    role = " (80% check)" if point.role == "check" else ""
    details = [f"batch {point.mean_batch:.1f}"] if point.mean_batch is not None else []
    details += [point.note] if point.note else []
    console.print(
        f"  {point.system:15} {rate_text(point.offered_per_s):>7}/s → {rate_text(point.throughput_per_s):>7}/s  "
        f"p50 {ms(point.latency.p50_ms)}  p99 {ms(point.latency.p99_ms)} ms  {mark}{role}"
        + (f"  [dim]{'; '.join(details)}[/dim]" if details else "")
    )


def _should_stop(point: PointResult, session: _Session, ctx: _Context) -> bool:
    p99 = point.latency.p99_ms
    far_over = p99 is None or p99 > ctx.config.stop_factor * ctx.budget_ms
    generator_behind = point.generator_per_s < KEEP_UP_SHARE * point.offered_per_s
    return (not point.in_budget and far_over) or generator_behind or not session.drained()


def _limit_not_reached(best: float | None, last: PointResult | None, ctx: _Context) -> bool:
    """The system's limit lies above ``best``: the sweep ran out of loads, or out of load generator
    while the system was still within budget."""
    if best is None or last is None:
        return False
    generator_behind = last.generator_per_s < KEEP_UP_SHARE * last.offered_per_s
    still_fast = last.latency.p99_ms is not None and last.latency.p99_ms <= ctx.budget_ms
    return (best >= ctx.config.loads[-1] and last.in_budget) or (generator_behind and still_fast)


class _Runner:
    """Measures one system's points, each on a clean session: a fresh one after a backlog."""

    def __init__(self, system: str, ctx: _Context, result: BenchResult) -> None:
        self.system, self.ctx, self.result = system, ctx, result
        with ctx.console.status(f"starting {system}"):
            self.session = _Session(system, ctx)

    def measure(self, load: float, role: str) -> PointResult:
        ctx = self.ctx
        if not self.session.drained():
            self.session.close()
            with ctx.console.status(f"restarting {self.system} on fresh topics"):
                self.session = _Session(self.system, ctx)
        what = "80% of its highest in-budget load" if role == "check" else f"{ctx.config.warmup_s:g}s warm-up"
        with ctx.console.status(f"{self.system} at {rate_text(load)}/s ({what}, {ctx.config.seconds:g}s measured)"):
            point = self.session.run_point(load, role)
        self.result.points.append(point)
        _print_point(ctx.console, point)
        return point

    def close(self) -> None:
        self.session.close()


def _sweep(system: str, ctx: _Context, result: BenchResult) -> None:
    ctx.console.print(f"[bold]{system}[/bold]")
    runner = _Runner(system, ctx, result)
    try:
        loads = ctx.config.loads
        best: float | None = None
        last: PointResult | None = None
        for load in loads:
            last = runner.measure(load, "sweep")
            if last.in_budget:
                best = load
            if _should_stop(last, runner.session, ctx):
                break
        # The relay is the ceiling the others are compared with: find it, do not assume it. While it is
        # still within budget at the highest load asked for, go on up (x1.5) until it is not.
        load = loads[-1]
        while system == "relay" and last is not None and last.in_budget and load < _RELAY_LIMIT_PER_S:
            load = round(load * 1.5, -1)
            last = runner.measure(load, "sweep")
            if last.in_budget:
                best = load
            if _should_stop(last, runner.session, ctx):
                break
        lower_bound = _limit_not_reached(best, last, ctx)
        # Over budget already at the lowest load: halve it (down to an eighth) to find where it copes.
        load = loads[0]
        while best is None and load / 2 >= loads[0] / 8:
            load = round(load / 2, 1)
            if runner.measure(load, "sweep").in_budget:
                best = load
        summary = SystemSummary(system, best, lower_bound=lower_bound)
        if system.startswith("riskstream") and best is not None:
            summary = replace(summary, check=runner.measure(round(CHECK_SHARE * best, 1), "check"))
        result.summaries[system] = summary
    finally:
        runner.close()


def _model_record(model_dir: Path, settings: Settings) -> dict[str, Any]:
    from inference.checkpoint import read_metadata
    from worker.engine import resolve_device

    metadata = read_metadata(model_dir)
    device_type = resolve_device(settings.model.device).split(":")[0]
    training = metadata.training
    preset = training.get("preset")
    return {
        "dir": str(model_dir),
        "name": metadata.name,
        "version": metadata.version,
        "preset": preset.get("name") if isinstance(preset, dict) else preset,
        "parameters": training.get("parameters"),
        "quantization": settings.model.quantization or metadata.default_quantization.get(device_type),
        "device": device_type,
        "threads": settings.model.threads,
    }


def run_bench(config: BenchConfig, console: Console | None = None) -> BenchResult:
    """Run the benchmark; write ``bench.json``, ``bench.md`` and ``p99_vs_load.png`` to
    ``config.out_dir`` after every system (so an interrupted run keeps what it measured).

    A system that fails (does not start, dies) is recorded in ``failures`` and the run goes on.
    Raises ``WorkerError`` (``ConfigError``, ``DemoError``, ...) when nothing can be measured.
    """
    console = console or Console()
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("riskstream bench draws its plot with matplotlib: pip install 'riskstream[bench]'")
    settings = load_settings(config.config_file)
    model_dir = ensure_model(config.model, settings.model.dir, console)
    configured = bootstrap_configured(config.config_file)
    logs = config.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with broker_for(settings, configured=configured, instance="bench", status=console.status) as settings:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if not configured:
            env[BOOTSTRAP_ENV] = settings.kafka.bootstrap_servers
            env["RISKSTREAM_KAFKA__SECURITY_PROTOCOL"] = "PLAINTEXT"
        budget_ms = settings.batching.latency_budget_ms
        result = BenchResult(
            command=config.command or shlex.join(["riskstream", *sys.argv[1:]]),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            seconds=0.0,
            budget_ms=budget_ms,
            settings={
                "loads": list(config.loads),
                "systems": list(config.systems),
                "seconds": config.seconds,
                "warmup_s": config.warmup_s,
                "partitions": config.partitions,
                "stop_factor": config.stop_factor,
                "completion_timeout_s": config.completion_timeout_s,
                "kafka_version": None if configured else _local_kafka_version(),
                "riskstream": {
                    "batching": settings.batching.model_dump(mode="json"),
                    "backpressure": settings.backpressure.model_dump(mode="json"),
                    "consumer": settings.consumer.model_dump(mode="json"),
                },
            },
            machine=machine_info(),
            model=_model_record(model_dir, settings),
        )
        ctx = _Context(config, settings, env, model_dir, budget_ms, logs, console)
        for system in config.systems:
            try:
                _sweep(system, ctx, result)
            except BenchError as exc:  # the other systems can still be measured
                console.print(f"  [red]{system} failed:[/red] {exc}")
                result.failures[system] = str(exc)
            result.seconds = time.monotonic() - started
            write_outputs(result, config.out_dir)
    _print_comparisons(result, console)
    return result


def _local_kafka_version() -> str:
    from worker.tools.kafka_local import KAFKA_VERSION

    return KAFKA_VERSION


def _print_comparisons(result: BenchResult, console: Console) -> None:
    for name, summary in result.summaries.items():
        best = summary.max_in_budget_per_s
        text = "never" if best is None else f"{rate_text(best)}/s" + (" (highest tried)" if summary.lower_bound else "")
        console.print(f"  {name:15} highest load within budget: {text}")

    def figure(value: float | None, unit: str) -> str:
        return "n/a" if value is None else f"{value:g}{unit}"

    for system, c in result.comparisons().items():
        console.print(
            f"  {system}: {figure(c['vs_naive'], 'x')} the naive baseline, {figure(c['vs_relay'], 'x')} the relay "
            f"ceiling; p99 at 80% of its highest in-budget load: {figure(c['p99_ms_at_80pct'], ' ms')}"
        )


def engine_bench(model: Path | None, *, variants: list[str], as_json: bool, config_file: Path | None) -> None:
    """``riskstream bench --engine``: the scoring engine alone (``inference.bench``), on the worker's device.

    Progress goes to stderr; the table (or JSON) to stdout.
    """
    from inference import InferenceError, print_engine_bench, run_engine_bench
    from worker.engine import resolve_device

    console = Console(stderr=True)
    settings = load_settings(config_file)
    model_dir = ensure_model(model, settings.model.dir, console)
    device = resolve_device(settings.model.device)
    try:
        with console.status("bench: loading") as status:
            report = run_engine_bench(
                model_dir,
                variants=variants,
                device=device,
                threads=settings.model.threads,
                on_point=lambda variant, size: status.update(f"bench: {variant} @ {size}"),
            )
    except (InferenceError, ValueError) as exc:
        raise BenchError(f"engine benchmark failed: {exc}") from exc
    print_engine_bench(report, as_json=as_json)
