#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine of this kind (Debian 12, root).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # importer data path and its real peers (no qemu-block-extra: qemu-img reads only local
  # files and nbdkit's socket; remote sources go through nbdkit's curl plugin)
  qemu-utils nbdkit nginx-light curl xz-utils zstd bzip2 pigz e2fsprogs
  util-linux xorriso
  # S3 / registry peers and tools
  skopeo docker-registry umoci
  # an HTTPS forward proxy for the import proxy's trusted CA (importProxy.trustedCAProxy)
  squid-openssl
  # simulated node (issue 3) — append below this line
  bubblewrap iproute2
  # the node's static init helper (hack/localcluster/nodeinit.c), compiled once per machine
  gcc libc6-dev
  # the images (issue 11): a daemonless OCI builder, and the Debian base made from packages
  buildah mmdebstrap
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's docker-registry and nginx start system services on install; tests run their own.
  systemctl disable --now docker-registry nginx squid >/dev/null 2>&1 || true
fi

# Python: the project (editable, from THIS checkout) and its test extras, in the
# interpreter on PATH. The console scripts (cdi-importer, cdi-controller, ...) are what the
# simulated node runs, so they must import this checkout's code, not another clone's.
stamp_dir="${XDG_CACHE_HOME:-$HOME/.cache}/cdi-py"
mkdir -p "$stamp_dir"
stamp="$stamp_dir/pip-$( (cat pyproject.toml; pwd) | sha256sum | cut -c1-16)"
installed_from=$(cd / && python3 -c 'import importer, os; print(os.path.dirname(os.path.dirname(os.path.abspath(importer.__file__))))' 2>/dev/null || true)
if [[ ! -e "$stamp" ]] || [[ "$installed_from" != "$(pwd)" ]] || ! command -v cdi-importer >/dev/null; then
  echo "install-deps: pip install -e .[test] (from $(pwd))" >&2
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
  touch "$stamp"
fi
