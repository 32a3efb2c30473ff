#!/usr/bin/env bash
# A real single-node Kubernetes for dockyard's Kubernetes tests, inside ONE container on a
# dockyard-labelled Docker bridge network (kind-style, no --privileged: see MACHINE-NOTES.md,
# "A real Kubernetes here").
#   scripts/test-cluster.sh up [IMAGE...]   start (or reuse) it, import dockyard's images (and
#                                           IMAGE...), print KUBECONFIG=...
#   scripts/test-cluster.sh import IMAGE... import more host images into the node's containerd
#   scripts/test-cluster.sh down            remove everything up made
# Binaries are built once per Debian source version (scripts/test-cluster/build.sh); the node
# image is dockyard/k8s-node:<hash of its inputs>, built FROM dockyard/engine:0.1 without
# touching dockyard's own image recipes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
NAME=${DOCKYARD_TEST_CLUSTER:-dockyard-test-cluster}
PORT=${DOCKYARD_TEST_CLUSTER_PORT:-16443}
SUBNET=${DOCKYARD_TEST_CLUSTER_SUBNET:-172.30.213.0/24}
NODE_IP=${DOCKYARD_TEST_CLUSTER_IP:-172.30.213.10}
STATE=${DOCKYARD_TEST_CLUSTER_DIR:-/var/tmp/$NAME}
BASE_IMAGE=${DOCKYARD_TEST_CLUSTER_BASE:-dockyard/engine:0.1}
DEFAULT_IMAGES="dockyard/engine:0.1 dockyard/registry:0.1 dockyard/base:0.1"
READY_TIMEOUT=${DOCKYARD_TEST_CLUSTER_TIMEOUT:-180}
log() { echo "test-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# dockyard's own labels plus DOCKYARD_LABELS (a test run's id), so the suite's leak check sees
# anything left behind.
labels=(--label io.dockyard.managed=true --label io.dockyard.role=test-cluster)
IFS=',' read -r -a extra <<<"${DOCKYARD_LABELS:-}"
for item in "${extra[@]}"; do [ -n "${item// }" ] && labels+=(--label "${item// }"); done

kubectl() { "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

pki() {
  # Certificates for a throwaway test cluster: one CA, the apiserver's serving cert, and one
  # admin client (system:masters) used by the components and by the tests.
  local d=$STATE/pki
  [ -s "$d/admin.crt" ] && return 0
  mkdir -p "$d"; chmod 700 "$STATE" "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=dockyard-test-cluster-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
      "$NODE_IP" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=dockyard-test-admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
    chmod 600 ./*.key
  )
}

kubeconfig() {  # $1 server URL, $2 pki dir as the reader sees it, $3 output
  cat >"$3" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster: {server: "$1", certificate-authority: $2/ca.crt}
users:
- name: admin
  user: {client-certificate: $2/admin.crt, client-key: $2/admin.key}
contexts:
- name: $NAME
  context: {cluster: $NAME, user: admin, namespace: default}
current-context: $NAME
KC
  chmod 600 "$3"
}

node_files() {  # the node's /etc/k8s, staged in $1
  local d=$1
  mkdir -p "$d/pki"
  cp "$STATE"/pki/{ca.crt,ca.key,apiserver.crt,apiserver.key,admin.crt,admin.key,sa.key,sa.pub} "$d/pki/"
  echo "$NODE_IP" >"$d/node-ip"
  kubeconfig "https://127.0.0.1:6443" /etc/k8s/pki "$d/node.kubeconfig"
  cat >"$d/containerd.toml" <<'TOML'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/dockyard/k8s-pause:3.2"
  # The kubelet asks for oom_score_adj -998 for sandboxes; lowering it needs CAP_SYS_RESOURCE,
  # which this node (like the machine) lacks: runc then dies with "can't get final child's PID".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
TOML
  # A bridge with a gateway, so Service IPs route through the node's iptables; kube-proxy
  # masquerades all Service traffic, so replies come back the same way without br_netfilter.
  cat >"$d/cni.conflist" <<'CNI'
{"cniVersion": "0.4.0", "name": "dockyard", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
  cat >"$d/kubelet.yaml" <<KUBELET
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /etc/k8s/pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /$NAME
failSwapOn: false
makeIPTablesUtilChains: false
clusterDomain: cluster.local
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
KUBELET
  cat >"$d/kube-proxy.yaml" <<PROXY
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: /etc/k8s/node.kubeconfig}
mode: iptables
clusterCIDR: 10.244.0.0/24
iptables: {masqueradeAll: true}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
PROXY
}

node_image() {  # build dockyard/k8s-node:<hash> once per set of inputs; prints its tag
  local ctx
  ctx=$(mktemp -d)
  mkdir -p "$ctx/bin" "$ctx/cni"
  cp "$BIN"/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl} "$ctx/bin/"
  cp "$(command -v etcd)" "$ctx/bin/"
  cp /usr/lib/cni/{bridge,host-local,loopback,portmap} "$ctx/cni/"
  cp "$here/test-cluster/node-init.sh" "$ctx/node-init.sh"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY bin/ /usr/local/bin/
COPY cni/ /usr/lib/cni/
COPY node-init.sh /usr/local/bin/dockyard-node-init
ENTRYPOINT ["/usr/local/bin/dockyard-node-init"]
CMD []
DOCKERFILE
  local hash
  hash=$( (docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12)
  local tag=dockyard/k8s-node:$hash
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    log "building node image $tag"
    DOCKER_BUILDKIT=0 docker build -q -t "$tag" --label io.dockyard.managed=true \
      --label io.dockyard.role=image "$ctx" >/dev/null
  fi
  rm -rf "$ctx"
  echo "$tag"
}

pause_image() {  # the pod sandbox image, from the same build
  local tag=dockyard/k8s-pause:3.2
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  local ctx; ctx=$(mktemp -d)
  cp "$BIN/pause" "$ctx/pause"
  tar -C "$ctx" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' \
    -c 'LABEL io.dockyard.managed=true io.dockyard.role=image' - "$tag" >/dev/null
  rm -rf "$ctx"
}

import_images() {  # host images into the node's containerd, each only when it changed
  local img id done_file
  for img in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null) \
      || die "image $img is not on this host: build it first (dockyard images build --role all)"
    done_file="/var/lib/containerd/dockyard-imported/$(echo "$img" | tr '/:' '__')"
    if [ "$(docker exec "$NAME" cat "$done_file" 2>/dev/null || true)" = "$id" ]; then continue; fi
    log "importing $img into the node"
    docker save "$img" | docker exec -i "$NAME" ctr -n k8s.io images import - >/dev/null \
      || die "importing $img into the node failed"
    docker exec "$NAME" sh -c "mkdir -p /var/lib/containerd/dockyard-imported && echo $id >$done_file"
  done
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until kubectl get nodes dockyard-node 2>/dev/null | grep -q ' Ready '; do
    if ! docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null | grep -q true \
      || [ $SECONDS -ge $deadline ]; then
      log "the node did not become Ready; its component logs end with:"
      docker exec "$NAME" sh -c 'for f in /var/log/k8s/*.log; do echo "== $f"; tail -n 5 "$f"; done' >&2 2>/dev/null \
        || docker logs --tail 20 "$NAME" >&2
      die "see: docker exec $NAME tail /var/log/k8s/*.log; remove with: $0 down"
    fi
    sleep 1
  done
  # The default service account is made asynchronously; pods are refused until it exists.
  until kubectl get serviceaccount default >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && die "no default service account after ${READY_TIMEOUT}s"
    sleep 1
  done
  # PVCs bind through the controller-manager's single-node hostPath provisioner (under the
  # node's /tmp, a volume, so engines on them get overlay2).
  kubectl apply -f - >/dev/null <<'SC'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
SC
  # PodSecurityPolicy admission is on (v1.20's admission rule for privilege), so a test can
  # meet a namespace that forbids privileged pods. The admin may use every policy; a service
  # account only what a test binds to it: "privileged" (what engine pods need) or
  # "restricted" (no privilege, no added capabilities).
  kubectl apply -f - >/dev/null <<'PSP'
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata: {name: dockyard-test-privileged}
spec:
  privileged: true
  allowPrivilegeEscalation: true
  allowedCapabilities: ["*"]
  volumes: ["*"]
  hostNetwork: true
  hostPorts: [{min: 0, max: 65535}]
  hostIPC: true
  hostPID: true
  runAsUser: {rule: RunAsAny}
  seLinux: {rule: RunAsAny}
  supplementalGroups: {rule: RunAsAny}
  fsGroup: {rule: RunAsAny}
---
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata: {name: dockyard-test-restricted}
spec:
  privileged: false
  allowPrivilegeEscalation: false
  requiredDropCapabilities: ["ALL"]
  volumes: [configMap, emptyDir, projected, secret, downwardAPI, persistentVolumeClaim]
  runAsUser: {rule: RunAsAny}
  seLinux: {rule: RunAsAny}
  supplementalGroups: {rule: RunAsAny}
  fsGroup: {rule: RunAsAny}
PSP
  for policy in privileged restricted; do  # "use" of each, for a test to bind
    kubectl create clusterrole "dockyard-test-psp-$policy" --verb=use \
      --resource=podsecuritypolicies --resource-name="dockyard-test-$policy" \
      --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  done
}

up() {
  local started=$SECONDS
  command -v openssl >/dev/null || die "openssl is missing: apt-get install openssl"
  BIN=$("$here/test-cluster/build.sh")
  if ! docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null | grep -q true; then
    docker rm -f -v "$NAME" >/dev/null 2>&1 || true
    pki
    kubeconfig "https://127.0.0.1:$PORT" "$STATE/pki" "$STATE/kubeconfig"
    local image; image=$(node_image)
    pause_image
    if ! docker network inspect "$NAME" >/dev/null 2>&1; then
      docker network create --driver bridge --subnet "$SUBNET" "${labels[@]}" "$NAME" >/dev/null \
        || die "cannot create network $NAME on $SUBNET: set DOCKYARD_TEST_CLUSTER_SUBNET/_IP to a free range"
    fi
    for v in containerd kubelet tmp; do
      docker volume create "${labels[@]}" "$NAME-$v" >/dev/null
    done
    # The DinD capability set (no --privileged: it is refused here), /dev/kmsg for the kubelet,
    # volumes (not overlay) under containerd and the kubelet, tmpfs for what must not survive.
    docker create --name "$NAME" --hostname dockyard-node "${labels[@]}" --init \
      --network "$NAME" --ip "$NODE_IP" -p "127.0.0.1:$PORT:6443" \
      --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
      --security-opt apparmor=unconfined --security-opt systempaths=unconfined --cgroupns host \
      -v /sys/fs/cgroup:/sys/fs/cgroup:rw --device /dev/kmsg \
      -v "$NAME-containerd:/var/lib/containerd" -v "$NAME-kubelet:/var/lib/kubelet" \
      -v "$NAME-tmp:/tmp" --tmpfs /run:exec --tmpfs /var/lib/etcd --tmpfs /var/lib/cni \
      "$image" >/dev/null
    local stage; stage=$(mktemp -d)
    node_files "$stage/k8s"
    docker cp "$stage/k8s" "$NAME:/etc/k8s" >/dev/null
    rm -rf "$stage"
    docker start "$NAME" >/dev/null
    log "node $NAME starting at $NODE_IP, apiserver on 127.0.0.1:$PORT"
  fi
  # shellcheck disable=SC2086
  import_images dockyard/k8s-pause:3.2 $DEFAULT_IMAGES "$@"
  wait_ready
  log "ready in $((SECONDS - started)) s"
  echo "KUBECONFIG=$STATE/kubeconfig"
}

down() {
  docker rm -f -v "$NAME" >/dev/null 2>&1 || true
  for v in containerd kubelet tmp; do docker volume rm -f "$NAME-$v" >/dev/null 2>&1 || true; done
  docker network rm "$NAME" >/dev/null 2>&1 || true
  # The kubelet's cgroups outlive the node (it shares the host's cgroup tree): remove the empty
  # directories it left, deepest first.
  for root in /sys/fs/cgroup/*/"$NAME" /sys/fs/cgroup/"$NAME"; do
    [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -rf "$STATE"
  log "removed $NAME"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  import) shift; BIN=$("$here/test-cluster/build.sh"); import_images "$@" ;;
  down) down ;;
  *) echo "usage: $0 up [IMAGE...] | import IMAGE... | down" >&2; exit 2 ;;
esac
