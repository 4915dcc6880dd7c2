# syntax=docker/dockerfile:1
# kubeinfer-server, CPU. Build from the repository root (the context must be the root):
#   docker build -f docker/server.Dockerfile -t ghcr.io/kubeinfer/kubeinfer-server:0.1.0 .
# The same image runs the operator's init container (`kubeinfer-server pull ...`) and the server
# (`kubeinfer-server serve --model-repository /models`). It carries examples/models in /models, so that
# `docker run -p 8080:8080 IMAGE` serves them and a ModelDeployment can name file:///models/digits/1/model.onnx.
# Each base image is a build argument: `make images LOCAL_BASES=1` builds with bases made from Debian's
# archive (scripts/image-bases.sh) where no registry can be reached.

ARG ORT_VERSION=1.31.1
ARG RUST_IMAGE=rust:1.95-bookworm
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: the release binary ---------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the workspace needs to resolve and build (every member's manifest must exist).
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY operator operator
COPY server server
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubeinfer-server --bin kubeinfer-server \
 && install -D -m 0755 target/release/kubeinfer-server /out/kubeinfer-server

# --- ort: libonnxruntime.so from the PyPI wheel (as scripts/fetch-ort.sh does) ---------------------------
FROM ${PYTHON_IMAGE} AS ort
ARG ORT_VERSION
RUN python -m pip download --no-cache-dir --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.12 --dest /wheel "onnxruntime==${ORT_VERSION}" \
 && python -m zipfile -e /wheel/onnxruntime-*.whl /x \
 && install -D -m 0644 "/x/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" \
      "/out/libonnxruntime.so.${ORT_VERSION}"

# --- runtime ----------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG ORT_VERSION
# ca-certificates: `pull` fetches https://, s3:// and gs:// models; libstdc++6/libgcc-s1: ONNX Runtime.
# Unpinned on purpose: the distribution's security updates replace these versions, so a pin would break
# the build; the base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgcc-s1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=ort /out/ /opt/onnxruntime/lib/
COPY --from=build /out/kubeinfer-server /usr/local/bin/kubeinfer-server
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION}
# The model repository: the examples, which the init container's emptyDir hides when it writes
# /models/<name>/<version>/model.onnx here.
COPY --chown=65532:65532 examples/models /models
# Non-root, numeric so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080 8001
LABEL org.opencontainers.image.title="kubeinfer-server" \
      org.opencontainers.image.description="Serves ONNX models over the Open Inference Protocol (CPU)" \
      org.opencontainers.image.source="https://github.com/kubeinfer/kubeinfer" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/kubeinfer-server"]
CMD ["serve", "--model-repository", "/models"]
