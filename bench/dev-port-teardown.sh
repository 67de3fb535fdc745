#!/usr/bin/env bash
# Development tool (not a figure of the table): what tearing down N load balancers' ports does to the traffic of the
# others on the same userspace switch (datapath_type=netdev, as this machine's nodes). N netns each with an OVS
# internal port, addressed and up, on a bridge of its own; a ping between two more netns through the same switch
# every 10 ms; then the N are torn down in batches of BATCH (PAUSE_MS between batches): `ovs-vsctl del-port` of the
# batch in one transaction, then `ip -batch` of its `netns del`s. MODE `ports` deletes every port first and the netns
# after; `netns` the netns first and the ports after. Prints the teardown's wall time and the longest gap between
# ping replies (the switch not forwarding). Run as root under the data-plane lock:
#   flock -o /tmp/nslb-dataplane.lock bench/dev-port-teardown.sh N BATCH PAUSE_MS [both|ports|netns]
set -u
N=$1; B=$2; P=$3; MODE=${4:-both}; BR=nslbstall
cleanup() { ip netns del stA 2>/dev/null; ip netns del stB 2>/dev/null; for i in $(seq 1 $N); do ip netns del st$i 2>/dev/null; done; ovs-vsctl --if-exists del-br $BR; }
cleanup
ovs-vsctl add-br $BR -- set Bridge $BR datapath_type=netdev
ip link set $BR up
for x in A B; do
  ip netns add st$x; ovs-vsctl add-port $BR stp$x -- set Interface stp$x type=internal
  ip link set stp$x netns st$x; ip -n st$x link set stp$x up; ip -n st$x link set lo up
done
ip -n stA addr add 10.250.0.1/16 dev stpA; ip -n stB addr add 10.250.0.2/16 dev stpB
tx=""; bt=""
for i in $(seq 1 $N); do ip netns add st$i; tx="$tx -- add-port $BR stp$i -- set Interface stp$i type=internal"; done
ovs-vsctl $tx
sleep 1
for i in $(seq 1 $N); do ip link set stp$i netns st$i; ip -n st$i addr add 10.250.1.$i/16 dev stp$i; ip -n st$i link set stp$i up; done
sleep 3
ip netns exec stA ping -c 3 -q 10.250.0.2 >/dev/null || echo "no ping"
ip netns exec stA ping -D -i 0.01 -W 1 10.250.0.2 > ${TMPDIR:-/tmp}/nslb-port-teardown-ping.txt 2>&1 &
PING=$!
sleep 2
t0=$(date +%s.%N)
for ((s=1; s<=N; s+=B)); do
  e=$((s+B-1)); [ $e -gt $N ] && e=$N
  tx=""; bt=$(mktemp)
  for i in $(seq $s $e); do tx="$tx -- --if-exists del-port $BR stp$i"; echo "netns del st$i" >> $bt; done
  [ $MODE != netns ] && ovs-vsctl $tx; [ $MODE != ports ] && ip -batch $bt; rm -f $bt
  [ $P -gt 0 ] && sleep $(awk -v p=$P 'BEGIN{print p/1000}')
done
t1=$(date +%s.%N)
if [ $MODE = ports ]; then bt=$(mktemp); for i in $(seq 1 $N); do echo "netns del st$i" >> $bt; done; ip -batch $bt; rm -f $bt; fi
if [ $MODE = netns ]; then tx=""; for i in $(seq 1 $N); do tx="$tx -- --if-exists del-port $BR stp$i"; done; ovs-vsctl $tx; fi
sleep 4
kill -INT $PING; wait $PING 2>/dev/null
python3 - "$t0" "$t1" "${TMPDIR:-/tmp}/nslb-port-teardown-ping.txt" <<'P'
import re,sys
t0,t1=float(sys.argv[1]),float(sys.argv[2])
seqs=[];rtt=[]
for l in open(sys.argv[3]):
  m=re.match(r'\[(\d+\.\d+)\].*icmp_seq=(\d+).*time=([\d.]+)',l)
  if m: seqs.append((float(m.group(1)),int(m.group(2)),float(m.group(3))))
during=[s for s in seqs if t0-0.5<=s[0]<=t1+4]
gaps=[b[0]-a[0] for a,b in zip(during,during[1:])]
print(f"teardown {t1-t0:.2f} s; replies in window {len(during)}; worst rtt {max(r for _,_,r in during):.0f} ms; longest gap between replies {max(gaps)*1000:.0f} ms")
P
cleanup
