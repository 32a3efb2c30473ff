#!/usr/bin/env bash
# Boot a Debian VM on the unified cgroup hierarchy (cgroup v2) under qemu's software emulation
# (TCG: KVM does not work on the build machines) and run dockyard's engine checks in it.
#
#   scripts/cgroup2-vm.sh RESULTS.json
#
# The VM's base disk is built from Debian packages (debootstrap; the cloud kernel unpacked with
# dpkg-deb, NVMe built in so no initramfs; mkfs.ext4 -d) with dockyard's engine and base images
# already loaded into its /var/lib/docker (docker load under emulation costs 1-2 minutes) and
# dockyard's dependencies in /opt/dockyard. It is cached under $DOCKYARD_VM_CACHE
# (/var/cache/dockyard/vm) by a hash of its recipe, like the images. Each run adds a qcow2
# overlay and a second disk carrying dockyard's wheel and the checks, boots, and reads the
# checks' JSON back from that disk with debugfs. Exit 77: qemu cannot be installed here, or the
# emulated VM hung on every boot (RESULTS.json then says so under "unavailable").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/cgroup2-vm.sh RESULTS.json}
cache=${DOCKYARD_VM_CACHE:-/var/cache/dockyard/vm}
python=${DOCKYARD_PYTHON:-$root/.venv/bin/python}
mirror=${DOCKYARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
budget=${DOCKYARD_VM_TIMEOUT:-900}  # seconds the VM may run (6 min measured; 9.6 under load)
PACKAGES=docker.io,iptables,kmod,iproute2,procps,python3,python3-venv,ca-certificates
IMAGES=(dockyard/engine:0.1 dockyard/base:0.1)
started=$SECONDS
say() { printf '[cgroup2-vm %3ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v debugfs >/dev/null 2>&1 || missing+=(e2fsprogs)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get -o DPkg::Lock::Timeout=300 update -qq \
    && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null; }; then
    echo "cgroup2-vm: cannot install ${missing[*]} with apt-get" >&2
    exit 77
  fi
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "cgroup2-vm: no qemu" >&2; exit 77; }

# --- the recipe and its hash -----------------------------------------------------------------
for image in "${IMAGES[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || "$root/.venv/bin/dockyard" images build \
    --role "$(basename "${image%%:*}")" >&2
done
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
kernel_ver=$(apt-cache show "$kernel_pkg" | awk '/^Version:/{print $2; exit}')
deps=$("$python" -c 'import tomllib; print("\n".join(tomllib.load(open("'"$root"'/pyproject.toml", "rb"))["project"]["dependencies"]))')
init_sh=$(cat <<'EOF'
#!/bin/sh
# PID 1 of dockyard's cgroup v2 test VM: mount the basics, run the second disk's run.sh, power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname cgroup2-vm
ip link set lo up
mkdir -p /io
if mount LABEL=io /io; then
  sh /io/run.sh > /io/run.log 2>&1
  sync
  umount /io
fi
echo o > /proc/sysrq-trigger
sleep 30
EOF
)
image_ids=$(docker image inspect -f '{{.Id}}' "${IMAGES[@]}" | tr '\n' ' ')
recipe="format=1
suite=bookworm
packages=$PACKAGES
kernel=$kernel_pkg $kernel_ver
images=${IMAGES[*]} $image_ids
deps=$deps
init=$init_sh"
hash=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
base_dir=$cache/$hash
say "VM recipe $hash (kernel $kernel_pkg $kernel_ver)"

# --- the base disk (cached) ------------------------------------------------------------------
work=
run=
tmp_dockerd=
cleanup() {
  if [ -n "$tmp_dockerd" ]; then
    kill "$tmp_dockerd" 2>/dev/null || true
    wait "$tmp_dockerd" 2>/dev/null || true
  fi
  for dir in "$work" "$run"; do
    [ -n "$dir" ] && [ -d "$dir" ] || continue
    # Never remove a tree with something mounted inside it (rm -rf does not cross symlinks).
    if findmnt -rn -o TARGET | grep -q "^$dir"; then
      echo "cgroup2-vm: mounts left under $dir; not removing it" >&2
    else
      rm -rf "$dir"
    fi
  done
}
trap cleanup EXIT

build_base() {
  mkdir -p "$cache"
  work=$(mktemp -d /var/tmp/dockyard-vm-build.XXXXXX)
  say "debootstrap bookworm ($PACKAGES)"
  mkdir -p "$cache/debs"  # the downloaded packages, kept for the next recipe
  debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$PACKAGES" bookworm \
    "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; return 1; }
  say "unpacking $kernel_pkg"
  (cd "$work" && apt-get download "$kernel_pkg" >/dev/null)
  # Unpacked beside the root, then copied in: never extracted through the root's symlinks.
  dpkg-deb -x "$work"/"$kernel_pkg"_*.deb "$work/kernel"
  local kver modules
  modules=$(find "$work/kernel" -maxdepth 3 -type d -path '*lib/modules' | head -n 1)
  kver=$(ls "$modules")
  mkdir -p "$work/root/usr/lib/modules" "$work/out"
  cp -a "$modules/$kver" "$work/root/usr/lib/modules/"
  cp "$work/kernel/boot/vmlinuz-$kver" "$work/out/vmlinuz"
  chroot "$work/root" /sbin/depmod "$kver"
  say "dockyard's dependencies into /opt/dockyard"
  printf '%s\n' "$deps" > "$work/root/tmp/requirements.txt"
  "$python" -m pip wheel -q -w "$work/root/tmp/wheels" -r "$work/root/tmp/requirements.txt" >&2
  chroot "$work/root" /usr/bin/python3 -m venv /opt/dockyard
  chroot "$work/root" /opt/dockyard/bin/pip install -q --no-index --find-links /tmp/wheels \
    -r /tmp/requirements.txt
  rm -rf "$work/root/tmp/wheels" "$work/root/tmp/requirements.txt"
  say "preloading ${IMAGES[*]} into the VM's /var/lib/docker"
  mkdir -p "$work/dockerd"
  # Its own network and mount namespaces: with --bridge=none dockerd deletes any docker0 it
  # sees (the host engine's), and its overlay2 mounts must vanish with it.
  unshare --net --mount --propagation private \
    dockerd --data-root "$work/root/var/lib/docker" --exec-root "$work/dockerd/exec" \
    --pidfile "$work/dockerd/pid" -H "unix://$work/dockerd/sock" --bridge=none --iptables=false \
    --ip-masq=false --storage-driver=overlay2 >"$work/dockerd/log" 2>&1 &
  tmp_dockerd=$!
  for _ in $(seq 1 100); do
    docker -H "unix://$work/dockerd/sock" version >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker save "${IMAGES[@]}" | docker -H "unix://$work/dockerd/sock" load >&2
  kill "$tmp_dockerd"; wait "$tmp_dockerd" 2>/dev/null || true; tmp_dockerd=
  rm -rf "$work/root/var/lib/docker/network"
  printf '%s\n' "$init_sh" > "$work/root/init.sh"
  chmod 755 "$work/root/init.sh"
  echo cgroup2-vm > "$work/root/etc/hostname"
  say "mkfs.ext4 -d (6G sparse)"
  mkfs.ext4 -q -F -L root -d "$work/root" "$work/out/base.raw" 6G
  printf '%s\n' "$recipe" > "$work/out/recipe"
  rm -rf "$base_dir"
  mv "$work/out" "$base_dir"
  # Base disks of other recipes are 1.2 GB each: keep only this one (and the package cache).
  find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" ! -name debs \
    -exec rm -rf {} +
}
if [ ! -s "$base_dir/base.raw" ]; then
  build_base
else
  say "base disk cached: $base_dir"
fi

# --- one run ---------------------------------------------------------------------------------
# Each boot gets a fresh overlay and io disk. run.sh marks its stages on the serial console,
# which the host reads while the VM runs: a guest not at "dockerd ready" within $ready_budget
# seconds, or whose kernel reports a CPU stuck for a minute, is killed and booted again. The
# first boot has one vCPU: once in CI both vCPUs of a 2-vCPU TCG guest sat in a soft lockup from
# the first runc on, and one vCPU (no cross-CPU interrupts for TCG to lose) ran the checks as
# fast (115 s against 112 s); the second boot tries two.
ready_budget=${DOCKYARD_VM_READY_TIMEOUT:-300}
run=$(mktemp -d /var/tmp/dockyard-vm-run.XXXXXX)
mkdir -p "$run/io/wheels"
"$python" -m pip wheel -q --no-deps -w "$run/io/wheels" "$root" >&2
cp "$root/tests/integration/engine/cgroup2_vm_checks.py" "$run/io/checks.py"
cat > "$run/io/run.sh" <<'EOF'
# Runs in the VM as PID 1's child; everything it says goes to /io/run.log, its stages to the
# serial console (read live by the host's watchdog).
set -x
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mark() { echo "dockyard-vm: $*" > /dev/ttyS0; }
mark "init"
for m in overlay bridge veth br_netfilter nf_nat nf_tables nft_chain_nat nft_compat xt_MASQUERADE \
  xt_addrtype xt_conntrack iptable_nat iptable_filter; do
  modprobe "$m"
done
uptime
dockerd > /io/dockerd.log 2>&1 &
i=0
until docker version > /dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -gt 600 ] && break; sleep 0.2
done
uptime
mark "dockerd ready"
/opt/dockyard/bin/pip install -q --no-index --no-deps /io/wheels/*.whl
uptime
mark "checks"
/opt/dockyard/bin/python /io/checks.py /io/results.json
uptime
mark "done"
EOF

# One boot with $1 vCPUs; sets $verdict (done, stuck, timeout or exited) and $why.
boot_once() {
  local smp=$1 qemu elapsed stuck boot
  rm -f "$run/io.raw" "$run/root.qcow2"
  truncate -s 1G "$run/io.raw"
  mkfs.ext4 -q -F -L io -d "$run/io" "$run/io.raw"
  qemu-img create -q -f qcow2 -b "$base_dir/base.raw" -F raw "$run/root.qcow2"
  : > "$run/console.log"
  say "booting the VM (qemu TCG, $smp vCPU, 3 GiB; console: $run/console.log)"
  boot=$SECONDS
  qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$smp" -m 3072 \
    -display none -monitor none -serial "file:$run/console.log" -no-reboot -nic none \
    -kernel "$base_dir/vmlinuz" \
    -append "console=ttyS0 root=/dev/nvme0n1 rw init=/init.sh panic=-1 quiet" \
    -drive "file=$run/root.qcow2,if=none,id=d0" -device nvme,drive=d0,serial=root \
    -drive "file=$run/io.raw,if=none,id=d1,format=raw" -device nvme,drive=d1,serial=io &
  qemu=$!
  verdict=exited why=
  while kill -0 "$qemu" 2>/dev/null; do
    sleep 2
    elapsed=$((SECONDS - boot))
    stuck=$(grep -ao 'soft lockup - CPU#[0-9]* stuck for [0-9]*s' "$run/console.log" \
      | awk '{n = $NF; sub("s$", "", n); if (n + 0 >= 60) {print; exit}}' || true)
    if [ -n "$stuck" ]; then
      verdict=stuck why="the guest kernel says: $stuck"
    elif ! grep -aq 'dockyard-vm: dockerd ready' "$run/console.log" \
      && [ "$elapsed" -gt "$ready_budget" ]; then
      verdict=stuck why="dockerd not ready $elapsed s after boot"
    elif [ "$elapsed" -gt "$budget" ]; then
      verdict=timeout why="still running after $budget s"
    else
      continue
    fi
    kill "$qemu" 2>/dev/null || true
    break
  done
  wait "$qemu" 2>/dev/null || true
  if grep -aq 'dockyard-vm: done' "$run/console.log"; then
    verdict=done
  fi
  say "VM ran $((SECONDS - boot)) s ($verdict${why:+: $why})"
}

show_tails() {
  for name in run.log dockerd.log; do
    debugfs -R "dump /$name $run/$name" "$run/io.raw" >/dev/null 2>&1 || true
  done
  tail -n 30 "$run/console.log" "$run/run.log" >&2 2>/dev/null || true
}

boot=$SECONDS
verdict=
for smp in ${DOCKYARD_VM_SMP:-1 2}; do
  boot_once "$smp"
  [ "$verdict" = stuck ] || break
  echo "cgroup2-vm: the VM hung ($why); console and run log tails:" >&2
  show_tails
done
if [ "$verdict" = stuck ]; then
  # The emulator, not dockyard, hung on every boot: the results say so and the tests skip,
  # quoting it.
  "$python" - "$out" "$why" <<'EOF'
import json, sys
reason = f"the emulated VM hung on every boot (last: {sys.argv[2]})"
json.dump({"unavailable": reason}, open(sys.argv[1], "w"), indent=2)
EOF
  exit 77
fi
if ! debugfs -R "dump /results.json $run/results.json" "$run/io.raw" >/dev/null 2>&1 \
  || [ ! -s "$run/results.json" ]; then
  echo "cgroup2-vm: the VM wrote no results ($verdict${why:+: $why}); console and run log tails:" >&2
  show_tails
  exit 1
fi
debugfs -R "dump /run.log $run/run.log" "$run/io.raw" >/dev/null 2>&1 || true
"$python" - "$run/results.json" "$out" "$((SECONDS - boot))" "$((SECONDS - started))" "$hash" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
results["host"] = {"vm_seconds": int(sys.argv[3]), "total_seconds": int(sys.argv[4]),
                   "recipe": sys.argv[5]}
json.dump(results, open(sys.argv[2], "w"), indent=2)
EOF
cp "$run/run.log" "${out%.json}.run.log" 2>/dev/null || true
say "results: $out"
