"""One named broker instance: its state directory, configuration, JVM process, start and stop.

Processes are only ever signalled by the pid recorded in the instance directory, after checking that
the pid still belongs to this instance's JVM; never by name.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from worker.tools.kafka_local.base import HOST, KafkaLocalError, RedactedStr, file_lock, write_private
from worker.tools.kafka_local.jars import KAFKA_VERSION, ensure_jars, java
from worker.tools.kafka_local.tls import ensure_tls

Security = Literal["plaintext", "sasl_ssl"]
SECURITY_CHOICES: tuple[Security, ...] = ("plaintext", "sasl_ssl")
DEFAULT_NAME = "dev"
DEFAULT_PORT = 9092
DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_STOP_TIMEOUT_S = 30.0
APP_USER = "riskstream"
ADMIN_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
JVM_HEAP = ("-Xms256m", "-Xmx512m")
# Ports picked for port=0 come from below Linux's ephemeral range (32768+), so that after a
# restart the broker's port has not been taken by some client's outgoing connection meanwhile.
PICK_PORT_RANGE = (20000, 32000)
_SOURCE_CHECKOUT = Path(__file__).resolve().parents[3]


def default_state_root() -> Path:
    """Where instances live: ``<checkout>/.kafka-local`` in a source checkout, else the user's cache."""
    if (_SOURCE_CHECKOUT / "pyproject.toml").is_file():
        return _SOURCE_CHECKOUT / ".kafka-local"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "riskstream" / "kafka-local"


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR like the JVM's server sockets: TIME_WAIT leftovers of a previous broker on this
    # port do not count as "in use"; a live listener does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _pick_free_port(exclude: set[int]) -> int:
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(*PICK_PORT_RANGE)
        if port not in exclude and _port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts_connections(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _new_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid(): URL-safe base64 of 16 random bytes, never
    # starting with '-' (which would read as a command-line flag).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``Z`` = zombie), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Format: "pid (comm) S ..."; comm may contain spaces and parentheses, so split at the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


# Brokers started by this process, kept so they are reaped (no zombies) and their Popen objects are
# never garbage-collected while the JVM runs (which would emit a ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _import_kafka_python() -> Any:
    # kafka-python 3.0.12 uses the deprecated importlib.resources.read_text/open_text at import time;
    # under `-W error` (pytest's filterwarnings = error) that DeprecationWarning would be fatal.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\w+ is deprecated\. Use files\(\) instead", category=DeprecationWarning
        )
        import kafka
        import kafka.admin
        import kafka.errors
    return kafka


@dataclass
class LocalKafka:
    """One named local broker instance and its state directory.

    ``port``: None = the port the instance was created with (9092 for a new one); 0 = the stored
    port, or free ports for a new instance; any other value must match a stored port.
    ``state_dir``: the instance directory (default :func:`default_state_root` ``/ <name>``).
    """

    name: str = DEFAULT_NAME
    port: int | None = None
    security: Security = "plaintext"
    state_dir: Path | None = None
    _dir: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"invalid instance name {self.name!r} (letters, digits, '.', '_', '-')")
        if self.security not in SECURITY_CHOICES:
            raise ValueError(f"security must be one of {SECURITY_CHOICES}, not {self.security!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        base = Path(self.state_dir) if self.state_dir is not None else default_state_root() / self.name
        self._dir = base.expanduser().resolve()

    # ---- paths -----------------------------------------------------------------------------

    @property
    def instance_dir(self) -> Path:
        return self._dir

    @property
    def log_path(self) -> Path:
        """The broker's stdout/stderr (log4j console output)."""
        return self._dir / "broker.log"

    @property
    def ca_file(self) -> Path:
        """PEM of the broker's self-signed certificate (sasl_ssl only): the clients' ``ssl_cafile``."""
        return self._dir / "tls" / "ca.pem"

    @property
    def _meta_path(self) -> Path:
        return self._dir / "instance.json"

    @property
    def _secrets_path(self) -> Path:
        return self._dir / "secrets.json"

    @property
    def _pid_path(self) -> Path:
        return self._dir / "broker.pid"

    @property
    def _properties_path(self) -> Path:
        return self._dir / "server.properties"

    @property
    def _data_dir(self) -> Path:
        return self._dir / "data"

    # ---- stored state ------------------------------------------------------------------------

    def _load_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise KafkaLocalError(f"{self._meta_path} is not valid JSON: {exc}") from exc
        return cast("dict[str, Any]", meta)

    def _load_secrets(self) -> dict[str, str]:
        try:
            return cast("dict[str, str]", json.loads(self._secrets_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise KafkaLocalError(f"instance {self.name!r} has no readable {self._secrets_path}") from exc

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>`` of the client listener (known once the instance has been created)."""
        meta = self._load_meta()
        if meta is None:
            if self.port:
                return f"{HOST}:{self.port}"
            raise KafkaLocalError(f"instance {self.name!r} has not been created yet ({self._dir})")
        return f"{HOST}:{meta['port']}"

    @property
    def stored_security(self) -> Security | None:
        meta = self._load_meta()
        return None if meta is None else cast("Security", meta["security"])

    @property
    def pid(self) -> int | None:
        """Pid of this instance's running broker JVM, or None."""
        try:
            pid = int(self._pid_path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_our_broker(pid) else None

    def _is_our_broker(self, pid: int) -> bool:
        popen = _CHILDREN.get(pid)
        if popen is not None:
            # Our own unreaped child, so the pid cannot have been reused; its cmdline may still be
            # Python's for a moment after the fork, before the exec of java.
            if popen.poll() is None:
                return True
            del _CHILDREN[pid]
            return False
        state = _process_state(pid)
        if state is None or state in ("Z", "X"):
            _reap(pid)
            return False
        # Guard against pid reuse: the process must be a Kafka JVM running this instance's config.
        cmdline = _process_cmdline(pid)
        return "kafka.Kafka" in cmdline and str(self._properties_path) in cmdline

    def is_running(self) -> bool:
        return self.pid is not None

    def client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments for the application user (everything but bootstrap_servers).

        plaintext: ``{"security_protocol": "PLAINTEXT"}``. sasl_ssl: SCRAM-SHA-512 over TLS with the
        instance's CA and hostname verification on; the password is a ``RedactedStr``.
        """
        return self._client_config(APP_USER)

    def admin_client_config(self) -> dict[str, Any]:
        """Like ``client_config`` but for the broker's own ``admin`` identity."""
        return self._client_config(ADMIN_USER)

    def _client_config(self, user: str) -> dict[str, Any]:
        security = self.stored_security or self.security
        if security == "plaintext":
            return {"security_protocol": "PLAINTEXT"}
        passwords = self._load_secrets()
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": RedactedStr(passwords[f"{user}_password"]),
            "ssl_cafile": str(self.ca_file),
            "ssl_check_hostname": True,
        }

    def status(self) -> dict[str, Any]:
        """Machine-readable state: name, state (running/stopped/absent), bootstrap, pid, paths."""
        meta = self._load_meta()
        pid = self.pid
        result: dict[str, Any] = {
            "name": self.name,
            "state": "absent" if meta is None else ("running" if pid is not None else "stopped"),
            "bootstrap_servers": None if meta is None else f"{HOST}:{meta['port']}",
            "security": None if meta is None else meta["security"],
            "pid": pid,
            "state_dir": str(self._dir),
            "log": str(self.log_path),
        }
        if meta is not None:
            result["listening"] = pid is not None and _accepts_connections(int(meta["port"]))
            if meta["security"] == "sasl_ssl":
                result["ca_file"] = str(self.ca_file)
                result["username"] = APP_USER
                result["password_file"] = str(self._secrets_path)
        return result

    # ---- start -------------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> str:
        """Start the broker (or reuse the running one) and return its bootstrap address.

        Returns only after a kafka-python client has bootstrapped. Raises ``KafkaLocalError`` with
        the tail of the broker log when the JVM exits or is not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        self._dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self._dir / ".lock"):
            meta = self._prepare()
            bootstrap = f"{HOST}:{meta['port']}"
            pid = self.pid
            if pid is not None:
                self._wait_ready(pid, meta, deadline)
                return bootstrap
            self._check_ports_free(meta)
            libs = ensure_jars()
            self._format_storage(libs, meta)
            pid = self._launch(libs)
            try:
                self._wait_ready(pid, meta, deadline)
            except BaseException:
                # Leave no half-started broker behind for the next start to mistake for a healthy one.
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, 10.0)
                self._pid_path.unlink(missing_ok=True)
                raise
            return bootstrap

    def _prepare(self) -> dict[str, Any]:
        """Create or validate the instance's stored config; (re)write server.properties."""
        meta = self._load_meta()
        if meta is None:
            meta = self._create_meta()
        else:
            if meta["security"] != self.security:
                raise KafkaLocalError(
                    f"instance {self.name!r} was created with security={meta['security']}, not "
                    f"{self.security}; use another --name, or stop it and delete {self._dir}"
                )
            if self.port not in (None, 0, meta["port"]):
                raise KafkaLocalError(
                    f"instance {self.name!r} listens on port {meta['port']}, not {self.port}; its data and "
                    f"clients depend on that address. Use --port {meta['port']} (or 0), or another --name"
                )
        if meta["security"] == "sasl_ssl":
            self._ensure_tls()
        self._write_config_files(meta)
        return meta

    def _create_meta(self) -> dict[str, Any]:
        if self.port:
            port = self.port
            controller_port = port + 1 if port < 65535 and _port_is_free(port + 1) else 0
            controller_port = controller_port or _pick_free_port({port})
        else:
            port = DEFAULT_PORT if self.port is None else _pick_free_port(set())
            controller_port = port + 1 if self.port is None else _pick_free_port({port})
        meta: dict[str, Any] = {
            "name": self.name,
            "kafka_version": KAFKA_VERSION,
            "security": self.security,
            "port": port,
            "controller_port": controller_port,
            "cluster_id": _new_cluster_id(),
            "node_id": 1,
        }
        if self.security == "sasl_ssl":
            write_private(
                self._secrets_path,
                json.dumps(
                    {
                        f"{ADMIN_USER}_password": secrets.token_urlsafe(24),
                        f"{APP_USER}_password": secrets.token_urlsafe(24),
                        "store_password": secrets.token_urlsafe(24),
                    },
                    indent=2,
                )
                + "\n",
            )
        self._meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return meta

    def _ensure_tls(self) -> None:
        ensure_tls(self._dir / "tls", self.ca_file, self._load_secrets()["store_password"])

    def _server_properties(self, meta: dict[str, Any]) -> str:
        port, controller_port = int(meta["port"]), int(meta["controller_port"])
        client_listener = "SASL_SSL" if meta["security"] == "sasl_ssl" else "PLAINTEXT"
        lines = [
            "# Written by worker/tools/kafka_local on every start; edit the launcher, not this file.",
            "process.roles=broker,controller",
            f"node.id={meta['node_id']}",
            f"controller.quorum.bootstrap.servers={HOST}:{controller_port}",
            f"listeners={client_listener}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            f"advertised.listeners={client_listener}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client_listener}",
            f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client_listener}:{client_listener}",
            f"log.dirs={self._data_dir}",
            # Single node: internal topics with one replica, no 3 s wait before the first rebalance.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=8",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "share.coordinator.state.topic.num.partitions=8",
            "group.initial.rebalance.delay.ms=0",
            # Let tests choose short session timeouts (the default floor is 6 s).
            "group.min.session.timeout.ms=1000",
            # Abort transactions of killed producers soon after their transaction timeout.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=2000",
            # After a hard kill, the restarted broker cannot register until the controller expires the
            # dead incarnation's session (default 9 s); keep that short for fault-injection restarts.
            "broker.heartbeat.interval.ms=500",
            "broker.session.timeout.ms=3000",
            # Topics are created explicitly, by the application or the tests.
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            # Small machine.
            "num.network.threads=2",
            "num.io.threads=2",
            "num.recovery.threads.per.data.dir=1",
            "background.threads=2",
            "log.cleaner.threads=1",
            "log.cleaner.dedupe.buffer.size=16777216",
            "log.segment.bytes=67108864",
            "log.retention.hours=24",
        ]
        if meta["security"] == "sasl_ssl":
            passwords = self._load_secrets()
            tls = self._dir / "tls"
            store_password = passwords["store_password"]
            lines += [
                f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN_USER}" password="{passwords[f"{ADMIN_USER}_password"]}";',
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.location={tls / 'keystore.p12'}",
                f"ssl.keystore.password={store_password}",
                f"ssl.key.password={store_password}",
                "ssl.truststore.type=PKCS12",
                f"ssl.truststore.location={tls / 'truststore.p12'}",
                f"ssl.truststore.password={store_password}",
                "ssl.endpoint.identification.algorithm=https",
                "ssl.client.auth=none",
                # ACLs are enforced (fault tests deny writes to a topic for a while); principals
                # with no ACL on a resource keep full access, the admin user is a super user.
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{ADMIN_USER}",
                "allow.everyone.if.no.acl.found=true",
            ]
        return "\n".join(lines) + "\n"

    def _write_config_files(self, meta: dict[str, Any]) -> None:
        write_private(self._properties_path, self._server_properties(meta))
        (self._dir / "log4j2.properties").write_text(
            "\n".join(
                [
                    "status = warn",
                    # The JVM's own exit is the end of the log; no log4j shutdown hook racing it.
                    "shutdownHook = disable",
                    "appender.console.type = Console",
                    "appender.console.name = STDOUT",
                    "appender.console.layout.type = PatternLayout",
                    "appender.console.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.console.ref = STDOUT",
                    # Quiet the per-request and state-change chatter.
                    "logger.statechange.name = state.change.logger",
                    "logger.statechange.level = WARN",
                    "logger.request.name = kafka.request.logger",
                    "logger.request.level = WARN",
                    "logger.authorizer.name = kafka.authorizer.logger",
                    "logger.authorizer.level = WARN",
                ]
            )
            + "\n",
            encoding="utf-8",
        )

    def _jvm_base(self, libs: Path) -> list[str]:
        return [
            java(),
            *JVM_HEAP,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self._dir / 'logs'}",
            "-cp",
            f"{libs}/*",
        ]

    def _format_storage(self, libs: Path, meta: dict[str, Any]) -> None:
        if (self._data_dir / "meta.properties").is_file():
            return
        command = [
            *self._jvm_base(libs),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            str(meta["cluster_id"]),
            "-c",
            str(self._properties_path),
        ]
        if meta["security"] == "sasl_ssl":
            passwords = self._load_secrets()
            for user in (ADMIN_USER, APP_USER):
                command += ["-S", f"{SCRAM_MECHANISM}=[name={user},password={passwords[f'{user}_password']}]"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        # Keep the tool's output for diagnosis, minus anything that could echo a password.
        (self._dir / "format.log").write_text(result.stdout + result.stderr, encoding="utf-8")
        if result.returncode != 0:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            raise KafkaLocalError(
                f"formatting the storage of {self.name!r} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-4000:]}"
            )

    def _check_ports_free(self, meta: dict[str, Any]) -> None:
        for key in ("port", "controller_port"):
            port = int(meta[key])
            if not _port_is_free(port):
                raise KafkaLocalError(
                    f"port {HOST}:{port} ({key}) of instance {self.name!r} is in use by another process; "
                    "free it or use another --name"
                )

    def _launch(self, libs: Path) -> int:
        (self._dir / "logs").mkdir(exist_ok=True)
        command = [*self._jvm_base(libs), "kafka.Kafka", str(self._properties_path)]
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n===== kafka_local start {time.strftime('%Y-%m-%dT%H:%M:%S%z')} =====\n".encode())
            log_file.flush()
            # Own session/process group: a Ctrl-C in the starting terminal does not reach the broker.
            popen = subprocess.Popen(  # noqa: S603
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                start_new_session=True,
            )
        _CHILDREN[popen.pid] = popen
        self._pid_path.write_text(f"{popen.pid}\n", encoding="ascii")
        return popen.pid

    def _wait_ready(self, pid: int, meta: dict[str, Any], deadline: float) -> None:
        port = int(meta["port"])
        # Cheap TCP probe first, so kafka-python is not spun up (and logging) against a closed port.
        while not _accepts_connections(port):
            self._check_alive(pid)
            if time.monotonic() >= deadline:
                raise self._failure(f"broker {self.name!r} (pid {pid}) did not open {HOST}:{port} in time")
            time.sleep(0.2)
        kafka = _import_kafka_python()
        last_error: Exception | None = None
        while True:
            self._check_alive(pid)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise self._failure(
                    f"broker {self.name!r} (pid {pid}) accepts connections on {HOST}:{port} but no "
                    f"kafka-python client could bootstrap in time (last error: {last_error})"
                )
            try:
                admin = kafka.KafkaAdminClient(
                    bootstrap_servers=f"{HOST}:{port}",
                    client_id=f"kafka-local-ready-{self.name}",
                    bootstrap_timeout_ms=min(remaining_ms, 10_000),
                    request_timeout_ms=min(max(remaining_ms, 1000), 10_000),
                    **self.admin_client_config(),
                )
            except kafka.errors.KafkaError as exc:
                last_error = exc
            else:
                try:
                    brokers = admin.describe_cluster().get("brokers") or []
                    if brokers and not any(broker.get("is_fenced") for broker in brokers):
                        return
                    last_error = KafkaLocalError(f"no unfenced broker in the cluster metadata yet: {brokers}")
                except kafka.errors.KafkaError as exc:
                    last_error = exc
                finally:
                    admin.close()
            time.sleep(0.25)

    def _check_alive(self, pid: int) -> None:
        if not self._is_our_broker(pid):
            raise self._failure(f"broker {self.name!r} (pid {pid}) exited during start-up")

    def _failure(self, message: str) -> KafkaLocalError:
        return KafkaLocalError(f"{message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64 * 1024))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- stop --------------------------------------------------------------------------------

    def stop(self, kill: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
        """Stop the broker; return True if one was running.

        Graceful: SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` seconds.
        ``kill=True``: SIGKILL at once (a crash, for fault-injection tests). Returns once the process
        is gone. Data, ports, cluster id and credentials are kept for the next ``start``.
        """
        if not self._dir.is_dir():
            return False
        with file_lock(self._dir / ".lock"):
            pid = self.pid
            if pid is None:
                self._pid_path.unlink(missing_ok=True)
                return False
            if not kill:
                self._signal(pid, signal.SIGTERM)
                if self._wait_gone(pid, timeout):
                    self._pid_path.unlink(missing_ok=True)
                    return True
                print(f"kafka_local: broker {self.name!r} (pid {pid}) ignored SIGTERM; killing", file=sys.stderr)
            self._signal(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 10.0):
                raise KafkaLocalError(f"broker {self.name!r} (pid {pid}) survived SIGKILL")
            self._pid_path.unlink(missing_ok=True)
            return True

    @staticmethod
    def _signal(pid: int, signum: signal.Signals) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            popen = _CHILDREN.get(pid)
            if popen is not None:
                # Our own child: wait() reaps it (a killed child stays a zombie until then).
                try:
                    popen.wait(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    pass
                else:
                    _CHILDREN.pop(pid, None)
                    return True
            elif not self._is_our_broker(pid):
                return True
            if time.monotonic() >= deadline:
                return False
            if popen is None:
                time.sleep(0.1)
