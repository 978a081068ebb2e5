"""Load each rendered worker Deployment's environment through the worker's own settings class.

Run with the project's Python (it imports worker.settings). For every Deployment in the rendered
manifests (JSON written by check_ops.py), the container environment is assembled the way the
kubelet would (envFrom ConfigMaps, then env; Secret and fieldRef values get placeholders), and:

- every RISKSTREAM_* variable must name a real setting (a typo would otherwise be ignored or
  rejected only at start-up in the cluster);
- worker.settings.load_settings() must accept the result (types, ranges, SASL completeness);
- the manifest must agree with the settings: the grace period covers the drain, the probes and
  the metrics port match, a CUDA device comes with exactly one GPU (and CPU with none), the model
  directory is on a read-only mount, and the CPU threads fit the CPU request.

Usage: python check_settings.py OBJECTS.json   (from the repository root)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path.cwd()))
from worker.errors import ConfigError
from worker.settings import Settings, load_settings

PREFIX = "RISKSTREAM_"
# Kubernetes ends a pod's grace period with SIGKILL; after the drain the worker still closes its
# consumer, producer and stage threads (up to ~10 s), so keep this much slack.
CLOSE_SLACK_S = 25
PLACEHOLDERS = {"metadata.name": "riskstream-5d9c7b8f4-x2x7q", "metadata.namespace": "riskstream"}


def setting_names(model: type[BaseModel], prefix: str = PREFIX) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def container_env(
    container: dict[str, Any], config_maps: dict[str, dict[str, str]], where: str, problems: list[str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef", {}).get("name")
        if ref is not None:
            if ref not in config_maps:
                problems.append(f"{where}: envFrom ConfigMap {ref} is not in the rendered manifests")
            env.update(config_maps.get(ref, {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = "placeholder-from-secret"
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = PLACEHOLDERS.get(item["valueFrom"]["fieldRef"]["fieldPath"], "placeholder")
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = config_maps.get(ref["name"], {}).get(ref["key"], "")
    return env


def load(env: dict[str, str]) -> Settings:
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith(PREFIX) or k == "HOSTNAME"}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def check_deployment(
    deployment: dict[str, Any], config_maps: dict[str, dict[str, str]], where: str, problems: list[str]
) -> str | None:
    pod = deployment["spec"]["template"]["spec"]
    container = next((c for c in pod["containers"] if c.get("name") == "worker"), None)
    if container is None:
        problems.append(f"{where}: no container named worker")
        return None
    env = container_env(container, config_maps, where, problems)
    valid = setting_names(Settings)
    for key in env:
        if key.upper().startswith(PREFIX) and key.upper() not in valid:
            problems.append(f"{where}: {key} is not a riskstream setting")
    try:
        settings = load(env)
    except ConfigError as exc:
        problems.append(f"{where}: the worker would refuse this environment: {exc}")
        return None

    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < settings.drain_timeout_s + CLOSE_SLACK_S:
        problems.append(
            f"{where}: terminationGracePeriodSeconds {grace} < drain_timeout_s "
            f"{settings.drain_timeout_s:g} + {CLOSE_SLACK_S} s to close"
        )
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    port = settings.observability.metrics_port
    if ports.get("metrics") != port:
        problems.append(f"{where}: container port 'metrics' is {ports.get('metrics')}, the worker listens on {port}")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = container.get(probe, {}).get("httpGet")
        if http is None:
            problems.append(f"{where}: no {probe}")
        elif http.get("path") != path or ports.get(http.get("port"), http.get("port")) != port:
            problems.append(f"{where}: {probe} should GET {path} on port {port}, not {http}")
    resources = container.get("resources", {})
    gpus = int(resources.get("limits", {}).get("nvidia.com/gpu", 0))
    device = settings.model.device
    if device.startswith("cuda") and gpus != 1:
        problems.append(f"{where}: device {device} needs exactly one nvidia.com/gpu, has {gpus}")
    if device == "cpu" and gpus:
        problems.append(f"{where}: device cpu but the pod holds {gpus} GPU(s)")
    mounts = [
        m
        for m in container.get("volumeMounts", [])
        if str(settings.model.dir).startswith(m["mountPath"].rstrip("/") + "/")
    ]
    if not mounts or not all(m.get("readOnly") for m in mounts):
        problems.append(f"{where}: model dir {settings.model.dir} is not on a read-only volume mount")
    cpu_request = resources.get("requests", {}).get("cpu")
    if settings.model.threads is not None and cpu_request and settings.model.threads > cpu_cores(str(cpu_request)):
        problems.append(f"{where}: {settings.model.threads} CPU threads exceed the CPU request {cpu_request}")
    return (
        f"device {device}, {gpus} GPU, drain {settings.drain_timeout_s:g}s / grace {grace}s, "
        f"budget {settings.batching.latency_budget_ms:g} ms, guarantee {settings.guarantee}"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    rendered: dict[str, list[dict[str, Any]]] = json.loads(Path(argv[0]).read_text())
    problems: list[str] = []
    checked = 0
    for name, objects in rendered.items():
        config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o.get("kind") == "ConfigMap"}
        for obj in objects:
            if obj.get("kind") == "Deployment":
                where = f"{name}: Deployment {obj['metadata']['name']}"
                summary = check_deployment(obj, config_maps, where, problems)
                checked += 1
                if summary:
                    print(f"  {where}: settings load ({summary})")
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if checked == 0:
        print("FAIL no Deployment found in the rendered manifests", file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
