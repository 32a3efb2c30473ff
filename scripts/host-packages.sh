#!/usr/bin/env bash
# Install, from Debian's packages, what dockyard's set-up and tests need and this machine lacks:
# Python's venv support, Debian's Docker engine, and the tools the offline image builds use.
# One apt transaction, quiet as Debian's own scripts are; nothing is installed twice.
set -euo pipefail

need=()
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif [ "$(command -v python3)" = /usr/bin/python3 ] && ! dpkg -s python3-venv >/dev/null 2>&1; then
  need+=(python3-venv)  # Debian's python3 has no ensurepip without it
fi
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v iptables >/dev/null 2>&1 || need+=(iptables)  # dockerd needs it for its networks
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)  # guard tests drive it
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)  # the base image needs the static one
dpkg -s ca-certificates >/dev/null 2>&1 || need+=(ca-certificates)  # pip's HTTPS
[ "${#need[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "dockyard needs ${need[*]}, and this machine has no apt-get: install them, then run make again" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "dockyard needs ${need[*]}: run 'sudo apt-get install ${need[*]}' (or make as root)" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
apt_quiet=(-qq -o=Dpkg::Use-Pty=0 -o=APT::Color=0)
log=$(mktemp)
if ! apt-get "${apt_quiet[@]}" update >"$log" 2>&1 \
  || ! apt-get "${apt_quiet[@]}" install -y "${need[@]}" >>"$log" 2>&1; then
  echo "apt-get could not install ${need[*]}; its log ends with:" >&2
  tail -n 15 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
