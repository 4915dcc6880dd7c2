#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the server with --device cuda answers correctly, and the serving
# benchmark with the models on the GPU. Needs the onnxruntime-gpu library (scripts/fetch-ort.sh gpu puts it
# in ~/.cache/kubeinfer/onnxruntime-gpu-1.31.1, or set ORT_DYLIB_PATH), CUDA 13 and cuDNN 9 on
# LD_LIBRARY_PATH, and release binaries (make build; cargo build --release -p kubeinfer-tests).
#   usage: scripts/gpu-check.sh [OUTPUT_DIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/gpu-check}
bin=${KUBEINFER_BIN:-$root/target/release}
mkdir -p "$out"
cd "$root"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-${KUBEINFER_CACHE_DIR:-$HOME/.cache/kubeinfer}/onnxruntime-gpu-1.31.1/libonnxruntime.so.1.31.1}
nvidia-smi -L
"$bin/kubeinfer-server" serve --model-repository examples/models --http-host 127.0.0.1 --http-port 18080 --device cuda \
  >"$out/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do curl -sf localhost:18080/v2/health/ready >/dev/null && break; sleep 0.5; done
{
  echo "== ready: $(curl -s -o /dev/null -w '%{http_code}' localhost:18080/v2/health/ready)"
  echo "== affine v2 (expect y = 2 5 8 11, total = 10)"
  curl -s localhost:18080/v2/models/affine/infer -d '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
  echo
  echo "== heavy_mlp instance_group (expect KIND_GPU)"
  curl -s localhost:18080/v2/models/heavy_mlp/config | python3 -c 'import json,sys; print(json.load(sys.stdin)["instance_group"])'
  echo "== digits against ONNX Runtime's CPU reference"
  python3 - <<'PY'
import json, urllib.request
ref = json.load(open('server/tests/fixtures/digits_reference.json'))
x = ref['inputs']['float_input']
body = json.dumps({"inputs": [{"name": "float_input", "shape": x['shape'], "datatype": "FP32", "data": x['data']}]}).encode()
out = json.load(urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:18080/v2/models/digits/infer', body)))
o = {t['name']: t for t in out['outputs']}
print('labels equal:', o['label']['data'] == ref['outputs']['label']['data'])
print('max probability difference:', max(abs(a - b) for a, b in zip(o['probabilities']['data'], ref['outputs']['probabilities']['data'])))
PY
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv
} >"$out/gpu-check.txt" 2>&1
kill "$server"
wait "$server"
echo "server exit after SIGTERM: $?" >>"$out/gpu-check.txt"
"$bin/kubeinfer-bench" serving --server "$bin/kubeinfer-server" --models examples/models --device cuda \
  --duration 3s --warmup 1s >"$out/bench-gpu.md" 2>&1
echo "bench exit: $?" >>"$out/bench-gpu.md"
cat "$out/gpu-check.txt"
tail -8 "$out/bench-gpu.md"
