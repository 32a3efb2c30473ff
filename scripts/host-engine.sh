#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, starting Debian's dockerd when none does
# (no systemd here; scripts/host-packages.sh installs it).
set -euo pipefail

if docker version >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "no Docker engine answers and dockerd is not installed: run scripts/host-packages.sh" >&2
  exit 1
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi
for _ in $(seq 1 150); do
  docker version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "dockerd did not answer within 30 s; its log ends with:" >&2
tail -n 20 /var/log/dockerd.log >&2
exit 1
