#!/usr/bin/env bash
# Copies the generated CRD (crds/, written by the operator's `crdgen`) into the Helm chart's crds/ directory,
# which Helm installs before the chart's templates. `--check` changes nothing and exits 1 on drift.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src_dir="$root/crds"
dst_dir="$root/charts/kubeinfer/crds"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

shopt -s nullglob
srcs=("$src_dir"/*.yaml)
if [ ${#srcs[@]} -eq 0 ]; then
  echo "sync-chart-crds: no CRD in $src_dir (run the operator's crdgen first)" >&2
  exit 1
fi

rc=0
for src in "${srcs[@]}"; do
  dst="$dst_dir/$(basename "$src")"
  if cmp -s "$src" "$dst"; then
    continue
  fi
  if [ $check -eq 1 ]; then
    echo "sync-chart-crds: charts/kubeinfer/crds/$(basename "$src") differs from crds/$(basename "$src");" \
      "run scripts/sync-chart-crds.sh" >&2
    rc=1
  else
    mkdir -p "$dst_dir"
    cp "$src" "$dst"
    echo "sync-chart-crds: updated charts/kubeinfer/crds/$(basename "$src")" >&2
  fi
done
# A CRD that no longer exists in crds/ must not linger in the chart.
for dst in "$dst_dir"/*.yaml; do
  [ -f "$src_dir/$(basename "$dst")" ] && continue
  if [ $check -eq 1 ]; then
    echo "sync-chart-crds: charts/kubeinfer/crds/$(basename "$dst") has no source in crds/" >&2
    rc=1
  else
    rm -f "$dst"
    echo "sync-chart-crds: removed charts/kubeinfer/crds/$(basename "$dst")" >&2
  fi
done
exit $rc
