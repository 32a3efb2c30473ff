#!/usr/bin/env bash
# Build the Kubernetes server binaries from Debian's own source package, once per source
# version: no Kubernetes server is packaged for Debian 12 and no registry can be pulled from.
# Output: $CACHE/<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,
# kube-proxy,kubectl,pause}. Prints that bin directory on stdout; progress goes to stderr.
set -euo pipefail

CACHE=${DOCKYARD_K8S_CACHE:-/var/cache/dockyard/kubernetes}
WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager cmd/kubelet cmd/kube-proxy cmd/kubectl"
BINS="kube-apiserver kube-scheduler kube-controller-manager kubelet kube-proxy kubectl"
log() { echo "test-cluster: $*" >&2; }

need=()
command -v /usr/lib/go-1.19/bin/go >/dev/null 2>&1 || need+=(golang-1.19-go)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
[ -d /usr/lib/cni ] || need+=(containernetworking-plugins)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  [ "$(id -u)" -eq 0 ] || { log "installing ${need[*]} needs root"; exit 1; }
  apt_log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
  { apt-get -qq update && apt-get -qq install -y "${need[@]}"; } >"$apt_log" 2>&1 \
    || { tail -n 15 "$apt_log" >&2; log "apt-get could not install ${need[*]}"; exit 1; }
  rm -f "$apt_log"
fi

# A private apt configuration with a deb-src entry: the machine's own sources stay untouched.
apt_dir=$CACHE/apt
mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial"
if [ ! -s "$apt_dir/sources/dockyard-src.sources" ]; then
  cat >"$apt_dir/sources/dockyard-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt_opts=(-o "Dir::Etc::SourceParts=$apt_dir/sources" -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::State::Lists=$apt_dir/lists")
if [ -z "$(ls "$apt_dir/lists" | grep -v partial || true)" ]; then
  log "reading Debian's source index (once)"
  apt-get -qq "${apt_opts[@]}" update >&2
fi
version=$(apt-cache "${apt_opts[@]}" showsrc kubernetes | awk '/^Version:/ {print $2; exit}')
[ -n "$version" ] || { log "Debian's source index has no 'kubernetes' package"; exit 1; }
goversion=$(/usr/lib/go-1.19/bin/go version | awk '{print $3}')
key="${version//[:+~]/_}-$goversion"
out=$CACHE/$key
if [ -x "$out/bin/kubelet" ] && [ -x "$out/bin/pause" ]; then
  echo "$out/bin"; exit 0
fi

work=$CACHE/build-$key
rm -rf "$work"; mkdir -p "$work"
log "building Kubernetes $version from Debian's source package (about 8 min on 2 cores)"
(cd "$work" && apt-get -qq "${apt_opts[@]}" source --download-only kubernetes >&2)
(cd "$work" && dpkg-source --no-check -x ./*.dsc src >/dev/null 2>&1) \
  || (cd "$work" && dpkg-source --no-check --skip-patches -x ./*.dsc src >&2)
tree=$work/src
# reflect2 1.0.1 reads Go runtime internals that changed in Go 1.18: use Debian's 1.0.2 copy.
r2=$tree/vendor/github.com/modern-go/reflect2
rm -f "$r2"/*.go
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r2/"
rm -f "$r2"/*_test.go
(cd "$tree" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOFLAGS=-mod=vendor \
  KUBE_GIT_VERSION="v${version##*really}" KUBE_GIT_TREE_STATE=clean \
  make WHAT="$WHAT" GOLDFLAGS="-s -w" >"$work/make.log" 2>&1) \
  || { tail -n 30 "$work/make.log" >&2; log "the Kubernetes build failed (log: $work/make.log)"; exit 1; }
mkdir -p "$work/bin"
for b in $BINS; do cp "$tree/_output/bin/$b" "$work/bin/"; done
# The pod sandbox's pause process, from the same source tree.
gcc -Os -static -o "$work/bin/pause" "$tree/build/pause/linux/pause.c" -DVERSION=dockyard
rm -rf "$out"; mkdir -p "$out"; mv "$work/bin" "$out/bin"
echo "$version" >"$out/VERSION"
rm -rf "$work"
log "built into $out/bin"
echo "$out/bin"
