#!/usr/bin/env python3
"""``python ops/kafka/kafka_local.py start|stop|status|fetch-jars``: the local Kafka broker launcher.

The launcher is the importable package ``worker.tools.kafka_local`` (see its docstring and
ops/kafka/README.md); this file only lets it be run by path from a checkout, as CI and the README do.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from worker.tools.kafka_local.cli import main

if __name__ == "__main__":
    sys.exit(main())
