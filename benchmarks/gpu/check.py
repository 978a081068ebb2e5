"""The GPU check: one prepared run of what a CUDA device changes, in under 8 minutes.

``benchmarks/gpu/run.sh`` runs it. On a machine with CUDA it measures:

1. **engine** — events/s and batch latency per bucket up to 4096 for every variant the device runs
   (fp32, bf16, int8, and fp8 on compute capability >= 8.9), through ``inference.bench``;
2. **out of memory** — fills device memory with a hog until a big batch cannot fit, scores it, and
   records that the scorer split the batch instead of failing (``oom_splits``) and that the memory cap
   (``recommended_max_batch``) shrank; then frees the hog;
3. **backpressure** — a worker on a local (or ``KAFKA_BOOTSTRAP_SERVERS``) broker, a real memory hog
   taking free device memory below the headroom: the worker pauses for reason ``memory`` and resumes
   once the hog is freed, with every event scored;
4. **worker bench** — ``riskstream bench`` (at-least-once) at a few loads with 1 and N processes.

It writes ``OUT/gpu-check.json`` and ``OUT/gpu-check.md``. ``--dry-run`` runs every step at tiny scale
on whatever device there is (the CPU in CI): the OOM is then injected (``FaultInjection``) and the
memory hog simulated (``faults.memory_pressure``), which the report says. Without CUDA and without
``--dry-run`` it exits 2 at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


@dataclass
class Report:
    device: str
    dry_run: bool
    started: str
    steps: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu-check.json").write_text(json.dumps(self.__dict__, indent=2, default=str) + "\n")
        (out / "gpu-check.md").write_text(markdown(self))


def _step(report: Report, name: str) -> Callable[[Callable[[], dict[str, Any]]], None]:
    def run(body: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            result = body()
            result["seconds"] = round(time.monotonic() - started, 1)
            report.steps[name] = result
        except Exception as exc:  # one step failing must not lose the others' figures
            report.steps[name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": round(time.monotonic() - started, 1),
            }
        print(f"gpu-check: {name}: {json.dumps(report.steps[name], default=str)[:400]}", file=sys.stderr, flush=True)

    return run


def engine_step(model: Path, device: str, dry_run: bool) -> dict[str, Any]:
    from inference import run_engine_bench
    from inference.quantize import available_quantizations
    from inference.scorer import parse_device

    variants = list(available_quantizations(parse_device(device)))
    buckets = (1, 4, 16) if dry_run else (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    bench = run_engine_bench(
        model,
        variants=variants,
        buckets=buckets,
        seconds_per_point=0.05 if dry_run else 1.0,
        device=device,
        rounds=1 if dry_run else 2,
    )
    return bench.to_json()


def oom_step(model: Path, device: str, dry_run: bool) -> dict[str, Any]:
    import torch

    from inference import FaultInjection, MemoryProbe, Scorer, recommended_max_batch
    from inference.synthetic import generate

    simulated = not device.startswith("cuda")
    faults = FaultInjection(oom_probability=1.0, oom_min_batch=64) if simulated else None
    scorer = Scorer.load(model, device=device, max_batch=4096 if not dry_run else 256, faults=faults)
    warm = scorer.warm_up(max_seconds_per_bucket=0.05)
    per_item = max(bucket.bytes_per_item for bucket in warm.buckets)
    probe = MemoryProbe.for_device(scorer.device)
    features = [scorer.featurize(item.event) for item in generate(scorer.buckets[-1], seed=3)]
    before = probe.sample()
    cap_before = recommended_max_batch(before.free_bytes, 0, per_item, scorer.buckets, scorer.buckets[-1])
    hog: list[Any] = []
    if not simulated:
        # Leave room for about a tenth of the largest batch: it must split to fit.
        target = per_item * scorer.buckets[-1] // 10
        chunk = 256 << 20
        while probe.sample().free_bytes - chunk > target:
            hog.append(torch.empty(chunk, dtype=torch.uint8, device=device))
        while probe.sample().free_bytes - (8 << 20) > target:
            hog.append(torch.empty(8 << 20, dtype=torch.uint8, device=device))
    squeezed = probe.sample()
    cap_squeezed = recommended_max_batch(squeezed.free_bytes, 0, per_item, scorer.buckets, scorer.buckets[-1])
    result = scorer.score(features)
    hog.clear()
    if not simulated:
        torch.cuda.empty_cache()
    return {
        "simulated": simulated,
        "bytes_per_item": per_item,
        "free_bytes_before": before.free_bytes,
        "free_bytes_squeezed": squeezed.free_bytes,
        "batch_cap_before": cap_before,
        "batch_cap_squeezed": cap_squeezed,
        "batch": len(features),
        "oom_splits": result.oom_splits,
        "failed": len(result.failures),
        "scored": int(sum(1 for value in result.scores if value == value)),
    }


@contextmanager
def broker(dry_run: bool) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from worker.tools.kafka_local import LocalKafka

    local = LocalKafka(name="gpu-check", port=0)
    started = not local.is_running()
    bootstrap = local.start(timeout=300)
    try:
        yield bootstrap
    finally:
        if started:
            local.stop()


def backpressure_step(model: Path, device: str, bootstrap: str, dry_run: bool, log_dir: Path) -> dict[str, Any]:
    import threading

    from kafka import KafkaProducer

    from worker.settings import load_settings
    from worker.tools.kit import WorkerProcess, ensure_topics
    from worker.tools.produce import send_paced, synthetic_events

    tag = uuid.uuid4().hex[:8]
    topics = {"input": f"gpu-in-{tag}", "scores": f"gpu-out-{tag}", "dead_letters": f"gpu-dlq-{tag}"}
    settings = load_settings(kafka={"bootstrap_servers": bootstrap})
    ensure_topics(settings, {name: {} for name in topics.values()}, 2)
    simulated = not device.startswith("cuda")
    worker_settings: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": topics,
        "group_id": f"gpu-{tag}",
        "worker_id": f"gpu-{tag}",
        "model": {"dir": str(model), "device": device},
        "backpressure": {"memory_headroom": "512MiB", "probe_interval_ms": 50},
    }
    if simulated:  # no device memory to take away: the memory probe reports exhaustion for a window
        worker_settings["faults"] = {"memory_pressure_after_s": 3, "memory_pressure_for_s": 4}
    worker = WorkerProcess(worker_settings, log_dir / f"backpressure-{tag}.log")
    events = 600 if dry_run else 20_000
    rate = 100 if dry_run else 2000
    try:
        worker.wait_ready(300, assigned=True)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        sender = threading.Thread(
            target=send_paced,
            args=(producer, topics["input"], synthetic_events(events, seed=5)),
            kwargs={"count": events, "rate": rate},
            daemon=True,
        )
        sender.start()
        hog: list[Any] = []
        if not simulated:
            import torch

            time.sleep(2)
            free = torch.cuda.mem_get_info(torch.device(device))[0]
            headroom = 512 << 20
            while free > headroom // 2:
                take = min(free - headroom // 2, 1 << 30)
                hog.append(torch.empty(max(take, 1 << 20), dtype=torch.uint8, device=device))
                free = torch.cuda.mem_get_info(torch.device(device))[0]
            time.sleep(4)
            hog.clear()
            torch.cuda.empty_cache()
        sender.join(events / rate + 60)
        producer.close()
        deadline = time.monotonic() + 120
        done = 0.0
        while time.monotonic() < deadline:
            done = worker.metric("riskstream_events_scored_total") + worker.metric("riskstream_dead_letters_total")
            if done >= events:
                break
            time.sleep(0.5)
        pauses = {labels.get("reason"): value for labels, value in worker.samples("riskstream_pauses_total")}
        paused_s = worker.metric("riskstream_paused_seconds_total")
    finally:
        code = worker.stop()
    return {
        "simulated": simulated,
        "events": events,
        "outcomes": done,
        "pauses": pauses,
        "paused_seconds": round(paused_s, 2),
        "exit_code": code,
        "ok": done >= events and pauses.get("memory", 0) >= 1 and code == 0,
    }


def bench_step(model: Path, bootstrap: str, dry_run: bool, processes: int, out: Path) -> dict[str, Any]:
    from rich.console import Console

    from worker.tools.bench.harness import BenchConfig, run_bench

    results: dict[str, Any] = {}
    loads = (20.0, 40.0) if dry_run else (1000.0, 3000.0, 10000.0, 30000.0)
    for count in sorted({1, processes}):
        os.environ["RISKSTREAM_PROCESSES"] = str(count)
        os.environ["RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
        try:
            config = BenchConfig(
                out_dir=out / f"bench-{count}p",
                model=model,
                loads=loads,
                systems=("riskstream-alo",),
                seconds=2.0 if dry_run else 8.0,
                warmup_s=0.5 if dry_run else 2.0,
                partitions=max(2, 2 * count),
                completion_timeout_s=10.0,
                command=f"gpu-check bench, {count} processes",
            )
            result = run_bench(config, Console(file=sys.stderr))
        finally:
            os.environ.pop("RISKSTREAM_PROCESSES", None)
        summary = result.summaries.get("riskstream-alo")
        results[f"{count}_processes"] = {
            "max_in_budget_per_s": summary.max_in_budget_per_s if summary else None,
            "points": [point.to_json() for point in result.points],
            "failures": result.failures,
        }
    return results


def markdown(report: Report) -> str:
    lines = [f"# GPU check, {report.started}", "", f"Device: {report.device}; dry run: {report.dry_run}.", ""]
    engine = report.steps.get("engine", {})
    if engine.get("points"):
        lines += ["| variant | batch | events/s | p50 batch ms | p95 batch ms |", "|---|--:|--:|--:|--:|"]
        for point in engine["points"]:
            lines.append(
                f"| {point['variant']} | {point['batch_size']} | {point['events_per_s']:,.0f} | "
                f"{point['p50_batch_ms']} | {point['p95_batch_ms']} |"
            )
        lines.append("")
    for variant, best in (engine.get("best") or {}).items():
        lines.append(f"- engine {variant}: best {best['events_per_s']:,.0f} events/s at batch {best['batch_size']}")
    for name in ("oom", "backpressure"):
        if name in report.steps:
            lines.append(f"- {name}: `{json.dumps(report.steps[name], default=str)}`")
    bench = report.steps.get("bench", {})
    for key, data in bench.items():
        if isinstance(data, dict):
            lines.append(
                f"- worker bench, {key.replace('_', ' ')}: highest in-budget load {data.get('max_in_budget_per_s')}"
            )
    lines += ["", *[f"- note: {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny scale on any device (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "gpu")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: train the tiny/default preset)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes for the N-process bench")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip: engine,oom,backpressure,bench")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("gpu-check: no CUDA device here; run with --dry-run to check the script itself", file=sys.stderr)
        return 2
    device = "cuda:0" if cuda else "cpu"
    report = Report(
        device=torch.cuda.get_device_name(0) if cuda else "cpu",
        dry_run=args.dry_run,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if not cuda:
        report.notes.append("no CUDA: the out-of-memory is injected and the memory hog simulated")
    model = args.model
    if model is None:
        from inference.train import train

        model = args.out / "model"
        if not (model / "riskstream.json").is_file():
            preset = "tiny" if args.dry_run else "default"
            train(model, preset=preset, events=2_000 if args.dry_run else None, max_epochs=1 if args.dry_run else None)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    if "engine" not in skip:
        _step(report, "engine")(lambda: engine_step(model, device, args.dry_run))
    if "oom" not in skip:
        _step(report, "oom")(lambda: oom_step(model, device, args.dry_run))
    if not {"backpressure", "bench"} <= skip:
        try:
            with broker(args.dry_run) as bootstrap:
                if "backpressure" not in skip:
                    _step(report, "backpressure")(
                        lambda: backpressure_step(model, device, bootstrap, args.dry_run, args.out)
                    )
                if "bench" not in skip:
                    _step(report, "bench")(lambda: bench_step(model, bootstrap, args.dry_run, args.processes, args.out))
        except Exception as exc:  # no broker here (no Java, no jars): the engine figures still count
            report.notes.append(f"no broker: {type(exc).__name__}: {exc}")
    report.write(args.out)
    print(str(args.out / "gpu-check.json"))
    failed = [name for name, step in report.steps.items() if "error" in step or step.get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
