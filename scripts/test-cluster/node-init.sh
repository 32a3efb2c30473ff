#!/bin/sh
# PID 1's child inside the test cluster's node container: one single-node Kubernetes
# (etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy) on the image's own
# containerd. Every component logs to /var/log/k8s/<name>.log; any of them exiting ends the node.
set -eu
K=/etc/k8s
IP=$(cat $K/node-ip)
mount --make-rshared /
mkdir -p /var/log/k8s /run/containerd /var/lib/etcd /etc/cni/net.d
cp $K/cni.conflist /etc/cni/net.d/10-dockyard.conflist
[ -s /etc/machine-id ] || cat /proc/sys/kernel/random/uuid | tr -d - >/etc/machine-id
# The kubelet's cgroup root (in the host's cgroup tree, shared here) must exist before it starts.
root=$(sed -n 's/^cgroupRoot: *//p' $K/kubelet.yaml)
for hierarchy in /sys/fs/cgroup/*/; do
  [ -e "$hierarchy/cgroup.procs" ] && mkdir -p "$hierarchy/${root#/}"
done

start() {
  name=$1; shift
  "$@" >>/var/log/k8s/$name.log 2>&1 &
  echo "$!" >/run/k8s-$name.pid
}

start containerd containerd --config $K/containerd.toml
start etcd etcd --name node --data-dir /var/lib/etcd \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster node=http://127.0.0.1:2380
start apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port=6443 --insecure-port=0 --advertise-address="$IP" \
  --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
  --authorization-mode=Node,RBAC --client-ca-file=$K/pki/ca.crt \
  --tls-cert-file=$K/pki/apiserver.crt --tls-private-key-file=$K/pki/apiserver.key \
  --kubelet-client-certificate=$K/pki/admin.crt --kubelet-client-key=$K/pki/admin.key \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-key-file=$K/pki/sa.pub --service-account-signing-key-file=$K/pki/sa.key \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --enable-admission-plugins=NodeRestriction,ServiceAccount,PodSecurityPolicy
start controller-manager kube-controller-manager --kubeconfig=$K/node.kubeconfig \
  --authentication-kubeconfig=$K/node.kubeconfig --authorization-kubeconfig=$K/node.kubeconfig \
  --service-account-private-key-file=$K/pki/sa.key --root-ca-file=$K/pki/ca.crt \
  --use-service-account-credentials=true --leader-elect=false --bind-address=127.0.0.1 \
  --cluster-signing-cert-file=$K/pki/ca.crt --cluster-signing-key-file=$K/pki/ca.key \
  --enable-hostpath-provisioner=true
start scheduler kube-scheduler --kubeconfig=$K/node.kubeconfig --leader-elect=false \
  --authentication-kubeconfig=$K/node.kubeconfig --authorization-kubeconfig=$K/node.kubeconfig \
  --bind-address=127.0.0.1
start kubelet kubelet --config=$K/kubelet.yaml --kubeconfig=$K/node.kubeconfig \
  --container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
  --node-ip="$IP" --hostname-override=dockyard-node
start kube-proxy kube-proxy --config=$K/kube-proxy.yaml --hostname-override=dockyard-node
echo "node started: $IP"
# Any component dying ends the node, so a broken cluster is seen at once, not as a hang.
while :; do
  for f in /run/k8s-*.pid; do kill -0 "$(cat "$f")" 2>/dev/null || { echo "$f died"; exit 1; }; done
  sleep 2
done
