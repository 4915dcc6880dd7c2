# syntax=docker/dockerfile:1
# kubeinfer-operator. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/kubeinfer/kubeinfer-operator:0.1.0 .
# The chart runs it with --server-image, --metrics-port, --log-format and, with more than one replica,
# --leader-election; POD_NAME and POD_NAMESPACE come from the downward API.
# Each base image is a build argument (see docker/server.Dockerfile).

ARG RUST_IMAGE=rust:1.95-bookworm
# distroless/cc: glibc, libgcc and CA certificates, no shell; the :nonroot tag runs as 65532.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY operator operator
COPY server server
COPY tests tests
# The edge container's nginx config is compiled into the operator (include_str! in resources/edge.rs).
COPY manifests/nginx manifests/nginx
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubeinfer-operator --bin kubeinfer-operator \
 && install -D -m 0755 target/release/kubeinfer-operator /out/kubeinfer-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/kubeinfer-operator /usr/local/bin/kubeinfer-operator
USER 65532:65532
EXPOSE 8080
LABEL org.opencontainers.image.title="kubeinfer-operator" \
      org.opencontainers.image.description="Reconciles kubeinfer ModelDeployments into model servers" \
      org.opencontainers.image.source="https://github.com/kubeinfer/kubeinfer" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/kubeinfer-operator"]
