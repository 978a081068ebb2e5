"""All of riskstream's knobs: one frozen settings object, validated once at start-up.

Sources, strongest first: explicit overrides, environment variables (prefix ``RISKSTREAM_``,
nested sections joined with ``__``, e.g. ``RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS``), an optional
TOML file (``riskstream worker --config FILE``), then the defaults documented here.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from worker.errors import ConfigError

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("riskstream_config_file", default=None)
DEFAULT_MODEL_DIR = Path.home() / ".cache" / "riskstream" / "models" / "default"


def _default_worker_id() -> str:
    """The pod/host name, reduced to the identifier alphabet (stable across restarts of one pod)."""
    raw = os.environ.get("HOSTNAME") or socket.gethostname() or "riskstream"
    cleaned = re.sub(r"[^A-Za-z0-9._:@/-]", "-", raw).lstrip("._:@/-")
    return (cleaned or "riskstream")[:64]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of brokers."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    """PLAINTEXT only on trusted networks; SSL (optionally mutual TLS) or SASL_SSL otherwise."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """Required with SASL_SSL."""
    sasl_username: str | None = None
    """The SASL principal this deployment authenticates as."""
    sasl_password: SecretStr | None = None
    """Never logged; read it from a Kubernetes Secret via the environment."""
    ssl_cafile: Path | None = None
    """PEM bundle of the CA that signed the brokers' certificates (default: system trust store)."""
    ssl_certfile: Path | None = None
    """Client certificate (PEM) for mutual TLS."""
    ssl_keyfile: Path | None = None
    """Client private key (PEM) for mutual TLS."""
    ssl_check_hostname: bool = True
    """Verify that broker certificates match their host names. Leave on."""
    client_id: str = "riskstream"
    """Shown in broker logs and quotas."""
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    """How long a client waits for a broker response before retrying."""
    startup_timeout_s: float = Field(default=30.0, gt=0)
    """At start-up, how long to keep trying to reach a broker before giving up (exit 8)."""

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        if self.security_protocol == "SASL_SSL":
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) in (None, "")
            ]
            if missing:
                raise ValueError(f"SASL_SSL needs {', '.join(missing)}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} does not exist")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self


class TopicSettings(Section):
    input: str = "transactions"
    """Transaction events to score (key = account id)."""
    scores: str = "risk-scores"
    """One RiskScore per scored event, keyed like the input."""
    dead_letters: str = "transactions.dlq"
    """One DeadLetter per record that could not be scored, with the reason."""
    create_missing: bool = False
    """Create a missing scores or dead-letter topic at start-up (with the input's partition count); else exit 6."""


class InputSettings(Section):
    mapping: Path | None = None
    """TOML mapping from the bank's own record format to TransactionEvent v1 (default: records are v1 JSON)."""

    @model_validator(mode="after")
    def _mapping_exists(self) -> Self:
        if self.mapping is not None and not self.mapping.is_file():
            raise ValueError(f"mapping {self.mapping} does not exist")
        return self


class StateSettings(Section):
    enabled: Literal["auto", "on", "off"] = "auto"
    """Per-account history in the stream: auto = when the model reads history (a sequence model)."""
    changelog_topic: str | None = None
    """Compacted topic with the latest state of every account (default: <input topic>.state); same partitions."""
    key_secret: SecretStr = SecretStr("riskstream-state")
    """Keys the digest that replaces an account id holding a card number in the changelog. Set a secret."""
    dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "riskstream" / "state")
    """Local stores (LMDB, one folder per partition): on a volume that outlives the process, a restart
    reads only the changelog's tail; anywhere else (an emptyDir) it reads the whole changelog."""
    cache_accounts: int = Field(default=100_000, ge=1)
    """Decoded account histories kept in memory per partition (the rest are read from the store)."""
    max_partition_bytes: ByteSize = ByteSize(64 << 30)
    """Largest local store of one partition (LMDB map size: address space, not memory)."""
    expire_interval_s: float = Field(default=60.0, gt=0)
    """How often a sweep for accounts idle longer than the model's TTL starts (they are tombstoned)."""


class BatchingSettings(Section):
    latency_budget_ms: float = Field(default=50.0, gt=0, le=60_000)
    """Event (Kafka CreateTime) to published score. Batches close early enough to meet it."""
    max_batch: int = Field(default=256, ge=1, le=65_536)
    """Upper bound on a batch; the memory probe may lower the effective cap."""
    max_linger_ms: float = Field(default=2.0, ge=0)
    """How long a batch may wait for company once it has an on-time event (throughput vs latency)."""
    safety_margin_ms: float = Field(default=5.0, ge=0)
    """Slack kept between the estimated finish and the budget, for jitter."""


class BackpressureSettings(Section):
    max_in_flight: int = Field(default=4096, ge=1)
    """High-water mark: pause consumption when this many events are consumed but not yet published."""
    resume_in_flight: int | None = Field(default=None, ge=0)
    """Low-water mark to resume at (default: half the high-water mark)."""
    memory_headroom: ByteSize = Field(default=ByteSize(512 * 1024 * 1024))
    """Device memory to keep free (e.g. "512MiB"); below it, consumption pauses and the batch cap shrinks."""
    probe_interval_ms: float = Field(default=100.0, gt=0)
    """How often free device memory is sampled."""

    @model_validator(mode="after")
    def _water_marks_are_ordered(self) -> Self:
        if self.resume_in_flight is not None and self.resume_in_flight >= self.max_in_flight:
            raise ValueError("resume_in_flight must be below max_in_flight")
        return self

    @property
    def low_water(self) -> int:
        return self.resume_in_flight if self.resume_in_flight is not None else self.max_in_flight // 2


class ConsumerSettings(Section):
    max_poll_records: int = Field(default=1000, ge=1)
    """Upper bound on records taken per poll (admission control may take fewer)."""
    session_timeout_ms: int = Field(default=30_000, ge=1_000)
    """A member silent this long is evicted and its partitions move to the others."""
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    """Keep below a third of the session timeout."""
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    """The poll loop never stops polling (backpressure pauses instead), so this only trips on a wedge."""
    commit_interval_ms: int = Field(default=1_000, ge=10)
    """At-least-once: how often the contiguous completed watermark is committed."""
    rebalance_drain_timeout_ms: int = Field(default=10_000, ge=0)
    """On revoke, how long to wait for in-flight work to publish before abandoning it uncommitted."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a group with no committed offset starts: earliest scores the whole retained history."""
    fetch_max_wait_ms: int = Field(default=100, ge=0)
    """Longest the broker holds a fetch without data (data ends it at once): idle fetch rate vs. wait after a seek."""
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    """read_committed never scores an aborted upstream transaction (required with exactly_once)."""
    static_membership: bool = True
    """Join as a static member (group.instance.id = worker_id): a restarted pod reclaims its partitions at once."""
    undecodable_batch: Literal["dead_letter", "stop"] = "dead_letter"
    """A record batch that cannot be decoded (corrupt): dead-letter each offset and go on, or stop (exit 7)."""


class ProducerSettings(Section):
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    """Compression of the scores and dead-letter record batches."""
    passthrough_headers: Annotated[tuple[str, ...], NoDecode] = ()
    """Headers copied from each input record to its score or dead letter, besides traceparent, tracestate, baggage."""

    @field_validator("passthrough_headers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @model_validator(mode="after")
    def _header_names_are_plain(self) -> Self:
        for name in self.passthrough_headers:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", name):
                raise ValueError(f"passthrough_headers: {name!r} is not a header name")
        return self


class ModelSettings(Section):
    dir: Path = DEFAULT_MODEL_DIR
    """Local checkpoint directory (config.json, model.safetensors, tokenizer.json, riskstream.json)."""
    device: str = "auto"
    """"auto" (first CUDA device if any, else CPU), "cpu" or "cuda:N". One worker per device."""
    quantization: str | None = None
    """fp32, int8, bf16, ... (default: the checkpoint's recommendation for the device)."""
    threads: int | None = Field(default=None, ge=1)
    """CPU intra-op threads (default: the cores this process may use, minus one for the stream)."""
    graphs: bool = True
    """Run each batch-size bucket as a traced graph (about 3x less overhead at small batches)."""

    @model_validator(mode="after")
    def _device_is_known(self) -> Self:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f'device must be "auto", "cpu" or "cuda:N", not {self.device!r}')
        return self


class ObservabilitySettings(Section):
    metrics_port: int = Field(default=9108, ge=0, le=65_535)
    """Prometheus /metrics, /healthz and /readyz (0 = pick a free port)."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a pod's probe and scrape port must be reachable
    """Address the metrics/probe port listens on."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """info writes one summary line per batch; kafka-python's own logs start at warning."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto = console on a TTY, JSON otherwise."""
    stall_after_s: float = Field(default=30.0, gt=0)
    """/healthz fails when the poll loop has made no progress for this long."""


class FaultSettings(Section):
    """Fault injection for tests and drills. All off by default; never enable in production."""

    oom_probability: float = Field(default=0.0, ge=0, le=1)
    """Chance that a forward pass of two or more events raises a device out-of-memory error."""
    model_delay_ms: float = Field(default=0.0, ge=0)
    """Extra time added to every batch, to simulate a slow model."""
    model_delay_for_s: float = Field(default=0.0, ge=0)
    """Apply model_delay_ms only during the first this-many seconds after warm-up (0 = always)."""
    memory_pressure_after_s: float = Field(default=0.0, ge=0)
    """Report device memory exhausted from this many seconds after warm-up ..."""
    memory_pressure_for_s: float = Field(default=0.0, ge=0)
    """... for this long (0 = never)."""
    seed: int = 0
    """Seed of the injected faults, so a failing drill can be replayed."""


class Settings(BaseSettings):
    """riskstream worker settings. Frozen: read once at start-up, then passed around."""

    model_config = SettingsConfigDict(
        env_prefix="RISKSTREAM_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        case_sensitive=False,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    input: InputSettings = InputSettings()
    state: StateSettings = StateSettings()
    group_id: str = "riskstream"
    """Consumer group shared by all workers of one deployment."""
    worker_id: str = Field(default_factory=_default_worker_id, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}$")
    """This instance (pod name); also names the transactional id in exactly-once mode."""
    guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    """at_least_once: commit after broker acks. exactly_once: Kafka transactions (readers use read_committed)."""
    transactional_id_prefix: str = "riskstream"
    """Exactly-once: transactional id = prefix-group-worker_id (a restarted pod fences its predecessor)."""
    transaction_timeout_ms: int = Field(default=15_000, ge=1_000)
    """A crashed instance's open transaction blocks read_committed readers at most this long."""
    max_event_bytes: int = Field(default=65_536, ge=256)
    """Record values above this are dead-lettered unparsed."""
    refuse_pan_in_identifiers: bool = False
    """Dead-letter an event whose id fields hold a card number, instead of scoring it with the ids masked."""
    processes: int = Field(default=1, ge=1, le=64)
    """Worker processes on this device (``riskstream worker --processes``): members of the group, ids worker_id-N."""
    drain_timeout_s: float = Field(default=20.0, ge=0)
    """On SIGTERM: time to publish and commit in-flight work before exiting (keep < terminationGracePeriodSeconds)."""
    batching: BatchingSettings = BatchingSettings()
    backpressure: BackpressureSettings = BackpressureSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    producer: ProducerSettings = ProducerSettings()
    model: ModelSettings = ModelSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _exactly_once_reads_committed(self) -> Self:
        if self.guarantee == "exactly_once" and self.consumer.isolation_level != "read_committed":
            raise ValueError("exactly_once needs consumer.isolation_level read_committed")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def transactional_id(self) -> str:
        return f"{self.transactional_id_prefix}-{self.group_id}-{self.worker_id}"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to log (secrets stay masked)."""
        return self.model_dump(mode="json")


@contextmanager
def _config_file(path: Path | None) -> Iterator[None]:
    token = _CONFIG_FILE.set(path)
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings; raise ``ConfigError`` with one readable line if invalid."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    try:
        with _config_file(config_file):
            return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read config file {config_file}: {exc}") from None


def reference_rows() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, in declaration order."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{env}__")
                continue
            if field.default_factory is not None:
                default = "(pod/host name)" if name == "worker_id" else "(computed)"
            else:
                default = "" if field.default is None else str(field.default)
            if name == "dir":
                default = "~/.cache/riskstream/models/default"
            rows.append((env, default, " ".join((field.description or "").split())))

    walk(Settings, "RISKSTREAM_")
    return rows
