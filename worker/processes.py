"""Several worker processes on one device: ``riskstream worker --processes N``.

One Python process cannot feed a fast device: its stages share one interpreter lock, and the CPU
cost per event bounds it to about one core. N processes, each a complete worker (its own consumer in
the same group, its own model copy, its own producer and transactional id), use N cores and scale the
same way as N pods, without N pods' fixed costs:

* **Shared pages.** The supervisor imports the heavy libraries (torch, transformers, kafka-python,
  pydantic models) and then forks, so their code and import-time objects are shared copy-on-write;
  ``gc.freeze()`` first, so that no collection in a child touches (and copies) those pages: a
  child's unique memory fell from 351-375 MB to 261-271 MB with it (default model, idle). Each
  child loads and warms up its own (small) model after the fork. Nothing that starts threads runs
  before the fork (OpenMP and kafka-python threads do not survive one).
* **Identity.** Child ``i`` is worker ``<worker_id>-<i>``: its own static group membership and its own
  transactional id, stable across restarts of the pod.
* **Backpressure** needs nothing extra: each child samples the device's free memory, which is device-wide.
* **One port.** The supervisor serves ``/metrics`` (every child's samples with a ``process`` label),
  ``/healthz`` (all children alive and healthy) and ``/readyz`` (all ready) on the configured port; the
  children listen on free local ports only the supervisor uses.
* **Lifecycle.** SIGTERM/SIGINT are passed to every child, which drains and exits; the supervisor exits
  with the worst exit code. A child that dies takes the others down (SIGTERM, drain) and the
  supervisor exits with its code, so the orchestrator restarts the pod as one unit. A child dies with
  its supervisor (``PR_SET_PDEATHSIG``): a SIGKILLed pod leaves no orphan worker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from types import FrameType

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from worker.errors import EXIT_ABORTED, EXIT_FAILED, EXIT_OK
from worker.settings import Settings

log = structlog.get_logger("riskstream.processes")

_PR_SET_PDEATHSIG = 1
_CHILD_READY_TIMEOUT_S = 600.0
_SCRAPE_TIMEOUT_S = 2.0


def child_settings(settings: Settings, index: int, processes: int) -> Settings:
    """Child ``index``'s settings: its own worker id, a private metrics port, its share of the cores."""
    threads = settings.model.threads
    if threads is None and processes > 1:
        from inference.cpu import available_cpus

        threads = max(1, (available_cpus() - 1) // processes) if available_cpus() > processes else 1
    return settings.model_copy(
        update={
            "worker_id": f"{settings.worker_id}-{index}"[:64],
            "model": settings.model.model_copy(update={"threads": threads}),
            "observability": settings.observability.model_copy(update={"metrics_port": 0, "metrics_host": "127.0.0.1"}),
        }
    )


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_main(settings: Settings, ports: Connection) -> None:
    """Entry point of child process: one complete worker; its metrics port goes up the pipe."""
    _die_with_parent()
    # Not the supervisor's handlers (inherited by the fork): a stop asked for while the model is still
    # loading ends the child at once (nothing consumed yet); the worker installs its own once running.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from worker.app import Worker
    from worker.errors import WorkerError
    from worker.logs import configure_logging

    obs = settings.observability
    configure_logging(obs.log_level, obs.log_format, static={"worker_id": settings.worker_id})
    worker = Worker(settings, on_listening=lambda port: ports.send(port))
    worker.install_signal_handlers()
    try:
        code = worker.run()
    except WorkerError as exc:
        log.error(str(exc), error=type(exc).__name__)
        code = exc.exit_code
    ports.close()
    os._exit(code)


def preload_libraries() -> None:
    """Import what every child needs before forking, so the pages are shared (no threads started)."""
    import kafka  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import inference.scorer  # noqa: F401
    import worker.app  # noqa: F401


class Supervisor:
    """Runs ``processes`` worker children and answers for them on one port (see the module docstring)."""

    def __init__(self, settings: Settings, processes: int) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.settings = settings
        self.processes = processes
        self.children: list[multiprocessing.process.BaseProcess] = []
        self.ports: list[int | None] = []
        self._stop = threading.Event()
        self._signals = 0

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 1:
                for child in self.children:
                    with contextlib.suppress(ProcessLookupError, TypeError):
                        os.kill(child.pid or 0, signal.SIGKILL)
                os._exit(EXIT_ABORTED)
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        preload_libraries()
        # Move every object made so far out of the collector's reach: a collection in a child would
        # otherwise write to their headers and copy each page it touches (gc.freeze, Python docs).
        gc.collect()
        gc.freeze()
        context = multiprocessing.get_context("fork")
        pipes = []
        for index in range(self.processes):
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(
                target=_child_main,
                args=(child_settings(self.settings, index, self.processes), sender),
                name=f"riskstream-worker-{index}",
            )
            child.start()
            sender.close()
            self.children.append(child)
            pipes.append(receiver)
            self.ports.append(None)
        server = _AggregateServer(self)
        server.start()
        log.info("worker processes started", processes=self.processes, port=server.port,
                 pids=[child.pid for child in self.children])  # fmt: skip
        try:
            return self._supervise(pipes)
        finally:
            server.stop()

    def _supervise(self, pipes: list[Connection]) -> int:
        codes: dict[int, int] = {}
        signalled: set[int] = set()
        while len(codes) < len(self.children):
            for index, pipe in enumerate(pipes):
                with contextlib.suppress(EOFError, OSError):
                    if pipe.poll():
                        self.ports[index] = int(pipe.recv())
            for index, child in enumerate(self.children):
                if index not in codes and child.exitcode is not None:
                    # Ended by the SIGTERM we sent it before it could install its handler: a clean stop.
                    stopped = index in signalled and child.exitcode == -signal.SIGTERM
                    codes[index] = EXIT_OK if stopped else child.exitcode
                    if not self._stop.is_set():
                        log.error(
                            "a worker process exited: stopping the others", process=index, exit_code=child.exitcode
                        )
                        self._stop.set()
            if self._stop.is_set():
                for index, child in enumerate(self.children):
                    if index not in codes and index not in signalled and child.pid is not None:
                        signalled.add(index)  # once: a second signal would make a child exit without draining
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child.pid, signal.SIGTERM)
            time.sleep(0.1)
        worst = max(codes.values(), key=lambda code: (code != EXIT_OK, code))
        return worst if worst >= 0 else EXIT_FAILED  # a negative exit code: killed by a signal


def merge_expositions(texts: list[str | None]) -> str:
    """The children's expositions as one, each sample labelled with its ``process`` index."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for index, text in enumerate(texts):
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            _, _, samples = families.setdefault(family.name, (family.documentation, family.type, []))
            for sample in family.samples:
                labels = {**sample.labels, "process": str(index)}
                rendered = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
                samples.append(f"{sample.name}{{{rendered}}} {_number(sample.value)}")
    lines: list[str] = []
    for name, (documentation, kind, samples) in families.items():
        header = f"{name}_total" if kind == "counter" else name  # as prometheus_client writes counters
        lines += [f"# HELP {header} {documentation}", f"# TYPE {header} {kind}", *samples]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    from worker.numbers import exposition_number

    return exposition_number(float(value))


class _AggregateServer:
    def __init__(self, supervisor: Supervisor) -> None:
        obs = supervisor.settings.observability

        def scrape(path: str) -> list[tuple[int, str] | None]:
            return [_get(port, path) if port is not None else None for port in supervisor.ports]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    texts = [answer[1] if answer is not None and answer[0] == 200 else None for answer in scrape(path)]
                    self._send(HTTPStatus.OK, merge_expositions(texts).encode(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    answers = scrape(path)
                    alive = all(child.exitcode is None for child in supervisor.children)
                    ok = alive and all(answer is not None and answer[0] == 200 for answer in answers)
                    details = [f"process {i}: {a[1].strip() if a else 'starting'}" for i, a in enumerate(answers)]
                    status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                    self._send(status, ("\n".join(details) + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer((obs.metrics_host, obs.metrics_port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="riskstream-supervisor", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _get(port: int, path: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=_SCRAPE_TIMEOUT_S) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return None
