#!/usr/bin/env bash
# Writes .cache/containers.conf for podman on this kind of VM and prints its path, for CONTAINERS_CONF:
# crun fails here ("cgroups in hybrid mode not supported"), so runc; and podman's default ulimits exceed
# the VM's hard limits, so lower ones. Nothing under /etc changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.cache"
printf '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n' \
  > "$root/.cache/containers.conf"
echo "$root/.cache/containers.conf"
