#!/usr/bin/env bash
# Where the server's CPU goes per command, by thread: starts the release
# server on a fresh data directory, drives it with loadgen, then reads each
# thread's utime + stime from /proc and divides by the commands the engine
# decided (/metrics). Threads of a kind (tokio workers, sled's I/O threads)
# are summed.
#
#   bash benches/threads.sh [CONNECTIONS] [SECONDS] [MIX]     # defaults: 16 20 lifecycle
#
# SERVER=path/to/expereon picks another build (e.g. an older commit's).
# RATE=N runs loadgen open loop at N commands/s instead (CONNECTIONS is then
# the pair count), for latency at a given load rather than at saturation.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CONNECTIONS=${1:-16}
SECONDS_MEASURED=${2:-20}
MIX=${3:-lifecycle}
SERVER=${SERVER:-$REPO/target/release/expereon}
LOADGEN=${LOADGEN:-$REPO/target/release/loadgen}
[[ -x $SERVER && -x $LOADGEN ]] || { echo "build first: cargo build --release -p command-api -p expereon-benches" >&2; exit 1; }

DATA=$(mktemp -d -t expereon-threads.XXXXXX)
PORT=$((20000 + RANDOM % 40000))
export EXPEREON_ADMIN_TOKEN
EXPEREON_ADMIN_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
EXPEREON_LISTEN=127.0.0.1:$PORT EXPEREON_DATA_DIR=$DATA EXPEREON_RATE_LIMIT=1000000 \
    EXPEREON_WEBHOOK_ALLOW_PRIVATE=true "$SERVER" serve >"$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done

"$LOADGEN" --url "http://127.0.0.1:$PORT" --connections "$CONNECTIONS" \
    --duration-secs "$SECONDS_MEASURED" --mix "$MIX" ${RATE:+--rate "$RATE"} | grep -E '^(throughput|all|deliveries)'
COMMANDS=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^expereon_engine_batch_size_sum/ { print $2 }')
python3 - "$PID" "$COMMANDS" <<'PY'
import collections, os, sys
pid, commands = sys.argv[1], float(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
cpu = collections.Counter()
for tid in os.listdir(f"/proc/{pid}/task"):
    stat = open(f"/proc/{pid}/task/{tid}/stat").read()
    name = stat[stat.index("(") + 1 : stat.rindex(")")].rstrip("0123456789-")
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu[name] += (int(fields[11]) + int(fields[12])) / tick
total = sum(cpu.values())
print(f"{commands:.0f} commands (setup included); server CPU {total:.1f} s = {1e6 * total / commands:.0f} µs per command")
for name, secs in cpu.most_common():
    if secs > 0:
        print(f"  {name:24} {1e6 * secs / commands:6.0f} µs")
PY
