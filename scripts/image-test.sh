#!/usr/bin/env bash
# `make image-test`: builds the server and operator images (scripts/images.sh; local bases unless
# LOCAL_BASES=0), starts the server image with the examples it carries and checks readiness and one exact
# inference, runs the operator image's --help, and lints every Dockerfile with hadolint. Every container it
# starts is removed, whatever happens.
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
# The build stages stay behind as untagged images (over 1 GB each); the cargo cache mounts keep rebuilds fast.
cleanup() {
  "$engine" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  "$engine" image prune -f >/dev/null 2>&1 || true
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$engine" run -d --name "$name" -p "127.0.0.1:$port:8080" "$server" >/dev/null
url=http://127.0.0.1:$port
for _ in $(seq 1 120); do
  curl -sf "$url/v2/health/ready" >/dev/null && break
  sleep 0.5
done
if ! curl -sf "$url/v2/health/ready" >/dev/null; then
  "$engine" logs "$name" >&2 || true
  echo "image-test: the server image did not turn ready within 60 s" >&2
  exit 1
fi
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
