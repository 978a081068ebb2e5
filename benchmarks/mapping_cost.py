"""What applying a mapping costs per record, on the foreign example (``python benchmarks/mapping_cost.py``).

Measures, interleaved over several rounds on the same records, one thread:

* ``csv row -> event``: :meth:`EventMapping.apply` on CSV rows (dicts of strings), the training path;
* ``json object -> event``: the same on the nested JSON layout (dicts with numbers, booleans, nulls);
* ``json bytes -> event``: :meth:`EventMapping.decode`, what the worker calls per Kafka record
  (``json.loads`` + apply + the unmapped-field check);
* ``wire validation only``: ``TransactionEvent.model_validate`` of the finished payload, the part
  every path pays (the schema's own checks), for comparison;
* ``schemas.decode (wire JSON)``: today's per-record cost for TransactionEvent v1 input.

Prints the median µs/record per path. Numbers move ±25% on a shared machine: compare within a run.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from inference.example_data import example_mapping, example_rows, nested_record
from schemas import TransactionEvent, decode
from schemas.mapping import RecordError, parse_mapping

RECORDS = 5_000
ROUNDS = 7


def _per_record(function: Callable[[Any], Any], records: list[Any]) -> float:
    began = time.perf_counter()
    for record in records:
        function(record)
    return (time.perf_counter() - began) / len(records) * 1e6


def main() -> None:
    flat = list(example_rows(RECORDS, seed=1))
    nested = [nested_record(row) for row in flat]
    raw = [json.dumps(record).encode() for record in nested]
    csv_mapping = parse_mapping(example_mapping("csv"))
    json_mapping = parse_mapping(example_mapping("jsonl"))
    events = [csv_mapping.apply(row) for row in flat]
    assert not any(isinstance(event, RecordError) for event in events)
    payloads = [event.model_dump() for event in events if isinstance(event, TransactionEvent)]
    wire = [event.model_dump_json().encode() for event in events if isinstance(event, TransactionEvent)]
    paths: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
        "csv row -> event": (csv_mapping.apply, flat),
        "json object -> event": (json_mapping.apply, nested),
        "json bytes -> event": (json_mapping.decode, raw),
        "wire validation only": (TransactionEvent.model_validate, payloads),
        "schemas.decode (wire JSON)": (decode, wire),
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(ROUNDS):
        for name, (function, records) in paths.items():
            samples[name].append(_per_record(function, records))
    for name, values in samples.items():
        print(f"{name:28s} {statistics.median(values):7.1f} µs/record  (min {min(values):.1f})")


if __name__ == "__main__":
    main()
