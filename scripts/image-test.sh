#!/usr/bin/env bash
# `make image-test`: builds the server and operator images (scripts/images.sh; local bases unless
# LOCAL_BASES=0), starts the server image with the examples it carries and checks readiness and one exact
# inference, runs the operator image's --help, lints every Dockerfile with hadolint, checks that the chart
# installs these images, and starts the server image as the operator's Deployment for cpu.yaml starts it.
# Every container it starts is removed, whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
engine=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "image-test: install podman or docker (scripts/test-deps.sh does)" >&2; exit 1; }
export ENGINE=$engine
[[ $engine == *podman && -z ${CONTAINERS_CONF:-} ]] && export CONTAINERS_CONF=$(scripts/podman-conf.sh)

hadolint=${HADOLINT:-$root/.cache/venv/bin/hadolint}
"$hadolint" --failure-threshold warning docker/server.Dockerfile docker/operator.Dockerfile docker/server-gpu.Dockerfile
echo "image-test: hadolint passed on the three Dockerfiles"

read -r server operator < <(LOCAL_BASES=${LOCAL_BASES:-1} scripts/images.sh)
name=kubeinfer-image-test-$$
pod=$name-pod
# The build stages stay behind as untagged images (over 1 GB each); the cargo cache mounts keep rebuilds fast.
cleanup() {
  "$engine" rm -f -t 0 "$name" "$pod" >/dev/null 2>&1 || true
  "$engine" image prune -f >/dev/null 2>&1 || true
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_ready CONTAINER URL WHAT: waits up to 60 s for URL to answer 200, else prints the logs and fails.
wait_ready() {
  for _ in $(seq 1 120); do
    curl -sf "$2" >/dev/null && return 0
    sleep 0.5
  done
  "$engine" logs "$1" >&2 || true
  echo "image-test: $3 did not turn ready within 60 s" >&2
  exit 1
}
port=$(free_port)
"$engine" run -d --name "$name" -p "127.0.0.1:$port:8080" "$server" >/dev/null
url=http://127.0.0.1:$port
wait_ready "$name" "$url/v2/health/ready" "the server image"
answer=$(curl -sf "$url/v2/models/affine/versions/1/infer" \
  -d '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"y"}]}')
# affine v1 is y = 2x + 1.
python3 - "$answer" <<'PY'
import json, sys
y = json.loads(sys.argv[1])["outputs"][0]
assert y["name"] == "y" and y["data"] == [3.0, 5.0, 7.0, 9.0], y
PY
echo "image-test: $server is ready and answers affine exactly"
user=$("$engine" inspect --format '{{.Config.User}}' "$server")
[ "$user" = "65532:65532" ] || { echo "image-test: $server runs as '$user', not 65532:65532" >&2; exit 1; }

help=$("$engine" run --rm "$operator" --help)
grep -q "^Usage: kubeinfer-operator" <<<"$help" || { echo "image-test: unexpected --help: $help" >&2; exit 1; }
echo "image-test: $operator --help runs"

# The images the chart installs by default are the ones just built (its appVersion is their tag).
helm=$(scripts/fetch-helm.sh 2>/dev/null)
rendered=$("$helm" template kubeinfer charts/kubeinfer --namespace kubeinfer-system)
grep -q "image: \"\?$operator\"\?$" <<<"$rendered" \
  || { echo "image-test: the chart does not install $operator" >&2; exit 1; }
grep -q -- "--server-image=$server$" <<<"$rendered" \
  || { echo "image-test: the chart's --server-image is not $server" >&2; exit 1; }
echo "image-test: the chart installs $operator and gives ModelDeployments $server"

# The server image as the kubelet starts the operator's Deployment for manifests/examples/cpu.yaml (its
# snapshot, which operator/tests/snapshots.rs keeps equal to what the operator builds): the args naming
# the file:// model baked into the image, the ConfigMap as environment, user 65532, a read-only root
# filesystem with the emptyDir on /tmp, no capabilities.
mapfile -t spec < <(.cache/venv/bin/python scripts/pod-run-args.py operator/tests/snapshots/cpu.yaml)
split=0
for i in "${!spec[@]}"; do [ "${spec[$i]}" = --image-- ] && split=$i; done
[ "$split" -gt 0 ] || { echo "image-test: pod-run-args.py printed no --image-- line" >&2; exit 1; }
http_port=$(free_port)
metrics_port=$(free_port)
"$engine" run -d --name "$pod" -p "127.0.0.1:$http_port:8080" -p "127.0.0.1:$metrics_port:9090" \
  "${spec[@]:0:$split}" "$server" "${spec[@]:$((split + 1))}" >/dev/null
url=http://127.0.0.1:$http_port
wait_ready "$pod" "$url/v2/models/digits/ready" "the server, run as the operator's Deployment runs it,"
# The eight reference images, whose labels onnxruntime itself gave as 0 to 7.
reference=server/tests/fixtures/digits_reference.json
digits=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["inputs"]["float_input"]
print(json.dumps({"inputs": [{"name": "float_input", "shape": r["shape"], "datatype": "FP32", "data": r["data"]}]}))' "$reference")
answer=$(curl -sf "$url/v2/models/digits/infer" -d "$digits") \
  || { "$engine" logs "$pod" >&2; echo "image-test: the digits inference failed" >&2; exit 1; }
python3 - "$answer" "$reference" <<'PY'
import json, sys
answer, reference = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
label = next(o for o in answer["outputs"] if o["name"] == "label")
assert label["data"] == reference["outputs"]["label"]["data"], label
PY
metrics=$(curl -sf "http://127.0.0.1:$metrics_port/metrics") \
  || { echo "image-test: nothing on the Deployment's metrics port" >&2; exit 1; }
grep -q '^kubeinfer_build_info' <<<"$metrics" || { echo "image-test: no kubeinfer_build_info in /metrics" >&2; exit 1; }
echo "image-test: $server runs as the operator's Deployment runs it (read-only, user 65532): ready, infers digits, metrics on 9090"
