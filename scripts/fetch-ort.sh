#!/usr/bin/env bash
# Fetches libonnxruntime.so from the onnxruntime wheel on PyPI into the cache the server looks in
# (the same path as kubeinfer_server::model::runtime::cached_library). Idempotent: does nothing when present.
#   usage: scripts/fetch-ort.sh [cpu|gpu]
set -euo pipefail
version=1.31.1
flavour=${1:-cpu}
cache=${KUBEINFER_CACHE_DIR:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/kubeinfer}}
cache=${cache:-$HOME/.cache/kubeinfer}
case "$flavour" in
  cpu) package=onnxruntime; dir="$cache/onnxruntime-$version" ;;
  gpu) package=onnxruntime-gpu; dir="$cache/onnxruntime-gpu-$version" ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
lib="$dir/libonnxruntime.so.$version"
if [ -f "$lib" ]; then
  echo "$lib"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
  --python-version 3.12 --dest "$tmp" "$package==$version" >&2
wheel=$(ls "$tmp"/*.whl)
mkdir -p "$dir"
# The GPU flavour also needs the provider libraries, which ONNX Runtime looks for beside itself.
python3 - "$wheel" "$dir" "$flavour" <<'PY'
import sys, zipfile, os
wheel, dest, flavour = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        wanted = base.startswith("libonnxruntime.so") or (flavour == "gpu" and base.startswith("libonnxruntime_providers_"))
        if name.startswith("onnxruntime/capi/") and wanted:
            target = os.path.join(dest, base)
            with z.open(name) as src, open(target + ".part", "wb") as out:
                out.write(src.read())
            os.replace(target + ".part", target)
PY
echo "$lib"
