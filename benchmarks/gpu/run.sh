#!/usr/bin/env bash
# The GPU check (benchmarks/gpu/check.py): engine per variant and bucket, a real CUDA out-of-memory,
# memory-tied pause/resume under a memory hog, and the worker bench with 1 and N processes.
#   bash benchmarks/gpu/run.sh [--out DIR] [--processes N]     on a machine with CUDA (< 8 minutes)
#   bash benchmarks/gpu/run.sh --dry-run                       anywhere, tiny scale (CI runs this)
# Uses .venv when present (make install), else the python on PATH; KAFKA_BOOTSTRAP_SERVERS, if set,
# is the broker for the worker steps (otherwise the local launcher starts one).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
exec "$PYTHON" benchmarks/gpu/check.py "$@"
