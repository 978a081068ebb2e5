"""Checks of the ops artefacts against the code they describe (stdlib + PyYAML only).

1. Summarise the rendered manifests (kinds and counts per kustomization) and write them as JSON
   for check_settings.py.
2. Every PromQL expression the dashboard and the KEDA ScaledObjects use is parsed by
   Prometheus's own parser (the promql-check helper, ops/lint/promql), and every metric and
   label it selects or groups by must be one that worker/metrics.py really exports (read from
   the code with `ast`, including the series a histogram or counter expands to) or one that
   Prometheus attaches when scraping (namespace, pod, job, ...).
3. The dashboard is well formed: unique panel ids, panels inside the 24-column grid, every panel
   on the datasource variable, every template variable it uses defined.
4. Every KEDA trigger metadata key (and its value, where KEDA enumerates them) and every
   TriggerAuthentication parameter is one the scaler really reads, per the `keda:"name=..."` tags
   in the scaler's source in the pinned KEDA module (an unknown key is silently ignored by KEDA:
   a misspelt lagThreshold would fall back to its default of 10 and scale to the maximum).

Usage: check_ops.py --promql-check BIN --keda-src DIR --metrics worker/metrics.py
                    --dashboard FILE --objects-out FILE RENDERED.yaml...
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Labels Prometheus adds to every series of a target discovered through a ServiceMonitor
# (prometheus-operator) or the pod-role scrape config in ops/k8s/README.md.
TARGET_LABELS = frozenset({"namespace", "pod", "job", "instance", "service", "container", "endpoint"})
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")
KEDA_TAG = re.compile(r'keda:"([^"]*)"')
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\s*\)\s*$")


class Problems(list[str]):
    def add(self, where: str, message: str) -> None:
        self.append(f"{where}: {message}")


@dataclass
class Metric:
    name: str
    kind: str
    labels: frozenset[str]


@dataclass
class Series:
    """One exported series name: the metric it belongs to and the labels it may carry."""

    metric: Metric
    labels: frozenset[str] = field(default_factory=frozenset)


# -- the metrics the worker exports, read from its source ------------------------------------


def exported_series(metrics_py: Path) -> dict[str, Series]:
    """Series names (as Prometheus stores them) for each metric constructed in metrics_py."""
    tree = ast.parse(metrics_py.read_text(), filename=str(metrics_py))
    series: dict[str, Series] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kind = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if kind not in ("Counter", "Gauge", "Histogram", "Summary"):
            continue
        if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
            continue
        labels: list[str] = []
        label_node = node.args[2] if len(node.args) > 2 else None
        for keyword in node.keywords:
            if keyword.arg == "labelnames":
                label_node = keyword.value
        if isinstance(label_node, (ast.List, ast.Tuple)):
            labels = [
                elt.value for elt in label_node.elts if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
            ]
        metric = Metric(node.args[0].value, kind, frozenset(labels))
        base = metric.name
        if kind == "Counter":
            base = base.removesuffix("_total")
            names = {f"{base}_total": metric.labels, f"{base}_created": metric.labels}
        elif kind == "Gauge":
            names = {base: metric.labels}
        elif kind == "Histogram":
            names = {
                f"{base}_bucket": metric.labels | {"le"},
                f"{base}_sum": metric.labels,
                f"{base}_count": metric.labels,
                f"{base}_created": metric.labels,
            }
        else:  # Summary
            names = {base: metric.labels | {"quantile"}, f"{base}_sum": metric.labels, f"{base}_count": metric.labels}
        for name, name_labels in names.items():
            series[name] = Series(metric, frozenset(name_labels))
    return series


# -- PromQL ---------------------------------------------------------------------------------


@dataclass
class Query:
    where: str
    expr: str
    extra_labels: tuple[str, ...] = ()
    """Label names used outside the expression (label_values' second argument)."""


def for_parser(expr: str) -> str:
    """Grafana's macros and variables replaced by values the PromQL parser accepts."""
    expr = GRAFANA_INTERVALS.sub("5m", expr)
    return GRAFANA_VARIABLE.sub("x", expr)


def check_queries(queries: list[Query], promql_check: Path, series: dict[str, Series], problems: Problems) -> set[str]:
    payload = json.dumps([{"where": q.where, "expr": for_parser(q.expr)} for q in queries])
    # Our own helper, built from ops/lint/promql by ops/lint.sh.
    run = subprocess.run([str(promql_check)], input=payload, capture_output=True, text=True, check=False)  # noqa: S603
    if run.returncode != 0:
        problems.add("promql-check", run.stderr.strip() or f"exit {run.returncode}")
        return set()
    used: set[str] = set()
    for query, result in zip(queries, json.loads(run.stdout), strict=True):
        if result["error"]:
            problems.add(query.where, f"PromQL does not parse: {result['error']} in {query.expr!r}")
            continue
        allowed = set(TARGET_LABELS)
        for selector in result["selectors"]:
            name = selector["name"]
            if not name:
                problems.add(query.where, "selector without a metric name")
                continue
            known = series.get(name)
            if known is None:
                problems.add(query.where, f"metric {name!r} is not exported by worker/metrics.py")
                continue
            used.add(known.metric.name)
            allowed |= known.labels
            for label in selector["labels"]:
                if label not in known.labels | TARGET_LABELS:
                    has = sorted(known.labels) or "none"
                    problems.add(query.where, f"{name} has no label {label!r} (it has {has})")
        for label in [*result["grouping"], *query.extra_labels]:
            if label not in allowed:
                problems.add(query.where, f"groups or selects by {label!r}, which no metric in the query carries")
    return used


# -- dashboard ------------------------------------------------------------------------------


def walk_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(walk_panels(panel.get("panels", [])))
    return out


def dashboard_queries(path: Path, problems: Problems) -> tuple[list[Query], dict[str, int]]:
    where = path.name
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        problems.add(where, f"not valid JSON: {exc}")
        return [], {}
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dashboard:
            problems.add(where, f"missing top-level {key!r}")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.add(where, "schemaVersion must be an integer")
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    datasource_vars = {name for name, v in variables.items() if v.get("type") == "datasource"}
    if not datasource_vars:
        problems.add(where, "no datasource variable: panels would be tied to one Grafana's datasource uid")

    def uses(text: str, at: str) -> None:
        for match in GRAFANA_VARIABLE.finditer(text):
            name = match.group(1) or match.group(2)
            if not name.startswith("__") and name not in variables:
                problems.add(at, f"uses undefined variable ${name}")

    def check_datasource(ds: object, at: str) -> None:
        uid = ds.get("uid", "") if isinstance(ds, dict) else ""
        if not (isinstance(ds, dict) and ds.get("type") == "prometheus" and uid.strip("${}") in datasource_vars):
            problems.add(at, f"datasource must be the Prometheus datasource variable, not {ds!r}")

    queries: list[Query] = []
    for name, variable in variables.items():
        if variable.get("type") != "query":
            continue
        at = f"{where} variable {name}"
        check_datasource(variable.get("datasource"), at)
        text = variable.get("query")
        text = text.get("query", "") if isinstance(text, dict) else str(text)
        uses(text, at)
        match = LABEL_VALUES.match(text)
        if match is None:
            problems.add(at, f"expected label_values(selector, label), got {text!r}")
        elif match["selector"]:
            queries.append(Query(at, match["selector"], (match["label"],)))

    ids: Counter[object] = Counter()
    panels = walk_panels(dashboard.get("panels", []))
    for panel in panels:
        title = panel.get("title", "?")
        at = f"{where} panel {panel.get('id')} {title!r}"
        ids[panel.get("id")] += 1
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.add(at, "gridPos needs integer x, y, w, h")
        elif grid["x"] < 0 or grid["w"] <= 0 or grid["x"] + grid["w"] > 24:
            problems.add(at, f"gridPos {grid} leaves the 24-column grid")
        if panel.get("type") == "row":
            continue
        if not panel.get("description"):
            problems.add(at, "no description (say what the panel shows)")
        check_datasource(panel.get("datasource"), at)
        targets = panel.get("targets", [])
        if not targets:
            problems.add(at, "no queries")
        refs = Counter(t.get("refId") for t in targets)
        for ref, count in refs.items():
            if count > 1:
                problems.add(at, f"refId {ref} used {count} times")
        for target in targets:
            check_datasource(target.get("datasource"), f"{at} {target.get('refId')}")
            expr = target.get("expr", "")
            uses(expr, at)
            queries.append(Query(f"{at} {target.get('refId')}", expr))
    for panel_id, count in ids.items():
        if panel_id is None or count > 1:
            problems.add(where, f"panel id {panel_id} used {count} times")
    return queries, {"panels": sum(1 for p in panels if p.get("type") != "row"), "queries": len(queries)}


# -- rendered manifests ---------------------------------------------------------------------


def load_rendered(paths: list[Path], problems: Problems) -> dict[str, list[dict[str, Any]]]:
    rendered: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        try:
            rendered[path.stem] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        except yaml.YAMLError as exc:
            problems.add(path.name, f"not valid YAML: {exc}")
    return rendered


def scaledobject_queries(rendered: dict[str, list[dict[str, Any]]]) -> list[Query]:
    queries = []
    for name, objects in rendered.items():
        for obj in objects:
            if obj.get("kind") != "ScaledObject":
                continue
            for trigger in obj.get("spec", {}).get("triggers", []):
                if trigger.get("type") == "prometheus":
                    where = f"{name}: ScaledObject {obj['metadata']['name']} trigger {trigger.get('name', '?')}"
                    queries.append(Query(where, trigger.get("metadata", {}).get("query", "")))
    return queries


# -- KEDA triggers --------------------------------------------------------------------------


@dataclass
class ScalerParam:
    sources: frozenset[str]
    """Where KEDA reads it: triggerMetadata, authParams, resolvedEnv."""
    enum: frozenset[str] | None


def scaler_params(keda_src: Path, trigger_type: str) -> dict[str, ScalerParam] | None:
    """The parameters a scaler declares in its source (`keda:"name=...,order=...,enum=..."`)."""
    source = keda_src / "pkg" / "scalers" / f"{trigger_type.replace('-', '_')}_scaler.go"
    if not source.is_file():
        return None
    params = {}
    for tag in KEDA_TAG.findall(source.read_text()):
        fields = dict(part.strip().partition("=")[::2] for part in tag.split(","))
        if "name" not in fields:
            continue
        enum = frozenset(fields["enum"].split(";")) if fields.get("enum") else None
        for name in fields["name"].split(";"):
            params[name.strip()] = ScalerParam(frozenset(fields.get("order", "").split(";")), enum)
    return params


def check_keda(rendered: dict[str, list[dict[str, Any]]], keda_src: Path, problems: Problems) -> int:
    checked = 0
    for name, objects in rendered.items():
        auths = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "TriggerAuthentication"}
        for obj in objects:
            if obj.get("kind") != "ScaledObject":
                continue
            for trigger in obj.get("spec", {}).get("triggers", []):
                kind = trigger.get("type", "?")
                where = f"{name}: ScaledObject {obj['metadata']['name']} trigger {trigger.get('name', kind)}"
                params = scaler_params(keda_src, kind)
                if params is None:
                    problems.add(where, f"KEDA {keda_src.name.rpartition('@')[2]} has no scaler {kind!r}")
                    continue
                checked += 1
                for key, value in trigger.get("metadata", {}).items():
                    base = key.removesuffix("FromEnv")
                    param = params.get(base)
                    source = "resolvedEnv" if key != base else "triggerMetadata"
                    if param is None or source not in param.sources:
                        problems.add(where, f"KEDA's {kind} scaler reads no metadata {key!r}")
                    elif param.enum is not None and source == "triggerMetadata" and str(value) not in param.enum:
                        problems.add(where, f"{key}: {value!r} is not one of {sorted(param.enum)}")
                ref = trigger.get("authenticationRef", {}).get("name")
                if ref is None:
                    continue
                auth = auths.get(ref)
                if auth is None:
                    problems.add(where, f"authenticationRef {ref!r} is not in the rendered manifests")
                    continue
                for section in ("secretTargetRef", "configMapTargetRef", "env"):
                    for item in auth.get("spec", {}).get(section, []):
                        param = params.get(item.get("parameter", ""))
                        if param is None or "authParams" not in param.sources:
                            problems.add(
                                f"{name}: TriggerAuthentication {ref}",
                                f"{section} parameter {item.get('parameter')!r} is not read by KEDA's {kind} scaler",
                            )
    return checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promql-check", type=Path, required=True)
    parser.add_argument("--keda-src", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--dashboard", type=Path, required=True)
    parser.add_argument("--objects-out", type=Path, required=True)
    parser.add_argument("rendered", type=Path, nargs="+")
    args = parser.parse_args()
    problems = Problems()

    rendered = load_rendered(args.rendered, problems)
    for name, objects in rendered.items():
        kinds = Counter(obj.get("kind", "?") for obj in objects)
        listing = ", ".join(f"{kind} x{count}" if count > 1 else kind for kind, count in sorted(kinds.items()))
        print(f"  {name}: {len(objects)} objects ({listing})")
    args.objects_out.write_text(json.dumps(rendered))

    series = exported_series(args.metrics)
    metrics = {s.metric.name for s in series.values()}
    if not metrics:
        problems.add(str(args.metrics), "no Counter/Gauge/Histogram found: cannot check queries")
    dash_queries, dash_stats = dashboard_queries(args.dashboard, problems)
    keda_queries = scaledobject_queries(rendered)
    used = check_queries(dash_queries + keda_queries, args.promql_check, series, problems)
    if dash_stats:
        print(f"  dashboard {args.dashboard.name}: {dash_stats['panels']} panels, {dash_stats['queries']} queries")
    print(f"  KEDA prometheus triggers: {len(keda_queries)} queries")
    triggers = check_keda(rendered, args.keda_src, problems)
    keda_version = args.keda_src.name.rpartition("@")[2]
    print(f"  KEDA triggers: {triggers} checked against the scalers' parameters in KEDA {keda_version}")
    print(f"  metrics: {len(used & metrics)} of the {len(metrics)} in {args.metrics} are charted")
    unused = sorted(metrics - used)
    if unused:
        print(f"  not charted: {', '.join(unused)}")

    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
