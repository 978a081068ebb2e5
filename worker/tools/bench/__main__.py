"""``python -m worker.tools.bench load|relay|naive``: the benchmark's helper processes (started by the harness).

Kafka connection, consumer group, model and budget come from the riskstream settings (environment
``RISKSTREAM_*`` and ``--config``), the topics from the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.errors import WorkerError
from worker.logs import configure_logging
from worker.settings import load_settings
from worker.tools.bench.loops import generate_load, naive, relay


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker.tools.bench", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="open-loop load generator")
    load.add_argument("--topic", required=True)
    load.add_argument("--rate", type=float, required=True)
    load.add_argument("--warmup", type=float, required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--seed", type=int, required=True)
    load.add_argument("--report", type=Path, required=True)
    for name, help_text in (("relay", "consume -> produce the same bytes"), ("naive", "per-event loop")):
        system = commands.add_parser(name, help=help_text)
        system.add_argument("--input", required=True)
        system.add_argument("--output", required=True)
        system.add_argument("--ready-file", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging("warning", "json")
    if args.command == "load":
        generate_load(
            settings,
            topic=args.topic,
            rate=args.rate,
            warmup_s=args.warmup,
            seconds=args.seconds,
            seed=args.seed,
            report=args.report,
        )
    else:
        loop = relay if args.command == "relay" else naive
        loop(settings, input_topic=args.input, output_topic=args.output, ready_file=args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
