#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) for podnet: the Debian packages podnet and its
# tests drive, a .venv, and the project installed editable with its test extras.
# Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2 iptables nftables conntrack procps psmisc kmod   # the kernel's tools podnet drives
  dnsutils knot-dnsutils dnsperf dnsmasq-base               # dig/kdig/dnsperf judges, dnsmasq anchor
  etcd-server                                               # anchor of the control plane benchmark
  containernetworking-plugins                               # reference CNI plugins (cross-pairing tests)
  curl                                                      # HTTP client of the lab demo and e2e tests
  python3-venv python3-dev gcc                              # building the venv
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.podnet-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing podnet into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
