#!/usr/bin/env bash
# The main job on one machine: a 1-node lab with 3 pods, traffic through the
# eBPF datapath, the datapath counters, then teardown.
set -euo pipefail
cd "$(dirname "$0")/.."
SETA=target/release/seta
LAB=demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { step "teardown"; $SETA lab down --lab $LAB; }
trap cleanup EXIT
$SETA lab down --lab $LAB >/dev/null 2>&1 || true

step "seta lab up --nodes 1 --pods 3"
$SETA lab up --lab $LAB --nodes 1 --pods 3
NODE=$LAB-n1
ip_of() { $SETA lab status --lab $LAB -o json | jq -r ".pods[] | select(.name==\"$1\") | .ip"; }
P1=$(ip_of pod1); P2=$(ip_of pod2); P3=$(ip_of pod3)
ROUTER=$($SETA --node $NODE status -o json | jq -r '.ipam.cidr' | sed 's#0/24#1#')

step "seta status"
$SETA --node $NODE status
step "seta endpoint list"
$SETA --node $NODE endpoint list

step "ping: pod1 -> pod2 ($P2), pod1 -> pod3 ($P3), pod2 -> node ($ROUTER), node -> pod3"
$SETA lab exec pod1 --lab $LAB -- ping -c 3 -i 0.2 "$P2" | tail -2
$SETA lab exec pod1 --lab $LAB -- ping -c 3 -i 0.2 "$P3" | tail -2
$SETA lab exec pod2 --lab $LAB -- ping -c 3 -i 0.2 "$ROUTER" | tail -2
$SETA lab node exec $NODE --lab $LAB -- ping -c 3 -i 0.2 "$P3" | tail -2

step "TCP: iperf3 pod1 -> pod2 (same node, bpf_redirect_peer)"
$SETA lab exec pod2 --lab $LAB -- iperf3 -s -1 -D -p 5201 >/dev/null
sleep 0.3
$SETA lab exec pod1 --lab $LAB -- iperf3 -c "$P2" -p 5201 -t 2 -f g | grep -E 'sender|receiver'

step "TCP: iperf3 pod3 -> node"
$SETA lab node exec $NODE --lab $LAB -- iperf3 -s -1 -D -p 5202 >/dev/null
sleep 0.3
$SETA lab exec pod3 --lab $LAB -- iperf3 -c "$ROUTER" -p 5202 -t 1 -f g | grep -E 'sender|receiver'

step "policy: label the pods, then only app=pod1 may reach app=pod2 on TCP 5201"
for p in pod1 pod2 pod3; do $SETA lab pod label $p --labels app=$p --lab $LAB; done
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
$SETA --node $NODE policy import "$POLICY"
rm -f "$POLICY"
$SETA --node $NODE policy wait
$SETA lab exec pod2 --lab $LAB -- iperf3 -s -D -p 5201 >/dev/null
sleep 0.3
tcp() { $SETA lab exec "$1" --lab $LAB -- timeout 2 bash -c "exec 3<>/dev/tcp/$P2/5201" 2>/dev/null && echo "$1 -> pod2:5201 connected" || echo "$1 -> pod2:5201 refused by policy"; }
tcp pod1
tcp pod3
$SETA --node $NODE policy trace --src-endpoint pod-name:default/pod3 --dst-endpoint pod-name:default/pod2 --dport 5201/TCP || true
echo "-- policy-verdict events:"
$SETA --node $NODE events | grep 5201 | tail -4
$SETA --node $NODE endpoint list

step "seta bpf prog list (TCX links per device)"
$SETA --node $NODE bpf prog list
step "seta bpf ipcache list"
$SETA --node $NODE bpf ipcache list
step "seta bpf metrics list (datapath counters)"
$SETA --node $NODE bpf metrics list
