# syntax=docker/dockerfile:1
# kubeinfer-server with ONNX Runtime's CUDA execution provider. Build from the repository root:
#   docker build -f docker/server-gpu.Dockerfile -t ghcr.io/kubeinfer/kubeinfer-server-gpu:0.1.0 .
# onnxruntime-gpu 1.31.1's CUDA provider links CUDA 13 (libcudart.so.13, libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10) and dlopens cuDNN 9, so the runtime stage is NVIDIA's CUDA 13 + cuDNN runtime image. The
# node needs an NVIDIA driver new enough for CUDA 13. The server runs on the GPU only with `--device cuda`
# (the operator passes it when spec.gpu.count > 0); it refuses to start rather than fall back to the CPU.

ARG ORT_VERSION=1.31.1
ARG RUST_IMAGE=rust:1.95-bookworm
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG RUNTIME_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# --- build: the release binary (built on bookworm, glibc 2.36; runs on Ubuntu 24.04's glibc 2.39) ------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY operator operator
COPY server server
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubeinfer-server --bin kubeinfer-server \
 && install -D -m 0755 target/release/kubeinfer-server /out/kubeinfer-server

# --- ort: libonnxruntime.so plus the CUDA and shared provider libraries from the onnxruntime-gpu wheel ----
FROM ${PYTHON_IMAGE} AS ort
ARG ORT_VERSION
RUN python -m pip download --no-cache-dir --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.12 --dest /wheel "onnxruntime-gpu==${ORT_VERSION}" \
 && python -m zipfile -e /wheel/onnxruntime_gpu-*.whl /x \
 && mkdir -p /out \
 && install -m 0644 "/x/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" \
      /x/onnxruntime/capi/libonnxruntime_providers_cuda.so \
      /x/onnxruntime/capi/libonnxruntime_providers_shared.so \
      /out/ \
 && rm -rf /wheel /x

# --- runtime ----------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG ORT_VERSION
# Unpinned on purpose: the distribution's security updates replace these versions, so a pin would break
# the build; the base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgcc-s1 \
 && rm -rf /var/lib/apt/lists/*
# ONNX Runtime loads its provider libraries from the directory libonnxruntime.so is in: keep them together.
COPY --from=ort /out/ /opt/onnxruntime/lib/
COPY --from=build /out/kubeinfer-server /usr/local/bin/kubeinfer-server
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN mkdir -p /models && chown 65532:65532 /models
USER 65532:65532
EXPOSE 8080 8001
LABEL org.opencontainers.image.title="kubeinfer-server-gpu" \
      org.opencontainers.image.description="Serves ONNX models over the Open Inference Protocol (CUDA 13)" \
      org.opencontainers.image.source="https://github.com/kubeinfer/kubeinfer" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/kubeinfer-server"]
CMD ["serve", "--model-repository", "/models", "--device", "cuda"]
