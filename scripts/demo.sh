#!/usr/bin/env bash
# The main job on one machine: a 2-node cluster (real etcd, two operator
# replicas, VXLAN tunnel), pods on both nodes, cross-node traffic through the
# eBPF datapath, a policy that allows one client and denies another across
# nodes, the datapath's view (tunnel endpoints, counters); then the same
# under Kubernetes, driven only by kubectl (the lab's API server, kubelet and
# operator; pods, a NetworkPolicy, the CRDs seta writes), then teardown.
set -euo pipefail
cd "$(dirname "$0")/.."
SETA=target/release/seta
LAB=demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { step "teardown"; [ -n "${KEEP:-}" ] || $SETA lab down --lab $LAB; }  # also stops the pods' iperf3 servers
trap cleanup EXIT
$SETA lab down --lab $LAB >/dev/null 2>&1 || true

step "seta lab up --nodes 2 --pods 2 --routing tunnel (etcd + operator in the underlay)"
$SETA lab up --lab $LAB --nodes 2 --pods 2 --routing tunnel
N1=$LAB-n1; N2=$LAB-n2
ip_of() { $SETA lab status --lab $LAB -o json | jq -r ".pods[] | select(.name==\"$1\") | .ip"; }
P1=$(ip_of pod1); P2=$(ip_of pod2); P3=$(ip_of pod3); P4=$(ip_of pod4)
echo "pod1 $P1 and pod3 $P3 on $N1; pod2 $P2 and pod4 $P4 on $N2"
# wait until node 1 has learned node 2's pods from the kvstore
for _ in $(seq 50); do $SETA --node $N1 bpf tunnel list -o json | jq -e ".[] | select(.prefix==\"$P2/32\")" >/dev/null && break; sleep 0.1; done

step "seta status ($N1): kvstore, routing, cluster health"
sleep 2  # one health-probe round
$SETA --node $N1 status
step "seta node list"
$SETA --node $N1 node list
step "seta bpf tunnel list ($N1): where other nodes' pods are"
$SETA --node $N1 bpf tunnel list

step "ping across nodes: pod1 -> pod2 ($P2), pod1 -> node 2 (172.30.0.2), pod1 -> external host (192.0.2.10)"
$SETA lab exec pod1 --lab $LAB -- ping -c 3 -i 0.2 "$P2" | tail -2
$SETA lab exec pod1 --lab $LAB -- ping -c 3 -i 0.2 172.30.0.2 | tail -2
$SETA lab exec pod1 --lab $LAB -- ping -c 3 -i 0.2 192.0.2.10 | tail -2

step "TCP: iperf3 pod1 ($N1) -> pod2 ($N2) through seta_vxlan"
$SETA lab exec pod2 --lab $LAB -- iperf3 -s -1 -D -p 5201 >/dev/null
sleep 0.3
$SETA lab exec pod1 --lab $LAB -- iperf3 -c "$P2" -p 5201 -t 2 -f g | grep -E 'sender|receiver'

step "policy: only app=pod1 ($N1) may reach app=pod2 ($N2) on TCP 5201; pod3 ($N1) and pod4 ($N2) may not"
for p in pod1 pod2 pod3 pod4; do $SETA lab pod label $p --labels app=$p --lab $LAB; done
POLICY=$(mktemp --suffix=.yaml)
cat > "$POLICY" <<'YAML'
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: pod2-from-pod1
  namespace: default
spec:
  endpointSelector:
    matchLabels: {app: pod2}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: pod1}
    toPorts:
    - ports: [{port: "5201", protocol: TCP}]
YAML
# imported on node 1 only: policies are cluster-wide (kept in etcd, watched by every agent)
$SETA --node $N1 policy import "$POLICY"
for _ in $(seq 50); do $SETA --node $N2 policy get 2>/dev/null | grep -q pod2-from-pod1 && break; sleep 0.1; done
$SETA --node $N2 policy wait
rm -f "$POLICY"
$SETA lab exec pod2 --lab $LAB -- iperf3 -s -D -p 5201 >/dev/null
sleep 0.5
tcp() { $SETA lab exec "$1" --lab $LAB -- timeout 2 bash -c "exec 3<>/dev/tcp/$P2/5201" 2>/dev/null && echo "$1 -> pod2:5201 connected" || echo "$1 -> pod2:5201 refused by policy"; }
SEQ=$($SETA --node $N2 -o json events | jq 'map(.seq) | max // 0')
tcp pod1
tcp pod3
tcp pod4
sleep 0.2
echo "-- ingress verdicts on $N2 (pod1's and pod3's identities arrived in the VNI from $N1):"
$SETA --node $N2 events --since "$SEQ" | grep INGRESS
$SETA --node $N2 identity list

step "seta bpf metrics list ($N2: datapath counters)"
$SETA --node $N2 bpf metrics list

# ---- the same cluster under Kubernetes, driven by kubectl ----
step "Kubernetes: seta lab up --k8s --nodes 2 (the lab's API server, kubelet and operator; CRD mode, no etcd)"
$SETA lab down --lab $LAB >/dev/null
LAB=demok
$SETA lab down --lab $LAB >/dev/null 2>&1 || true
$SETA lab up --lab $LAB --k8s --nodes 2
K() { $SETA lab kubectl --lab $LAB -- "$@"; }
step "kubectl get nodes / ciliumnodes (pod CIDRs from the operator's cluster pool)"
K get nodes -o wide
K get ciliumnodes
K get ciliumnodes -o custom-columns=NAME:.metadata.name,PODCIDRS:.spec.ipam.podCIDRs
step "kubectl apply: three pods (web bound to $LAB-n1; client and other left to the lab's scheduler)"
K apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec: {nodeName: demok-n1, containers: [{name: web, image: none, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {containers: [{name: c, image: none}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: default, labels: {app: other}}
spec: {containers: [{name: c, image: none}]}
YAML
K wait --for=condition=Ready pod/web pod/client pod/other --timeout=60s
K get pods -o wide
WEB=$(K get pod web -o jsonpath='{.status.podIP}')
$SETA lab exec web --lab $LAB -- python3 -c "
import socketserver
class H(socketserver.BaseRequestHandler):
    def handle(self): self.request.sendall(b'hello from web\n')
socketserver.TCPServer(('0.0.0.0', 8080), H).serve_forever()" >/dev/null 2>&1 &
sleep 0.5
conn() { $SETA lab exec "$1" --lab $LAB -- timeout 2 bash -c "exec 3<>/dev/tcp/$WEB/8080 && head -1 <&3" 2>/dev/null && true || echo "$1 -> web:8080 refused by policy"; }
echo "-- before any policy:"; conn client; conn other
step "kubectl apply: a NetworkPolicy letting only app=client reach web:8080"
K apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 8080, protocol: TCP}]
YAML
$SETA --node $LAB-n1 policy wait
$SETA --node $LAB-n2 policy wait
conn client; conn other
step "kubectl get ciliumendpoints / ciliumidentities / the operator's Lease"
K get ciliumendpoints
K get ciliumidentities -o custom-columns=ID:.metadata.name,APP:.metadata.labels.app,NAMESPACE:.metadata.labels.io\\.kubernetes\\.pod\\.namespace
K get lease -n kube-system seta-operator-resource-lock -o custom-columns=HOLDER:.spec.holderIdentity,TRANSITIONS:.spec.leaseTransitions
step "kubectl delete pod other: its namespace, endpoint and CiliumEndpoint go"
K delete pod other
sleep 1
K get ciliumendpoints -o custom-columns=NAME:.metadata.name
