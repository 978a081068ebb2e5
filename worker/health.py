"""One small HTTP port for operators: Prometheus ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` (liveness) fails when the poll loop has made no progress for ``stall_after_s``: a
wedged worker is restarted. ``/readyz`` (readiness) passes once the model is warmed up and the
consumer has joined its group (partitions assigned, or none to get because other members hold
them all); it fails again while shutting down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from schemas.redaction import mask_pans

Probe = Callable[[], tuple[bool, str]]
_SIGNIFICANT_DIGITS = 12


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition, safe for data-loss-prevention scanners.

    Float samples are written with at most 12 significant digits: a histogram sum or a Unix
    timestamp printed with 16-17 digits is, one time in ten, a Luhn-valid "card number" to a PAN
    scanner. Label values then go through the same PAN masking as every log line.
    """
    lines = []
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and value not in ("NaN", "+Inf", "-Inf"):
                line = f"{name} {number:.{_SIGNIFICANT_DIGITS}g}"
        lines.append(line)
    return mask_pans("\n".join(lines) + "\n").encode()


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
