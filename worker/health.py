"""One small HTTP port for operators: Prometheus ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` (liveness) fails when the poll loop has made no progress for ``stall_after_s``: a
wedged worker is restarted. ``/readyz`` (readiness) passes once the model is warmed up and the
consumer has joined its group (partitions assigned, or none to get because other members hold
them all); it fails again while shutting down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from schemas.redaction import redact_text
from worker.numbers import exposition_number

Probe = Callable[[], tuple[bool, str]]


class _RedactedLabels:
    """A view of a registry whose samples carry redacted label values, and nothing else changed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            copy.samples = [
                sample._replace(labels={name: redact_text(value) for name, value in sample.labels.items()})
                for sample in family.samples
            ]
            yield copy


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition, safe for data-loss-prevention scanners and still parseable.

    Label values are redacted like log lines (a topic or reason label could carry anything); sample
    values never go near the masker: each is rewritten by :func:`~worker.numbers.exposition_number`,
    which prints no run of 12 or more digits (a histogram sum or a Unix timestamp printed with 16-17
    digits is, one time in ten, a Luhn-valid "card number" to a PAN scanner).
    """
    lines = []
    for line in generate_latest(_RedactedLabels(registry)).decode().splitlines():
        if line and not line.startswith("#"):
            # A text-format sample line is "name{labels} value": no timestamps or exemplars here.
            name, _, value = line.rpartition(" ")
            line = f"{name} {exposition_number(float(value))}"
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


class HealthServer:
    def __init__(self, *, host: str, port: int, registry: CollectorRegistry, healthy: Probe, ready: Probe) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(HTTPStatus.OK, exposition(server.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (server.healthy if path == "/healthz" else server.ready)()
                    status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                    self._send(status, (detail + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would drown the logs

        self.registry = registry
        self.healthy = healthy
        self.ready = ready
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="riskstream-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
