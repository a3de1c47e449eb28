#!/usr/bin/env bash
# The main job: a real walkthrough on loopback. Starts etcd in a temp dir on free
# ports, builds disco, and moves app1 from v1 to v2 one slot at a time with discoctl,
# showing the state after each step. Stops everything it started at the end (also on
# Ctrl-C). --keep leaves etcd running and prints the commands to try.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --ci) ;;
    *) echo "usage: $0 [--keep] [--ci]" >&2; exit 2 ;;
  esac
done

scripts/deps.sh
cargo build --release -q -p discoctl -p disco-agent
bin="$PWD/target/release"

work=$(mktemp -d /tmp/disco-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
if [ "$keep" -eq 0 ]; then trap cleanup EXIT INT TERM; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client=$(free_port); peer=$(free_port)
etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "demo=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
pids+=($!)
export DISCO_ETCD_ENDPOINTS="http://127.0.0.1:$client"
for _ in $(seq 100); do
  curl -fsS "$DISCO_ETCD_ENDPOINTS/health" 2>/dev/null | grep -q true && break
  sleep 0.1
done
echo "etcd is up at $DISCO_ETCD_ENDPOINTS"

step() { printf '\n== %s\n' "$*"; }
ctl() { echo "\$ discoctl $*"; "$bin/discoctl" "$@"; }

step "app1 listens on 127.0.0.1:8080 with three slots on v1, and v2 registered beside them"
ctl app set app1 --listen 127.0.0.1:8080
for i in 1 2 3; do
  ctl endpoint add app1 "instance$i" v1 "127.0.0.1:900$i" --health /healthz
  ctl endpoint add app1 "instance$i" v2 "127.0.0.1:910$i" --health /healthz
  ctl route set app1 "instance$i" v1
done
ctl status app1

step "first canary: instance1 -> v2"
ctl route set app1 instance1 v2
ctl status app1

step "second canary, then the last slot"
ctl route set app1 instance2 v2
ctl route set app1 instance3 v2
ctl status app1

step "a hostile value is refused before it reaches etcd (exit code 2)"
set +e
"$bin/discoctl" endpoint add app1 instance1 v3 $'127.0.0.1:9000\n  server evil 6.6.6.6:80'
echo "exit code: $?"
set -e

step "rollback: every slot back to v1"
for i in 1 2 3; do ctl route set app1 "instance$i" v1; done
ctl -o json status app1 | head -20

if [ "$keep" -eq 1 ]; then
  cat <<TXT

etcd keeps running (pid ${pids[0]}, data in $work). Try:
  export DISCO_ETCD_ENDPOINTS=$DISCO_ETCD_ENDPOINTS
  $bin/discoctl status
  $bin/discoctl route set app1 instance2 v2
  etcdctl --endpoints \$DISCO_ETCD_ENDPOINTS get --prefix /disco/
Stop it with: kill ${pids[0]}
TXT
fi
echo "demo finished"
