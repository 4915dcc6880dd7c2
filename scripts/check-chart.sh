#!/usr/bin/env bash
# Tests of the install material: the Helm chart, the rendered manifests, the examples, the nginx edge config,
# and the metric names the alerts and the dashboard use. Exits non-zero if anything fails, naming it.
#   usage: scripts/check-chart.sh [KNOWN_METRICS_FILE ...]
# KNOWN_METRICS_FILE: metric names, one a line, or a raw /metrics scrape (Prometheus text format); default
# charts/kubeinfer/known-metrics.txt. charts/kubeinfer/external-metrics.txt (kube-state-metrics) is always
# added. Needs: .cache/venv (scripts/test-deps.sh), helm (scripts/fetch-helm.sh, run here), nginx.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
chart=charts/kubeinfer
crd=crds/modeldeployments.kubeinfer.io.yaml
venv=${KUBEINFER_TEST_VENV:-$root/.cache/venv}
py="$venv/bin/python"
kv="$venv/bin/kubernetes-validate"
# Oldest Kubernetes kubernetes-validate 1.37.0 has schemas for that we check against, and its newest.
# (Kubernetes 1.20, the chart's floor, is checked against a real API server by the end-to-end tests.)
kube_versions=(1.30.0 1.37.0)

if [ $# -gt 0 ]; then
  known=$(IFS=,; echo "$*")
else
  known=$chart/known-metrics.txt
fi
known="$known,$chart/external-metrics.txt"

failed=()
step() { echo "== $*"; }
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*" >&2; failed+=("$*"); }

for tool in "$py" "$kv"; do
  [ -x "$tool" ] || { echo "check-chart: $tool is missing; run scripts/test-deps.sh" >&2; exit 2; }
done
helm=$(scripts/fetch-helm.sh) || { echo "check-chart: cannot fetch helm" >&2; exit 2; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- helm lint ----------------------------------------------------------------------------------------------
step "helm lint --strict"
if "$helm" lint --strict "$chart" >"$tmp/lint.log" 2>&1; then
  ok "helm lint --strict $chart"
else
  cat "$tmp/lint.log" >&2
  bad "helm lint --strict $chart"
fi
if "$helm" lint --strict "$chart" --set replicaCount=2,metrics.serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,watchNamespace=models >"$tmp/lint.log" 2>&1; then
  ok "helm lint --strict $chart (every option on)"
else
  cat "$tmp/lint.log" >&2
  bad "helm lint --strict $chart (every option on)"
fi

# --- renders, validated against Kubernetes' own schemas ------------------------------------------------
# name|helm flags
renders=(
  "default|"
  "all-features|--set replicaCount=2 --set metrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true --set prometheusRule.additionalAlertLabels.team=ml --set metrics.serviceMonitor.labels.release=prometheus --set prometheusAdapter.rules.enabled=true --set prometheusUrl=http://prometheus-operated.monitoring:9090 --set allowedImages[0]=ghcr.io/kubeinfer/ --set allowedImages[1]=registry.local/nginx"
  "watch-namespace|--set watchNamespace=models --set leaderElection.enabled=true --set serviceAccount.create=false --set serviceAccount.name=operator --set image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000"
)
for r in "${renders[@]}"; do
  name=${r%%|*}
  flags=${r#*|}
  step "helm template ($name)"
  # shellcheck disable=SC2086
  if ! "$helm" template kubeinfer "$chart" --namespace kubeinfer-system --include-crds $flags \
      >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
    cat "$tmp/$name.err" >&2
    bad "helm template ($name)"
    continue
  fi
  ok "helm template ($name)"
  if ! "$py" scripts/check_chart.py split "$tmp/$name.yaml" "$tmp/$name.builtin.yaml" "$tmp/$name.custom.yaml" \
      >"$tmp/$name.split"; then
    bad "split ($name)"
    continue
  fi
  for v in "${kube_versions[@]}"; do
    if "$kv" --strict --quiet --kubernetes-version "$v" "$tmp/$name.builtin.yaml" >"$tmp/kv.log" 2>&1 \
        && ! grep -q -E "^(WARN|ERROR)" "$tmp/kv.log"; then
      ok "kubernetes-validate --strict $v ($name: $(cat "$tmp/$name.split"))"
    else
      cat "$tmp/kv.log" >&2
      bad "kubernetes-validate --strict $v ($name)"
    fi
  done
  if "$py" scripts/check_chart.py structure "$tmp/$name.yaml"; then
    ok "structure of custom resources, dashboard and labels ($name)"
  else
    bad "structure of custom resources, dashboard and labels ($name)"
  fi
done

# Leader election follows replicaCount: the flag and the Lease Role appear together, only with > 1 replica.
step "leader election follows replicaCount"
check_leader() { # render-name expect(yes|no)
  local args=0 role=0
  grep -q -- '- --leader-election$' "$tmp/$1.yaml" && args=1
  grep -q '^kind: Role$' "$tmp/$1.yaml" && role=1
  local want=00
  [ "$2" = yes ] && want=11
  if [ "$args$role" = "$want" ]; then
    ok "leader election $2 ($1)"
  else
    bad "leader election should be $2 in render $1 (flag=$args role=$role)"
  fi
}
check_leader default no
check_leader all-features yes
check_leader watch-namespace yes

# --- the values schema rejects mistakes ---------------------------------------------------------------------
step "values.schema.json"
if "$helm" install kubeinfer "$chart" --namespace kubeinfer-system --dry-run=client >"$tmp/ok.log" 2>&1; then
  ok "helm install --dry-run with default values"
else
  cat "$tmp/ok.log" >&2
  bad "helm install --dry-run with default values"
fi
bad_values=(
  "--set-string replicaCount=two"
  "--set replicaCout=2"
  "--set metrics.serviceMonitor.enable=true"
  "--set logFormat=xml"
  "--set watchNamespace=Not_A_Namespace"
  "--set prometheusRule.thresholds.apiOverheadP99Seconds=-1"
  "--set image.pullPolicy=Sometimes"
  "--set prometheusUrl=prometheus:9090"
  "--set allowedImages=ghcr.io/kubeinfer/"
  "--set prometheusAdapter.rules.enable=true"
)
for b in "${bad_values[@]}"; do
  # shellcheck disable=SC2086
  if "$helm" install kubeinfer "$chart" --namespace kubeinfer-system --dry-run=client $b >"$tmp/bad.log" 2>&1; then
    bad "helm install --dry-run $b should fail (values.schema.json)"
  elif grep -q -i "schema" "$tmp/bad.log"; then
    ok "helm install --dry-run $b fails: $(grep -m1 -E "^- " "$tmp/bad.log" | cut -c3-100)"
  else
    cat "$tmp/bad.log" >&2
    bad "helm install --dry-run $b failed, but not on the values schema"
  fi
done

# --- generated files are in sync ----------------------------------------------------------------------------
step "generated files"
if scripts/sync-chart-crds.sh --check; then ok "chart CRDs match crds/"; else bad "scripts/sync-chart-crds.sh --check"; fi
if scripts/render-manifests.sh --check; then ok "manifests/ match the chart"; else bad "scripts/render-manifests.sh --check"; fi
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize manifests >"$tmp/kustomize.yaml" 2>"$tmp/kustomize.err" \
      && "$py" scripts/check_chart.py split "$tmp/kustomize.yaml" "$tmp/k.builtin.yaml" "$tmp/k.custom.yaml" >/dev/null \
      && "$kv" --strict --quiet --kubernetes-version "${kube_versions[0]}" "$tmp/k.builtin.yaml" >"$tmp/kv.log" 2>&1 \
      && ! grep -q -E "^(WARN|ERROR)" "$tmp/kv.log"; then
    ok "kubectl kustomize manifests/ builds and validates"
  else
    cat "$tmp/kustomize.err" "$tmp/kv.log" >&2 2>/dev/null
    bad "kubectl kustomize manifests/"
  fi
else
  echo "skip kubectl kustomize manifests/ (no kubectl)"
fi

# --- examples -----------------------------------------------------------------------------------------------
step "manifests/examples against the CRD schema"
if [ ! -f "$crd" ]; then
  bad "$crd is missing (run the operator's crdgen)"
elif "$py" scripts/check_chart.py examples "$crd" manifests/examples/*.yaml >"$tmp/ex-other.yaml"; then
  ok "every ModelDeployment in manifests/examples matches the CRD"
  if [ -s "$tmp/ex-other.yaml" ] && [ "$(cat "$tmp/ex-other.yaml")" != "[]" ]; then
    for v in "${kube_versions[@]}"; do
      if "$kv" --strict --quiet --kubernetes-version "$v" "$tmp/ex-other.yaml" >"$tmp/kv.log" 2>&1 \
          && ! grep -q -E "^(WARN|ERROR)" "$tmp/kv.log"; then
        ok "other kinds in manifests/examples validate against $v"
      else
        cat "$tmp/kv.log" >&2
        bad "other kinds in manifests/examples against $v"
      fi
    done
  fi
else
  bad "manifests/examples against $crd"
fi

# --- the operator's built objects ----------------------------------------------------------------------------
# operator/tests/snapshots holds what the operator builds for each example (the snapshot test keeps it exact):
# Kubernetes' kinds against its 1.30+ schemas, KEDA's ScaledObject against KEDA's CRD.
step "operator/tests/snapshots against Kubernetes' and KEDA's schemas"
cat operator/tests/snapshots/*.yaml >"$tmp/built.yaml"
if "$py" scripts/check_chart.py split "$tmp/built.yaml" "$tmp/built.builtin.yaml" "$tmp/built.custom.yaml" \
    >"$tmp/built.split"; then
  for v in "${kube_versions[@]}"; do
    if "$kv" --strict --quiet --kubernetes-version "$v" "$tmp/built.builtin.yaml" >"$tmp/kv.log" 2>&1 \
        && ! grep -q -E "^(WARN|ERROR)" "$tmp/kv.log"; then
      ok "kubernetes-validate --strict $v (operator snapshots: $(cat "$tmp/built.split"))"
    else
      cat "$tmp/kv.log" >&2
      bad "kubernetes-validate --strict $v (operator snapshots)"
    fi
  done
  if "$py" scripts/check_chart.py objects tests/fixtures/keda/scaledobjects.keda.sh.yaml "$tmp/built.custom.yaml"; then
    ok "ScaledObjects in the operator snapshots match KEDA's CRD"
  else
    bad "ScaledObjects in the operator snapshots against KEDA's CRD"
  fi
else
  bad "split (operator snapshots)"
fi

# --- metric names -------------------------------------------------------------------------------------------
step "metric names in alerts and dashboard"
if [ -f "$tmp/all-features.yaml" ] \
    && "$py" scripts/check_chart.py metrics "$known" "$tmp/all-features.yaml" "$chart/dashboards/kubeinfer.json"; then
  ok "every metric name is known ($known)"
else
  bad "metric names (known: $known)"
fi

# --- nginx edge ---------------------------------------------------------------------------------------------
step "nginx edge config"
mkdir -p "$tmp/nginx"
if "$nginx" -t -q -p "$tmp/nginx/" -e stderr -c "$root/manifests/nginx/nginx.conf" 2>"$tmp/nginx.log"; then
  ok "nginx -t manifests/nginx/nginx.conf"
else
  cat "$tmp/nginx.log" >&2
  bad "nginx -t manifests/nginx/nginx.conf"
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "check-chart: ${#failed[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "check-chart: all checks passed"
