"""The launcher's command line: ``python ops/kafka/kafka_local.py start|stop|status|fetch-jars``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from worker.tools.kafka_local.base import KafkaLocalError
from worker.tools.kafka_local.jars import KAFKA_VERSION, ensure_jars
from worker.tools.kafka_local.process import (
    DEFAULT_NAME,
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    SECURITY_CHOICES,
    LocalKafka,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafka_local.py",
        description=f"Local single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) on 127.0.0.1.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default=DEFAULT_NAME, help="instance name (default: %(default)s)")
        p.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="instance directory (default: <checkout>/.kafka-local/<name>)",
        )

    start = sub.add_parser("start", help="start (or reuse) the broker; prints only its bootstrap address")
    common(start)
    start.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"client port; 0 = free ports (default: the instance's port, {DEFAULT_PORT} for a new one)",
    )
    start.add_argument("--security", choices=SECURITY_CHOICES, default="plaintext")
    start.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT_S, help="seconds (default: %(default)s)")

    stop = sub.add_parser("stop", help="stop the broker by its recorded pid (SIGTERM, then SIGKILL)")
    common(stop)
    stop.add_argument("--kill", action="store_true", help="SIGKILL at once (simulated crash)")
    stop.add_argument("--timeout", type=float, default=DEFAULT_STOP_TIMEOUT_S, help="seconds (default: %(default)s)")

    status = sub.add_parser("status", help="print running/stopped and the bootstrap address")
    common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("fetch-jars", help="fetch the broker jars into the cache and print their directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # kafka-python warns on stderr while it retries; keep the CLI's stderr for our own messages.
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    logging.getLogger("kafka").propagate = False
    try:
        if args.command == "fetch-jars":
            print(ensure_jars())
            return 0
        if args.command == "start":
            instance = LocalKafka(name=args.name, port=args.port, security=args.security, state_dir=args.state_dir)
            print(instance.start(timeout=args.timeout), flush=True)
            return 0
        instance = LocalKafka(name=args.name, state_dir=args.state_dir)
        if args.command == "stop":
            stopped = instance.stop(kill=args.kill, timeout=args.timeout)
            outcome = ("killed" if args.kill else "stopped") if stopped else "not running"
            print(f"{args.name}: {outcome}")
            return 0
        info = instance.status()
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print(f"{info['name']}: {info['state']} {info['bootstrap_servers'] or ''}".rstrip())
        return 0 if info["state"] == "running" else 3
    except (KafkaLocalError, ValueError) as exc:
        print(f"kafka_local: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
