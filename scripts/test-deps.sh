#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, idempotently: Debian packages (nginx, libb64 for
# perf_analyzer, PostgreSQL), a Python virtualenv with the real clients, and the ONNX Runtime library.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/venv"

need_apt=()
dpkg -s libb64-0d >/dev/null 2>&1 || need_apt+=(libb64-0d)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql-15)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the TLS test makes its CA with it
# make image-test: podman with runc (crun fails on this kind of VM), mmdebstrap for local base images.
command -v podman >/dev/null 2>&1 || need_apt+=(podman runc)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
# The browser test: headless Chromium and its WebDriver.
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || need_apt+=(chromium chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

# A virtualenv per requirements file, rebuilt when the file changes.
make_venv() {
  local dir=$1 requirements=$2
  if ! cmp -s "$requirements" "$dir/.requirements" 2>/dev/null; then
    echo "creating the virtualenv $dir" >&2
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$dir/.requirements"
  fi
}
make_venv "$venv" "$root/scripts/requirements-test.txt"
make_venv "$root/.cache/venv-kserve" "$root/scripts/requirements-kserve.txt"

"$root/scripts/fetch-ort.sh" >/dev/null
# Helm 4 for the chart checks (scripts/check-chart.sh), into .cache/bin/helm.
"$root/scripts/fetch-helm.sh" >/dev/null
