#!/usr/bin/env bash
# Issue 13: Expereon's command throughput next to PostgreSQL's on the same
# machine, in one run, so the two numbers share the hardware, the kernel
# and whatever else the machine is doing.
#
#   1. a throwaway PostgreSQL 15 (initdb defaults: fsync and synchronous
#      commit on), `pgbench -i -s 10`, then pgbench's default TPC-B-like
#      script at 8, 32 and 64 clients;
#   2. the release `expereon` on a fresh data directory, and `loadgen`'s
#      lifecycle mix (create+submit, approve, settle) at 16, 64 and 256
#      connections;
#   3. a Markdown report on stdout (progress goes to stderr).
#
# Environment:
#   DURATION=20     seconds per pgbench / loadgen run
#   TARGET_DIR=...  cargo target directory [default: $CARGO_TARGET_DIR or <repo>/target]
#   SKIP_BUILD=1    take target/release/{expereon,loadgen} as they are
#   KEEP=1          keep the temporary directory (databases, logs, raw outputs)
#   PG_BIN=...      PostgreSQL binaries [default: /usr/lib/postgresql/15/bin]
#
# Runs as root: PostgreSQL refuses root, so its part runs as the `postgres`
# user (runuser). Needs jq and curl.
set -euo pipefail

DURATION=${DURATION:-20}
KEEP=${KEEP:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO/target}}
PG_SCALE=10
PG_CLIENTS=(8 32 64)
CONNECTIONS=(16 64 256)
WARMUP=2

log() { echo "compare: $*" >&2; }
die() {
    log "$*"
    exit 1
}

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds, not '$DURATION'"
[[ $(id -u) == 0 ]] || die "run as root (PostgreSQL runs as the postgres user through runuser)"
id postgres >/dev/null 2>&1 || die "no postgres user"
for tool in jq curl runuser "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pgbench"; do
    command -v "$tool" >/dev/null || die "missing $tool"
done

WORK=""
PGDATA=""
PG_STARTED=0
SERVER_PID=""

# Every exit path (success, error, Ctrl-C) stops what was started and
# removes the temporary directory.
cleanup() {
    local rc=$?
    set +e
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        log "stopping the Expereon server (pid $SERVER_PID)"
        kill -TERM "$SERVER_PID"
        for _ in $(seq 1 200); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if ((PG_STARTED)); then
        log "stopping PostgreSQL"
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The commands as they were run, for the report.
COMMANDS=()
note_command() { COMMANDS+=("$*"); }

# A localhost port nobody answers on (there is a small race until the
# server binds it; a clash fails loudly at start, not silently).
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "building the release server and loadgen (cargo, $TARGET_DIR)"
    note_command "cargo build --release -p command-api -p expereon-benches --target-dir $TARGET_DIR"
    (cd "$REPO" && cargo build --release -p command-api -p expereon-benches --target-dir "$TARGET_DIR") >&2
fi
SERVER_BIN=$TARGET_DIR/release/expereon
LOADGEN=$TARGET_DIR/release/loadgen
[[ -x $SERVER_BIN ]] || die "no $SERVER_BIN (build it, or unset SKIP_BUILD)"
[[ -x $LOADGEN ]] || die "no $LOADGEN (build it, or unset SKIP_BUILD)"

# ---------------------------------------------------------------- machine
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
CORES=$(nproc)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
KERNEL=$(uname -r)
PG_VERSION=$("$PG_BIN/postgres" --version)
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
if [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
LOAD_BEFORE=$(loadavg)

WORK=$(mktemp -d -t expereon-compare.XXXXXX)
# The postgres user must reach its directory inside.
chmod 755 "$WORK"
FS_TYPE=$(stat -f -c %T "$WORK")
log "temporary directory $WORK ($FS_TYPE)"

# ---------------------------------------------------------------- PostgreSQL
PG_DIR=$WORK/pg
PGDATA=$PG_DIR/data
PG_PORT=$(free_port)
mkdir "$PG_DIR"
chown postgres:postgres "$PG_DIR"
log "initdb $PGDATA"
# Local trust auth is safe here: the only listener is a unix socket in a
# directory of the postgres user's.
runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 20 "$WORK/initdb.log")"
note_command "runuser -u postgres -- $PG_BIN/initdb -D $PGDATA -A trust -U postgres -E UTF8 --locale=C"
# Only where it listens: everything else stays initdb's default.
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$PG_DIR'
port = $PG_PORT
EOF
PG_STARTED=1
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null ||
    die "PostgreSQL did not start: $(tail -n 20 "$PG_DIR/postgres.log")"
note_command "runuser -u postgres -- $PG_BIN/pg_ctl -D $PGDATA -l $PG_DIR/postgres.log -w start   # + listen_addresses='', unix_socket_directories='$PG_DIR', port=$PG_PORT"
PG_SETTINGS=$(runuser -u postgres -- "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -Atc \
    "select string_agg(name || '=' || current_setting(name), ', ' order by name) from pg_settings where name in ('fsync','synchronous_commit','wal_sync_method','full_page_writes','shared_buffers','max_connections')")

PGBENCH=(runuser -u postgres -- "$PG_BIN/pgbench" -h "$PG_DIR" -p "$PG_PORT" -U postgres)
log "pgbench -i -s $PG_SCALE"
"${PGBENCH[@]}" -i -s "$PG_SCALE" -q postgres >"$WORK/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed: $(tail -n 20 "$WORK/pgbench-init.log")"
note_command "runuser -u postgres -- $PG_BIN/pgbench -h $PG_DIR -p $PG_PORT -U postgres -i -s $PG_SCALE -q postgres"

declare -A PG_TPS PG_LAT
for clients in "${PG_CLIENTS[@]}"; do
    log "pgbench TPC-B: $clients clients, -j 2, -T $DURATION"
    out=$WORK/pgbench-c$clients.txt
    # pgbench's default script (TPC-B-like); it vacuums the small tables first.
    "${PGBENCH[@]}" -c "$clients" -j 2 -T "$DURATION" postgres >"$out" 2>&1 ||
        die "pgbench -c $clients failed: $(tail -n 20 "$out")"
    note_command "runuser -u postgres -- $PG_BIN/pgbench -h $PG_DIR -p $PG_PORT -U postgres -c $clients -j 2 -T $DURATION postgres"
    PG_TPS[$clients]=$(awk '/^tps = .*without initial connection time/ { print $3 }' "$out")
    PG_LAT[$clients]=$(awk '/^latency average = / { print $4 }' "$out")
    [[ -n ${PG_TPS[$clients]} ]] || die "no TPS in the pgbench output: $(cat "$out")"
    log "  ${PG_TPS[$clients]} TPS"
done
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
PG_STARTED=0

# ---------------------------------------------------------------- Expereon
DATA_DIR=$WORK/expereon-data
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export EXPEREON_ADMIN_TOKEN=$TOKEN # loadgen reads it from here, not from its argv
# Only the settings chosen here: an EXPEREON_* of the caller's shell (a
# PostgreSQL store, a test clock) would change what is measured.
UNSET=()
while IFS= read -r name; do
    [[ $name == EXPEREON_ADMIN_TOKEN ]] || UNSET+=(-u "$name")
done < <(compgen -e | grep '^EXPEREON_' || true)
log "starting $SERVER_BIN on $URL"
env "${UNSET[@]}" \
    EXPEREON_LISTEN="127.0.0.1:$PORT" \
    EXPEREON_DATA_DIR="$DATA_DIR" \
    EXPEREON_RATE_LIMIT=1000000 \
    "$SERVER_BIN" serve >"$WORK/expereon.log" 2>&1 &
SERVER_PID=$!
note_command "EXPEREON_LISTEN=127.0.0.1:$PORT EXPEREON_DATA_DIR=$DATA_DIR EXPEREON_RATE_LIMIT=1000000 EXPEREON_ADMIN_TOKEN=<64 random hex digits> $SERVER_BIN serve"
for i in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited at start: $(tail -n 30 "$WORK/expereon.log")"
    if curl -fsS --max-time 2 "$URL/healthz" >/dev/null 2>&1; then
        break
    fi
    ((i < 600)) || die "the server was not healthy after 60 s: $(tail -n 30 "$WORK/expereon.log")"
    sleep 0.1
done

declare -A EX_CMDS EX_LIFE EX_P50 EX_P99 EX_MEAN EX_ERR
LOADGEN_TABLES=""
for connections in "${CONNECTIONS[@]}"; do
    log "loadgen lifecycle: $connections connections, -T $DURATION"
    json=$WORK/loadgen-c$connections.json
    table=$WORK/loadgen-c$connections.txt
    "$LOADGEN" --url "$URL" --mix lifecycle --connections "$connections" \
        --warmup-secs "$WARMUP" --duration-secs "$DURATION" --json >"$json" 2>"$table" ||
        die "loadgen at $connections connections failed: $(tail -n 30 "$table")"
    note_command "$LOADGEN --url $URL --mix lifecycle --connections $connections --warmup-secs $WARMUP --duration-secs $DURATION --json"
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server died under load: $(tail -n 30 "$WORK/expereon.log")"
    EX_CMDS[$connections]=$(jq -r '.commandsPerSec' "$json")
    EX_LIFE[$connections]=$(jq -r '.lifecyclesPerSec' "$json")
    EX_P50[$connections]=$(jq -r '.latencyMs.p50' "$json")
    EX_P99[$connections]=$(jq -r '.latencyMs.p99' "$json")
    EX_MEAN[$connections]=$(jq -r '.latencyMs.mean' "$json")
    EX_ERR[$connections]=$(jq -r '.errors.total' "$json")
    LOADGEN_TABLES+=$(cat "$table")$'\n\n'
    log "  ${EX_CMDS[$connections]} commands/s"
done
SERVER_HWM=$(awk '/^VmHWM:/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
DATA_SIZE=$(du -sh "$DATA_DIR" | cut -f1)
log "stopping the server"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || log "the server exited with $? after SIGTERM"
SERVER_PID=""
LOAD_AFTER=$(loadavg)

# ---------------------------------------------------------------- report
fmt() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }

BEST_PG=0
BEST_PG_AT=""
for clients in "${PG_CLIENTS[@]}"; do
    if awk -v a="${PG_TPS[$clients]}" -v b="$BEST_PG" 'BEGIN { exit !(a > b) }'; then
        BEST_PG=${PG_TPS[$clients]}
        BEST_PG_AT=$clients
    fi
done
BEST_EX=0
BEST_EX_AT=""
for connections in "${CONNECTIONS[@]}"; do
    if awk -v a="${EX_CMDS[$connections]}" -v b="$BEST_EX" 'BEGIN { exit !(a > b) }'; then
        BEST_EX=${EX_CMDS[$connections]}
        BEST_EX_AT=$connections
    fi
done
RATIO=$(awk -v a="$BEST_EX" -v b="$BEST_PG" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }')

cat <<EOF
## Expereon vs PostgreSQL on the same machine (issue 13)

- Machine: $CPU_MODEL, $CORES cores, $MEM_GIB GiB RAM, Linux $KERNEL; temporary directories on $FS_TYPE
- Load average (1/5/15 min): $LOAD_BEFORE before, $LOAD_AFTER after
- $PG_VERSION, initdb defaults ($PG_SETTINGS), unix socket; pgbench scale $PG_SCALE, default TPC-B-like script, -j 2, -T $DURATION s
- Expereon $COMMIT, release build, fresh sled data directory, EXPEREON_RATE_LIMIT=1000000, other settings default; loadgen lifecycle mix (create+submit, approve, settle; a fresh requestId each; one seller/buyer pair per connection), $WARMUP s warm-up, $DURATION s measured; server peak RSS $SERVER_HWM, data directory $DATA_SIZE at the end

| System | Concurrency | Throughput | Latency mean (ms) | p50 (ms) | p99 (ms) | Errors |
|---|---:|---:|---:|---:|---:|---:|
EOF
for clients in "${PG_CLIENTS[@]}"; do
    echo "| PostgreSQL pgbench TPC-B | $clients clients | $(fmt "${PG_TPS[$clients]}" 1) TPS | ${PG_LAT[$clients]:-?} | | | |"
done
for connections in "${CONNECTIONS[@]}"; do
    echo "| Expereon lifecycle | $connections connections | $(fmt "${EX_CMDS[$connections]}" 1) commands/s ($(fmt "${EX_LIFE[$connections]}" 1) lifecycles/s) | $(fmt "${EX_MEAN[$connections]}" 2) | $(fmt "${EX_P50[$connections]}" 2) | $(fmt "${EX_P99[$connections]}" 2) | ${EX_ERR[$connections]} |"
done
cat <<EOF

Best Expereon commands/s ÷ best pgbench TPS: $(fmt "$BEST_EX" 1) ($BEST_EX_AT connections) ÷ $(fmt "$BEST_PG" 1) ($BEST_PG_AT clients) = **$RATIO**

(pgbench reports no percentiles; its latency is the mean. A TPC-B transaction is five statements and one durable commit; an Expereon command is one HTTP request answered after its events are durable and the read models have caught up.)

### loadgen output

\`\`\`text
${LOADGEN_TABLES%$'\n\n'}
\`\`\`

### Commands

\`\`\`sh
$(printf '%s\n' "${COMMANDS[@]}")
\`\`\`
EOF
