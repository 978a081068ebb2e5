"""Prometheus metrics. One registry per worker, so tests can run several workers in one process.

Names follow Prometheus conventions: counters end in ``_total``, durations are ``_seconds``,
sizes ``_bytes``. Labels are bounded (reason kinds, decisions, partitions) — never keys or ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.costs import StageCosts, register

# Event-to-score latency buckets, dense around the default 50 ms budget.
LATENCY_BUCKETS = (
    0.002,
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.035,
    0.04,
    0.045,
    0.05,
    0.06,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


TRANSACTION_PHASES = ("send", "add_offsets", "acks", "end_txn")
"""The phases of an exactly-once publish step, in the order the step runs them."""


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts since start-up: what the autoscaling signal is computed from."""

    consumed: float
    scored: float
    budget_misses: float


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.costs = StageCosts()
        """CPU seconds per pipeline stage (``riskstream_stage_cpu_seconds_total``)."""
        register(self.costs, r)
        self.consumed = Counter("riskstream_events_consumed_total", "Records taken from the input topic.", registry=r)
        self.scored = Counter(
            "riskstream_events_scored_total", "Scores published (acknowledged).", ["decision"], registry=r
        )
        self.dead_letters = Counter(
            "riskstream_dead_letters_total", "Dead letters published, by reason.", ["reason"], registry=r
        )
        self.latency = Histogram(
            "riskstream_event_to_score_latency_seconds",
            "Event timestamp (CreateTime) to acknowledged publication of its score.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.budget_misses = Counter(
            "riskstream_budget_misses_total", "Scores published later than the latency budget.", registry=r
        )
        self.pan_masked = Counter(
            "riskstream_pan_masked_total",
            "Events scored with a card number in an identifier field, masked wherever written, by field.",
            ["field"],
            registry=r,
        )
        self.late_events = Counter(
            "riskstream_late_events_total", "Events already past the budget when polled (backlog).", registry=r
        )
        self.poll_delay = Histogram(
            "riskstream_poll_delay_seconds",
            "Event timestamp (CreateTime) to the worker polling it: broker and fetch delay, or backlog.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.publish = Histogram(
            "riskstream_publish_seconds",
            "A publish step (one transaction in exactly-once mode): first send to last acknowledgement.",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "riskstream_batch_size", "Events scored per batch.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_wait = Histogram(
            "riskstream_batch_wait_seconds",
            "Time a batch's oldest event waited to be scored.",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "riskstream_inference_seconds", "Model time per batch.", buckets=STAGE_BUCKETS, registry=r
        )
        self.in_flight = Gauge("riskstream_in_flight_events", "Consumed and not yet published events.", registry=r)
        self.paused_partitions = Gauge(
            "riskstream_paused_partitions", "Assigned partitions currently paused by backpressure.", registry=r
        )
        self.paused_seconds = Counter(
            "riskstream_paused_seconds_total", "Time consumption spent paused by backpressure.", registry=r
        )
        self.pauses = Counter(
            "riskstream_pauses_total", "Times consumption was paused, by reason.", ["reason"], registry=r
        )
        self.device_free = Gauge("riskstream_device_memory_free_bytes", "Free device memory.", registry=r)
        self.device_total = Gauge("riskstream_device_memory_total_bytes", "Total device memory.", registry=r)
        self.batch_cap = Gauge("riskstream_batch_cap", "Current maximum batch size (config and memory).", registry=r)
        self.consumer_lag = Gauge(
            "riskstream_consumer_lag", "Records behind the partition end.", ["topic", "partition"], registry=r
        )
        self.commit_latency = Histogram(
            "riskstream_commit_latency_seconds",
            "Offset commit (or transaction commit) round trip.",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.commits = Counter("riskstream_commits_total", "Successful offset/transaction commits.", registry=r)
        self.state_accounts = Gauge(
            "riskstream_state_accounts",
            "Accounts with a history, per input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.state_bytes = Gauge(
            "riskstream_state_bytes",
            "Bytes of the local state store (LMDB pages in use), per input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.state_restore_seconds = Histogram(
            "riskstream_state_restore_seconds",
            "Time to restore a partition's state from its changelog.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.state_restored_records = Counter(
            "riskstream_state_restored_records_total", "Changelog records read by restores.", registry=r
        )
        self.state_expired = Counter(
            "riskstream_state_expired_total", "Accounts dropped after their time to live (tombstoned).", registry=r
        )
        self.state_restore_rate = Gauge(
            "riskstream_state_restore_records_per_second",
            "Changelog records per second of the partition's last restore.",
            ["topic", "partition"],
            registry=r,
        )
        self.state_writes = Counter(
            "riskstream_state_changelog_records_total", "Account states written to the changelog.", registry=r
        )
        self.state_unkeyed = Counter(
            "riskstream_state_unkeyed_records_total",
            "Records whose Kafka key is not their account_id (account state needs the input keyed by it).",
            registry=r,
        )
        self.state_restoring = Gauge(
            "riskstream_state_restoring_partitions", "Partitions held while their state is restored.", registry=r
        )
        self.transaction_phase = Histogram(
            "riskstream_transaction_phase_seconds",
            "Exactly-once: time per phase of a transaction step (send, add_offsets, acks, end_txn).",
            ["phase"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.transaction_aborts = Counter(
            "riskstream_transaction_aborts_total", "Aborted transactions (exactly-once mode).", registry=r
        )
        self.rewinds = Counter(
            "riskstream_rewinds_total",
            "Uncommitted work replayed from the last commit, by cause.",
            ["cause"],
            registry=r,
        )
        self.rebalances = Counter("riskstream_rebalances_total", "Partition revocations handled.", registry=r)
        self.oom_splits = Counter(
            "riskstream_oom_splits_total", "Batches split after device out-of-memory.", registry=r
        )
        self.model_info = Gauge(
            "riskstream_model_info",
            "The model being served (value is always 1).",
            ["name", "version", "quantization", "device"],
            registry=r,
        )
        self.scaling_pressure = Gauge(
            "riskstream_scaling_pressure",
            "Autoscaling signal: >1 means this worker needs help (see README, Scaling).",
            registry=r,
        )
        self.last_progress = Gauge(
            "riskstream_last_progress_timestamp_seconds",
            "When the poll loop last completed an iteration.",
            registry=r,
        )

    def totals(self) -> Totals:
        """The running totals of consumed, scored and late-scored events."""
        get = self.registry.get_sample_value
        scored = sum(
            sample.value
            for metric in self.scored.collect()
            for sample in metric.samples
            if sample.name == "riskstream_events_scored_total"
        )
        return Totals(
            consumed=get("riskstream_events_consumed_total") or 0.0,
            scored=scored,
            budget_misses=get("riskstream_budget_misses_total") or 0.0,
        )
