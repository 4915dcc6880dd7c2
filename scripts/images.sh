#!/usr/bin/env bash
# Builds the server and operator images with podman or docker, whichever is installed:
#   scripts/images.sh                  bases from their registries (rust, python, debian, distroless)
#   LOCAL_BASES=1 scripts/images.sh    bases made from Debian's archive by scripts/image-bases.sh, for
#                                      machines that cannot reach a container registry
# The images are ghcr.io/kubeinfer/kubeinfer-server:$TAG and ghcr.io/kubeinfer/kubeinfer-operator:$TAG
# (TAG defaults to the workspace version). The GPU image needs NVIDIA's CUDA base and is not built here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
engine=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "images: install podman or docker" >&2; exit 1; }
tag=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
[[ $engine == *podman && -z ${CONTAINERS_CONF:-} ]] && export CONTAINERS_CONF=$(scripts/podman-conf.sh)

server_args=() operator_args=() common=()
if [ "${LOCAL_BASES:-0}" = 1 ]; then
  ENGINE=$engine scripts/image-bases.sh
  builder=localhost/kubeinfer-base/build:bookworm
  server_args=(--build-arg "RUST_IMAGE=$builder" --build-arg "PYTHON_IMAGE=$builder"
               --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim)
  operator_args=(--build-arg "RUST_IMAGE=$builder" --build-arg RUNTIME_IMAGE=localhost/kubeinfer-base/cc:nonroot)
  common=(--pull=never)
fi

build() {
  local name=$1 dockerfile=$2; shift 2
  local ignore=()
  # BuildKit finds <Dockerfile>.dockerignore by itself; podman is told.
  [[ $engine == *podman ]] && ignore=(--ignorefile "$dockerfile.dockerignore")
  echo "images: building $name:$tag" >&2
  local started=$SECONDS
  "$engine" build "${common[@]}" "${ignore[@]}" "$@" -f "$dockerfile" -t "$name:$tag" . >&2
  echo "images: $name:$tag built in $((SECONDS - started)) s" >&2
}

build ghcr.io/kubeinfer/kubeinfer-server docker/server.Dockerfile "${server_args[@]}"
build ghcr.io/kubeinfer/kubeinfer-operator docker/operator.Dockerfile "${operator_args[@]}"
echo "ghcr.io/kubeinfer/kubeinfer-server:$tag ghcr.io/kubeinfer/kubeinfer-operator:$tag"
