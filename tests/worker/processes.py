"""Workers as real OS processes (``python -m worker worker``), for signal and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(values: dict[str, Any], prefix: str = "RISKSTREAM_") -> dict[str, str]:
    """Nested settings -> RISKSTREAM_SECTION__KEY environment variables."""
    env: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict):
            env.update(settings_env(value, f"{name}__"))
        elif value is not None:
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class WorkerProcess:
    """One ``riskstream worker`` process; its combined output goes to ``log_path``."""

    def __init__(self, settings: dict[str, Any], log_path: Path) -> None:
        self.port = free_port()
        values = {**settings, "observability": {**settings.get("observability", {}), "metrics_port": self.port,
                                                "metrics_host": "127.0.0.1", "log_format": "json"}}  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM_")}
        env.update(settings_env(values))
        env["PYTHONWARNINGS"] = "ignore"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker"],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}: {self.tail()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout_s}s: {self.tail()}")

    def metric(self, name: str) -> float:
        """Sum of every sample of a metric (all label sets)."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._log.close()

    def wait_for_log(self, *needles: str, timeout_s: float = 60.0) -> str:
        """Wait until the log holds one of ``needles``; returns the one found."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for needle in needles:
                if needle in text:
                    return needle
            time.sleep(0.2)
        raise AssertionError(f"none of {needles} logged within {timeout_s}s: {self.tail()}")

    def tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
