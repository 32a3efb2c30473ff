#!/usr/bin/env bash
# The README's two commands, verbatim, on a stock Debian 12 machine: what a new user meets.
#
# The machine is a container (as a CI job's is): a Debian 12 minbase root filesystem from
# debootstrap plus only what the README says to install first (git, make), started with the
# capability set an inner dockerd needs and a volume on /var/lib/docker, given a clean clone of
# HEAD. Its image is cached by recipe hash. Prints both wall times and the test summary; exits
# non-zero if either command fails. Everything it creates is labelled and removed at the end.
#
#   scripts/fresh-machine.sh [--keep]     # --keep: leave the container for a look inside
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
keep=${1:-}

scripts/host-packages.sh
scripts/host-engine.sh

suite=bookworm
packages=git,make
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
# This workplace reaches package registries through a TLS-inspecting egress proxy whose CA the
# host trusts; a machine here gets it the way any site CA is given, in
# /usr/local/share/ca-certificates (Debian's ca-certificates picks it up when installed).
site_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${site_cas[0]}" ] || site_cas=()
recipe=$(
  {
    echo "fresh-machine 1 $suite $packages"
    [ "${#site_cas[@]}" -eq 0 ] || cat "${site_cas[@]}"
  } | sha256sum | cut -c1-12
)
image=dockyard/fresh-debian12:$recipe
labels=(--label io.dockyard.managed=true --label io.dockyard.role=fresh-machine)

if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "building $image: debootstrap $suite minbase + $packages"
  root=$(mktemp -d /tmp/dockyard-fresh-root.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  mkdir -p /var/cache/dockyard/debootstrap
  started=$SECONDS
  if ! debootstrap --variant=minbase --include="$packages" \
    --cache-dir=/var/cache/dockyard/debootstrap "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
    echo "debootstrap failed; its log ends with:" >&2
    tail -n 15 "$root.log" >&2
    rm -f "$root.log"
    exit 1
  fi
  rm -f "$root.log"
  if [ "${#site_cas[@]}" -gt 0 ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp "${site_cas[@]}" "$root/usr/local/share/ca-certificates/"
  fi
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import \
    --change 'LABEL io.dockyard.managed=true io.dockyard.role=fresh-machine' \
    --change 'CMD ["bash"]' - "$image" >/dev/null
  rm -rf "$root"
  trap - EXIT
  echo "built $image in $((SECONDS - started)) s"
fi

# What an inner dockerd needs from its container: --privileged where the host grants it, else
# every capability the host has (one the host engine does not know is not named), unconfined
# seccomp/AppArmor/system paths and the host's cgroup tree writable (MACHINE-NOTES.md).
run_id=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
name=dockyard-fresh-$run_id
volume=dockyard-fresh-$run_id
work=$(mktemp -d /tmp/dockyard-fresh.XXXXXX)
cleanup() {
  if [ "$keep" != --keep ]; then
    docker rm -f -v "$name" >/dev/null 2>&1 || true
    docker volume rm -f "$volume" >/dev/null 2>&1 || true
  else
    echo "kept container $name and volume $volume: docker exec -it $name bash"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
docker volume create "${labels[@]}" "$volume" >/dev/null

caps=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
  LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
  SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
  SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
  MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE)
capbnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
drop=()
for bit in "${!caps[@]}"; do
  (( (capbnd >> bit) & 1 )) || drop+=("${caps[$bit]}")
done
common=(-d --name "$name" "${labels[@]}" --hostname fresh -v "$volume:/var/lib/docker")
started_container=
if docker run "${common[@]}" --privileged "$image" sleep infinity >/dev/null 2>"$work/err"; then
  started_container="--privileged"
else
  docker rm -f "$name" >/dev/null 2>&1 || true
  while :; do
    flags=(--cap-add ALL --security-opt seccomp=unconfined --security-opt apparmor=unconfined
      --security-opt systempaths=unconfined --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw)
    for cap in "${drop[@]}"; do flags+=(--cap-drop "$cap"); done
    if docker run "${common[@]}" "${flags[@]}" "$image" sleep infinity >/dev/null 2>"$work/err"; then
      started_container="the DinD capability set (dropping: ${drop[*]:-none})"
      break
    fi
    docker rm -f "$name" >/dev/null 2>&1 || true
    unknown=$(sed -n 's/.*unknown capability: "\{0,1\}\(CAP_\)\{0,1\}\([A-Z_]*\).*/\2/p' "$work/err" | head -n 1)
    if [ -z "$unknown" ] || [[ ! " ${drop[*]} " == *" $unknown "* ]]; then
      echo "cannot start the fresh machine:" >&2
      cat "$work/err" >&2
      exit 1
    fi
    remaining=()
    for cap in "${drop[@]}"; do [ "$cap" = "$unknown" ] || remaining+=("$cap"); done
    drop=("${remaining[@]}")
  done
fi
echo "fresh machine $name ($image) started with $started_container"

git clone -q --no-hardlinks "$top" "$work/dockyard"
docker cp "$work/dockyard" "$name:/root/dockyard"

# The README's two commands, taken from its "Two commands" block, run as written.
mapfile -t commands < <(
  awk '/^## Two commands/ {on=1} on && /^```sh/ {block=1; next} block && /^```/ {exit}
       block {sub(/[[:space:]]*#.*/, ""); if (length($0)) print}' README.md
)
if [ "${#commands[@]}" -ne 2 ]; then
  echo "README's 'Two commands' block does not hold two commands: ${commands[*]}" >&2
  exit 1
fi

# Only what the caller names in FRESH_ENV (NAME=VALUE, one a line) reaches the commands: the
# machine is otherwise as a new user has it.
pass_env=()
while IFS= read -r item; do
  [ -n "$item" ] && pass_env+=(-e "$item")
done <<<"${FRESH_ENV:-}"

status=0
declare -A seconds
for command in "${commands[@]}"; do
  echo "== $command (log: .fresh-${command// /-}.log)"
  begun=$SECONDS
  if docker exec "${pass_env[@]}" -w /root/dockyard "$name" bash -lc "$command" >"$top/.fresh-${command// /-}.log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  seconds[$command]=$((SECONDS - begun))
  echo "   $result in ${seconds[$command]} s"
  if [ $result = FAILED ]; then
    tail -n 40 "$top/.fresh-${command// /-}.log"
  fi
done

echo "== summary"
for command in "${commands[@]}"; do
  printf '   %-10s %5d s\n' "$command" "${seconds[$command]}"
done
summary=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$top/.fresh-make-test.log" | tail -n 1 || true)
echo "   tests: ${summary:-no pytest summary found}"
echo "   logs: .fresh-make-run.log, .fresh-make-test.log"
exit $status
