"""TLS material of a ``sasl_ssl`` instance: a self-signed certificate for localhost and 127.0.0.1.

The keystore (the broker's key and certificate) and the truststore (the same certificate: the broker
is its own inter-broker client) are PKCS12 files made with the JDK's keytool; ``ca.pem`` is the
certificate in PEM for the clients' ``ssl_cafile``, verified with hostname checking on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from worker.tools.kafka_local.base import KafkaLocalError
from worker.tools.kafka_local.jars import java


def keytool() -> str:
    java_bin = Path(java()).resolve().parent
    keytool = java_bin / "keytool"
    if keytool.is_file():
        return str(keytool)
    found = shutil.which("keytool")
    if found is None:
        raise KafkaLocalError("keytool (from the JDK) is not on PATH")
    return found


def run_tool(command: list[str], what: str) -> str:
    """Run a JDK tool; raise ``KafkaLocalError`` with its output when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise KafkaLocalError(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


def ensure_tls(tls: Path, ca_file: Path, store_password: str) -> None:
    """Create the keystore, truststore and ``ca_file`` in ``tls`` unless all three exist."""
    keystore, truststore = tls / "keystore.p12", tls / "truststore.p12"
    if keystore.is_file() and truststore.is_file() and ca_file.is_file():
        return
    tls.mkdir(mode=0o700, exist_ok=True)
    for stale in (keystore, truststore, ca_file):
        stale.unlink(missing_ok=True)
    tool = keytool()
    run_tool(
        [
            tool, "-genkeypair", "-alias", "localhost", "-keyalg", "RSA", "-keysize", "2048",
            "-validity", "3650", "-storetype", "PKCS12", "-keystore", str(keystore),
            "-storepass", store_password, "-keypass", store_password, "-dname", "CN=localhost",
            "-ext", "SAN=dns:localhost,ip:127.0.0.1",
            "-ext", "KeyUsage=digitalSignature,keyEncipherment,keyCertSign",
            "-ext", "ExtendedKeyUsage=serverAuth,clientAuth",
            "-ext", "BasicConstraints:critical=ca:true,pathlen:0",
        ],
        "keytool -genkeypair",
    )  # fmt: skip
    run_tool(
        [
            tool, "-exportcert", "-rfc", "-alias", "localhost", "-keystore", str(keystore),
            "-storetype", "PKCS12", "-storepass", store_password, "-file", str(ca_file),
        ],
        "keytool -exportcert",
    )  # fmt: skip
    # The broker is its own inter-broker client over SASL_SSL, so it must trust its own cert.
    run_tool(
        [
            tool, "-importcert", "-noprompt", "-alias", "localhost", "-file", str(ca_file),
            "-storetype", "PKCS12", "-keystore", str(truststore), "-storepass", store_password,
        ],
        "keytool -importcert",
    )  # fmt: skip
    for path in (keystore, truststore):
        os.chmod(path, 0o600)
