#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, installing Debian's docker.io and starting
# dockerd when needed (no systemd here), plus the tools dockyard's offline image builds use.
set -euo pipefail

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || need_pkgs+=(docker-compose)  # guard tests drive it
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)  # the base image needs the static one
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "installing ${need_pkgs[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if docker version >/dev/null 2>&1; then
  exit 0
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 100); do
  docker version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "dockerd did not answer within 20 s; its log ends with:" >&2
tail -n 20 /var/log/dockerd.log >&2
exit 1
