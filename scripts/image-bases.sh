#!/usr/bin/env bash
# Makes the base images the Dockerfiles build on, locally, for machines with no container registry: from
# Debian's package archive with mmdebstrap, imported into podman (or docker); scripts/images.sh passes
# them to the Dockerfiles as build arguments. Idempotent: an image that exists is kept.
#
#   localhost/kubeinfer-base/build:bookworm  build stages: gcc, cmake, python3 + pip, this machine's Rust
#                                            toolchain, and this machine's CA certificates (a TLS-inspecting
#                                            proxy signs crates.io and PyPI here). Never shipped: only build
#                                            stages use it.
#   localhost/debian:bookworm-slim           the server's runtime base (as Docker Hub's debian:bookworm-slim)
#   localhost/kubeinfer-base/cc:nonroot      the operator's runtime base (as distroless/cc-debian12:nonroot:
#                                            glibc, libgcc, libstdc++, CA certificates, no shell, user 65532)
set -euo pipefail
engine=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "image-bases: neither podman nor docker is installed" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "image-bases: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
suite=bookworm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exists() { "$engine" image exists "$1" 2>/dev/null || "$engine" image inspect "$1" >/dev/null 2>&1; }
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright')

build=localhost/kubeinfer-base/build:$suite
if ! exists "$build"; then
  toolchain=$(rustc --print sysroot)
  echo "image-bases: making $build with the toolchain in $toolchain" >&2
  mmdebstrap --variant=minbase --format=tar "${slim[@]}" \
    --include=ca-certificates,gcc,g++,libc6-dev,make,cmake,perl,pkg-config,python3,python3-pip,python-is-python3 \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo/bin\" && cp -a $toolchain/bin $toolchain/lib $toolchain/libexec \"\$1/usr/local/rust/\"" \
    --customize-hook='for b in cargo rustc rustdoc; do ln -s ../../rust/bin/$b "$1/usr/local/cargo/bin/$b"; done' \
    "$suite" "$work/build.tar" >&2
  "$engine" import --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' "$work/build.tar" "$build" >/dev/null
  rm -f "$work/build.tar"
fi

debian=localhost/debian:$suite-slim
if ! exists "$debian"; then
  echo "image-bases: making $debian" >&2
  mmdebstrap --variant=minbase --format=tar "${slim[@]}" "$suite" "$work/debian.tar" >&2
  "$engine" import --change 'CMD ["/bin/bash"]' "$work/debian.tar" "$debian" >/dev/null
  rm -f "$work/debian.tar"
fi

cc=localhost/kubeinfer-base/cc:nonroot
if ! exists "$cc"; then
  echo "image-bases: making $cc" >&2
  mmdebstrap --variant=extract --format=tar "${slim[@]}" \
    --include=base-files,netbase,tzdata,libc6,libgcc-s1,libstdc++6,libssl3,ca-certificates \
    --customize-hook='echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >> "$1/etc/passwd"' \
    --customize-hook='echo "nonroot:x:65532:" >> "$1/etc/group"' \
    --customize-hook='mkdir -p "$1/home/nonroot" "$1/tmp" && chmod 1777 "$1/tmp" && chown 65532:65532 "$1/home/nonroot"' \
    --customize-hook='mkdir -p "$1/etc/ssl/certs" && cat "$1"/usr/share/ca-certificates/mozilla/*.crt > "$1/etc/ssl/certs/ca-certificates.crt"' \
    "$suite" "$work/cc.tar" >&2
  "$engine" import --change 'USER 65532:65532' "$work/cc.tar" "$cc" >/dev/null
  rm -f "$work/cc.tar"
fi

echo "image-bases: $build $debian $cc" >&2
