"""The broker's jars: fetched once from Maven Central (``pom.xml`` beside this file) and cached.

They live in ``$RISKSTREAM_KAFKA_CACHE/kafka-<version>/libs`` (default ``~/.cache/riskstream``); Maven
only runs when the cache is missing or incomplete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from worker.tools.kafka_local.base import KafkaLocalError, file_lock

POM = Path(__file__).resolve().parent / "pom.xml"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def _read_kafka_version() -> str:
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text(encoding="utf-8"))
    if match is None:
        raise KafkaLocalError(f"{POM} has no <kafka.version> property")
    return match.group(1)


KAFKA_VERSION = _read_kafka_version()


def cache_root() -> Path:
    """Root of the jar cache: ``$RISKSTREAM_KAFKA_CACHE``, else ``$XDG_CACHE_HOME/riskstream``."""
    override = os.environ.get("RISKSTREAM_KAFKA_CACHE")
    if override:
        return Path(override).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "riskstream").resolve()


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _jars_complete(libs: Path) -> bool:
    marker = libs / ".complete"
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("pom_sha256") != _pom_digest():
        return False
    jars = recorded.get("jars")
    return isinstance(jars, list) and bool(jars) and all((libs / str(jar)).is_file() for jar in jars)


def ensure_jars() -> Path:
    """Return the directory holding the broker's runtime jars, fetching them with Maven if needed.

    The copy goes to a temporary directory that is renamed into place, and a marker (jar list +
    digest of ``pom.xml``) is written after a successful copy, so an interrupted fetch or an edited
    POM is simply fetched again. Safe to call from concurrent processes.
    """
    version_dir = cache_root() / f"kafka-{KAFKA_VERSION}"
    libs = version_dir / "libs"
    if _jars_complete(libs):
        return libs
    with file_lock(version_dir / ".lock"):
        if _jars_complete(libs):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError("Maven (mvn) is needed once to fetch the Kafka jars, and is not on PATH")
        staging = version_dir / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn, "-B", "-q", "-f", str(POM),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]  # fmt: skip
        print(f"kafka_local: fetching Kafka {KAFKA_VERSION} jars into {libs} (once)", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise KafkaLocalError(f"fetching the Kafka jars failed (mvn exit {result.returncode}):\n{output}")
        marker = {"kafka_version": KAFKA_VERSION, "pom_sha256": _pom_digest(), "jars": jars}
        (staging / ".complete").write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        return libs


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaLocalError("java (17+) is not on PATH and JAVA_HOME is not set")
    return java
