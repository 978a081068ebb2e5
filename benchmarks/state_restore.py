"""How fast a partition's account state restores: 1M accounts in one changelog partition.

Fills a compacted changelog partition with ``--accounts`` realistic account states (serialized
:class:`inference.history.AccountHistory`, about 1.1 KB each, zstd on the wire), starts a real worker
serving a history model on that partition with an empty local store, and measures:

* the full restore (changelog -> LMDB): records, seconds, records/s (the worker's own log line);
* that the worker answers ``/healthz`` and ``/readyz`` while restoring (``/readyz`` says "restoring");
* the restart on the same store: only the changelog's tail is read;
* the worker's resident memory after the restore.

Run: ``.venv/bin/python benchmarks/state_restore.py [--accounts 1000000]`` with
``KAFKA_BOOTSTRAP_SERVERS`` set, or without it to start a local broker (``ops/kafka``). Nothing else
should be running; the load average is printed. Figures are in ``docs/state.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from inference.history import AccountHistory
from inference.synthetic import generate
from worker.settings import load_settings
from worker.state import OFFSET_HEADER
from worker.tools.kit import BOOTSTRAP_ENV, WorkerProcess, broker_for, ensure_topics


def history_model(cache: Path) -> Path:
    target = cache / "tiny-sequence"
    if not (target / "riskstream.json").exists():
        from inference.train import train

        train(target, preset="tiny-sequence", seed=0)
    return target


def fill(bootstrap: str, topic: str, accounts: int) -> float:
    events = [labelled.event for labelled in generate(4_000, seed=7)]
    values = []
    for index in range(2_000):
        history = AccountHistory(32)
        for event in events[index % 3_000 : index % 3_000 + 8 + index % 40]:
            history.observe(event)
        values.append(history.to_bytes())
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, compression_type="zstd", linger_ms=20, batch_size=1 << 20, acks=1
    )
    started = time.perf_counter()
    for index in range(accounts):
        producer.send(
            topic,
            key=f"acct-{index:010x}".encode(),
            value=values[index % len(values)],
            headers=[(OFFSET_HEADER, str(index).encode())],
            partition=0,
        )
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def probe(worker: WorkerProcess, seen: dict[str, Any], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            health, _ = worker.get("/healthz", timeout=1.0)
            ready, body = worker.get("/readyz", timeout=1.0)
        except OSError:
            time.sleep(0.2)
            continue
        seen["probes"] = seen.get("probes", 0) + 1
        seen["healthy"] = seen.get("healthy", 0) + (health == 200)
        if "restoring" in body:
            seen["restoring"] = seen.get("restoring", 0) + 1
            seen["restoring_status"] = ready
        time.sleep(0.2)


def restore_line(log: Path) -> dict[str, Any]:
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"state restored"' in line:
            return dict(json.loads(line))
    raise RuntimeError(f"no 'state restored' line in {log}")


def run_worker(settings: dict[str, Any], log: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    worker = WorkerProcess(settings, log)
    seen: dict[str, Any] = {}
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(worker, seen, stop), daemon=True)
    prober.start()
    try:
        worker.wait_ready(timeout_s=900, assigned=True)
        memory = rss_mb(worker.process.pid)
    finally:
        stop.set()
        prober.join(5)
        code = worker.stop()
    if code != 0:
        raise RuntimeError(f"worker exited with {code}: {worker.tail()}")
    return restore_line(log), seen, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="riskstream-restore-"))
    model = history_model(Path.home() / ".cache" / "riskstream" / "bench-models")
    base = load_settings()
    with broker_for(base, configured=BOOTSTRAP_ENV in os.environ, instance="bench-restore") as settings:
        bootstrap = settings.kafka.bootstrap_servers
        name = f"restore-{uuid.uuid4().hex[:8]}"
        topics = {"input": name, "scores": f"{name}.scores", "dead_letters": f"{name}.dlq"}
        ensure_topics(settings, {topic: {} for topic in topics.values()}, 1)
        ensure_topics(settings, {f"{name}.state": {"cleanup.policy": "compact"}}, 1)
        print(f"load average before={os.getloadavg()[0]:.2f}")
        filled_s = fill(bootstrap, f"{name}.state", args.accounts)
        print(f"changelog filled: {args.accounts:,} records in {filled_s:.1f}s")
        worker_settings = {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": topics,
            "group_id": name,
            "worker_id": "restore-0",
            "model": {"dir": str(model), "device": "cpu"},
            "state": {"dir": str(root / "state")},
        }
        first, seen, memory = run_worker(worker_settings, root / "first.log")
        print(
            f"full restore: {first['records']:,} records in {first['seconds']:.1f}s "
            f"= {first['records_per_s']:,} records/s; "
            f"probes answered {seen.get('probes', 0)} (healthz 200: {seen.get('healthy', 0)}), "
            f"readyz said restoring {seen.get('restoring', 0)} times (HTTP {seen.get('restoring_status')}); "
            f"worker RSS {memory:.0f} MB"
        )
        again, _seen, _memory = run_worker(worker_settings, root / "again.log")
        print(
            f"restart on the same store: {again['records']:,} records from offset {again['from_offset']:,} "
            f"in {again['seconds']:.2f}s"
        )
        store_bytes = sum(path.stat().st_size for path in (root / "state").rglob("*") if path.is_file())
        print(f"local store on disk: {store_bytes / 1e6:.0f} MB ({store_bytes / max(1, args.accounts):.0f} B/account)")
    print(f"load average after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
