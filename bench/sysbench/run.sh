#!/usr/bin/env bash
# Run stock sysbench OLTP workloads against a throw-away MariaDB and a throw-away Canopy cluster
# (master aggregator + 4 leaves) on this machine, with the same options, and print one table.
# How to read it and what differs between the two: docs/sysbench.md.
#
# Knobs (environment): TIME (20) THREADS (8) TABLES (4) TABLE_SIZE (100000) LEAVES (4)
#   WORKLOADS ("oltp_point_select oltp_read_only oltp_insert oltp_update_index oltp_update_non_index oltp_delete")
#   RESULTS (results dir, default /tmp/canopy-sysbench-<UTC time>), KEEP=1 (keep data dirs),
#   CANOPY_BIN (use this binary, skip cargo build), MARIADB_BUFFER_POOL (256M),
#   STEP_TIMEOUT (seconds allowed for one prepare or cleanup, 1200),
#   DURABILITY (sync | async, default sync): sync = Canopy WITH SYNC DURABILITY (fsync per commit) beside
#   innodb_flush_log_at_trx_commit=1; async = Canopy WITH ASYNC DURABILITY (commit reaches the OS, survives a process
#   kill) beside innodb_flush_log_at_trx_commit=2 (the same guarantee).
# Exit code: 0 when every workload ran on both systems with no Canopy errors; 1 otherwise; 2 on a setup failure.
set -euo pipefail

TIME=${TIME:-20}
THREADS=${THREADS:-8}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
LEAVES=${LEAVES:-4}
WORKLOADS=${WORKLOADS:-"oltp_point_select oltp_read_only oltp_insert oltp_update_index oltp_update_non_index oltp_delete"}
KEEP=${KEEP:-0}
MARIADB_BUFFER_POOL=${MARIADB_BUFFER_POOL:-256M}
STEP_TIMEOUT=${STEP_TIMEOUT:-1200}
RESULTS=${RESULTS:-/tmp/canopy-sysbench-$(date -u +%Y%m%dT%H%M%SZ)}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TMP=""
PIDS=()   # every background process we started
NAMES=()  # a name per PID, for messages
CUR_PID="" # the sysbench step running now

log() { printf '[sysbench-run %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# ---------------------------------------------------------------- cleanup

# shellcheck disable=SC2317 # called by the trap
stop_all() {
    local rc=$?
    trap - EXIT INT TERM
    local i pid deadline
    [[ -n $CUR_PID ]] && PIDS+=("$CUR_PID") && NAMES+=(sysbench)
    if ((${#PIDS[@]} > 0)); then
        log "stopping ${#PIDS[@]} processes"
        for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        deadline=$((SECONDS + 15))
        for i in "${!PIDS[@]}"; do
            pid=${PIDS[$i]}
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                log "${NAMES[$i]} (pid $pid) did not stop after SIGTERM: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        # Server logs are worth keeping with the sysbench logs.
        if [[ -d $RESULTS ]]; then
            mkdir -p "$RESULTS/server-logs"
            cp "$TMP"/mariadb/error.log "$RESULTS/server-logs/mariadb.log" 2>/dev/null || true
            for f in "$TMP"/canopy/*/node.out; do
                [[ -e $f ]] && cp "$f" "$RESULTS/server-logs/canopy-$(basename "$(dirname "$f")").log"
            done
        fi
        if [[ $KEEP == 1 ]]; then
            log "KEEP=1: data left in $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap stop_all EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---------------------------------------------------------------- helpers

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

port_in_use() {
    local p=$1
    if command -v ss >/dev/null; then
        [[ -n $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
    fi
}

USED_PORTS=" "
# A port P is usable when P and P+10000 are free (Canopy's RPC port is P+10000). Ports stay below 32768 (Linux's
# ephemeral range) so an outgoing connection does not take one between the check and the bind.
free_port() { # VAR: sets VAR (a function, not $(...), so that USED_PORTS is remembered)
    local p tries=0
    while ((tries < 500)); do
        p=$((13000 + RANDOM % 9000))
        tries=$((tries + 1))
        [[ $USED_PORTS == *" $p "* || $USED_PORTS == *" $((p + 10000)) "* ]] && continue
        port_in_use "$p" && continue
        port_in_use $((p + 10000)) && continue
        USED_PORTS+="$p $((p + 10000)) "
        printf -v "$1" '%s' "$p"
        return 0
    done
    die "no free port pair found"
}

start_bg() { # name logfile cmd...
    local name=$1 out=$2
    shift 2
    "$@" >"$out" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
}

sql() { # port sql...
    local port=$1
    shift
    mariadb --protocol=tcp -h 127.0.0.1 -P "$port" -u root --batch --skip-column-names -e "$*"
}

wait_sql() { # name port pid
    local name=$1 port=$2 pid=$3 deadline=$((SECONDS + 60))
    until sql "$port" 'SELECT 1' >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see its log under $TMP)"
        ((SECONDS < deadline)) || die "$name did not accept connections within 60 s"
        sleep 0.3
    done
}

all_alive() { # prints the names of dead processes
    local i dead=""
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[$i]}" 2>/dev/null || dead+="${NAMES[$i]} "
    done
    printf '%s' "$dead"
}

# ---------------------------------------------------------------- 1. install and build

for tool in sysbench mariadbd mariadb mariadb-install-db; do
    if ! command -v "$tool" >/dev/null; then
        log "$tool missing: installing sysbench mariadb-server mariadb-client with apt-get"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            sysbench mariadb-server mariadb-client
        break
    fi
done
# mariadbd lives in /usr/sbin, not always on a non-root PATH.
export PATH="$PATH:/usr/sbin"
for tool in sysbench mariadbd mariadb mariadb-install-db timeout; do
    command -v "$tool" >/dev/null || die "$tool not found after installation"
done

if [[ -n ${CANOPY_BIN:-} ]]; then
    CANOPY=$CANOPY_BIN
else
    command -v cargo >/dev/null || die "cargo not found (install the Rust toolchain, or set CANOPY_BIN)"
    log "building Canopy: cargo build --release -p canopy"
    (cd "$REPO" && cargo build --release -p canopy) || die "cargo build failed"
    CANOPY=$REPO/target/release/canopy
fi
[[ -x $CANOPY ]] || die "$CANOPY is not executable"

mkdir -p "$RESULTS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/canopy-sysbench.XXXXXX")

# ---------------------------------------------------------------- machine facts

{
    echo "# sysbench: MariaDB vs Canopy"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: nproc=$(nproc), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)," \
        "$(uname -sr), cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "- temp dir filesystem: $(df -T "$TMP" | awk 'NR==2 {print $2}')"
    echo "- canopy: $CANOPY (repo at $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
    echo "- $(sysbench --version), $(mariadbd --version | sed 's/ *for .*//; s/  */ /g')"
    echo "- options: --time=$TIME --threads=$THREADS --tables=$TABLES --table-size=$TABLE_SIZE; Canopy: $LEAVES leaves"
    echo "- results: $RESULTS"
    echo
} | tee "$RESULTS/report.md"

# ---------------------------------------------------------------- 2. MariaDB

free_port MDB_PORT
mkdir -p "$TMP/mariadb"
log "initialising MariaDB datadir"
mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$TMP/mariadb/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$TMP/mariadb/install.log" 2>&1 ||
    { cat "$TMP/mariadb/install.log" >&2; die "mariadb-install-db failed"; }
DURABILITY=${DURABILITY:-sync}
case $DURABILITY in
sync) MDB_FLUSH=1 CANOPY_DB_OPTIONS='' ;;
async) MDB_FLUSH=2 CANOPY_DB_OPTIONS=' WITH ASYNC DURABILITY' ;;
*) die "DURABILITY must be sync or async, not '$DURABILITY'" ;;
esac
# Durability matched: sync = every commit fsynced on both (InnoDB redo log flushed at every commit, no binlog);
# async = every commit handed to the OS on both (survives a process kill, not a power loss).
MDB_ARGS=(
    --no-defaults --user="$(id -un)" --datadir="$TMP/mariadb/data"
    --port="$MDB_PORT" --bind-address=127.0.0.1 --socket="$TMP/mariadb/mysqld.sock"
    --pid-file="$TMP/mariadb/mysqld.pid" --log-error="$TMP/mariadb/error.log" --tmpdir="$TMP/mariadb"
    --skip-grant-tables --skip-name-resolve --skip-log-bin --sync-binlog=0
    --innodb-flush-log-at-trx-commit="$MDB_FLUSH" --innodb-buffer-pool-size="$MARIADB_BUFFER_POOL"
    --max-connections=500
)
log "starting MariaDB on 127.0.0.1:$MDB_PORT"
start_bg mariadb "$TMP/mariadb/stdout.log" mariadbd "${MDB_ARGS[@]}"
wait_sql MariaDB "$MDB_PORT" "${PIDS[-1]}"
sql "$MDB_PORT" 'CREATE DATABASE sbtest' || die "MariaDB: CREATE DATABASE sbtest failed"
{
    echo "- MariaDB: ${MDB_ARGS[*]}" | sed "s|$TMP|\$TMP|g"
    echo "- MariaDB reports innodb_flush_log_at_trx_commit, log_bin, sync_binlog, innodb_buffer_pool_size =" \
        "$(sql "$MDB_PORT" 'SELECT @@innodb_flush_log_at_trx_commit, @@log_bin, @@sync_binlog, @@innodb_buffer_pool_size' |
            tr '\t' ' ')"
} | tee -a "$RESULTS/report.md"

# ---------------------------------------------------------------- 2. Canopy

free_port MA_PORT
LEAF_PORTS=()
for ((i = 1; i <= LEAVES; i++)); do free_port lp; LEAF_PORTS+=("$lp"); done
start_canopy() { # name port
    mkdir -p "$TMP/canopy/$1"
    start_bg "canopy $1" "$TMP/canopy/$1/node.out" \
        "$CANOPY" server --data-dir "$TMP/canopy/$1" --host 127.0.0.1 --port "$2"
    wait_sql "canopy $1" "$2" "${PIDS[-1]}"
}
log "starting Canopy: master aggregator on $MA_PORT, leaves on ${LEAF_PORTS[*]}"
start_canopy ma "$MA_PORT"
for ((i = 0; i < LEAVES; i++)); do start_canopy "leaf$((i + 1))" "${LEAF_PORTS[$i]}"; done
sql "$MA_PORT" "BOOTSTRAP AGGREGATOR '127.0.0.1'" || die "Canopy: BOOTSTRAP AGGREGATOR failed"
for p in "${LEAF_PORTS[@]}"; do
    sql "$MA_PORT" "ADD LEAF root@'127.0.0.1':$p" || die "Canopy: ADD LEAF $p failed"
done
sql "$MA_PORT" "CREATE DATABASE sbtest$CANOPY_DB_OPTIONS" || die "Canopy: CREATE DATABASE sbtest failed"
echo "- durability: $DURABILITY (Canopy: CREATE DATABASE sbtest$CANOPY_DB_OPTIONS)" | tee -a "$RESULTS/report.md"
echo "- Canopy: $(sql "$MA_PORT" 'SHOW PARTITIONS ON sbtest' | wc -l) partition instances on $LEAVES leaves" |
    tee -a "$RESULTS/report.md"

# ---------------------------------------------------------------- 3. workloads

SB_COMMON=(--time="$TIME" --threads="$THREADS" --tables="$TABLES" --table-size="$TABLE_SIZE" --report-interval=0
    --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=root --mysql-db=sbtest)

declare -A TPS P95 ERRS STATUS DETAIL
ANY_BAD=0

log_of() { # system workload step: the log file of one step (a workload may be given as a path to a .lua file)
    local name=${2##*/}
    printf '%s/%s.%s.%s.log' "$RESULTS" "$1" "${name%.lua}" "$3"
}

# One sysbench step; its output goes to the log. Returns sysbench's exit code (124 on timeout).
sb_step() { # system port workload step timeout
    local sys=$1 port=$2 wl=$3 step=$4 limit=$5
    local logf
    logf=$(log_of "$sys" "$wl" "$step")
    echo "\$ sysbench $wl ${SB_COMMON[*]} --mysql-port=$port $step" >"$logf"
    local rc=0
    # In the background and waited for, so that a signal runs the trap at once instead of after sysbench ends.
    timeout -k 10 "$limit" sysbench "$wl" "${SB_COMMON[@]}" --mysql-port="$port" "$step" >>"$logf" 2>&1 &
    CUR_PID=$!
    wait "$CUR_PID" || rc=$?
    CUR_PID=""
    ((rc == 124)) && echo "run.sh: sysbench $step killed after $limit s" >>"$logf"
    return "$rc"
}

# The first error lines of a log (sysbench's FATAL / error lines, else its last lines).
first_errors() {
    local f=$1 lines
    lines=$(grep -E 'FATAL|error|Error|ERROR|killed after' "$f" | awk '!seen[$0]++' | head -n 3 || true)
    [[ -n $lines ]] || lines=$(tail -n 4 "$f")
    printf '%s' "$lines"
}

run_workload() { # system port workload
    local sys=$1 port=$2 wl=$3 key="$1/$3" rc logf
    log "$sys: $wl prepare"
    STATUS[$key]=ok
    DETAIL[$key]=""
    if ! sb_step "$sys" "$port" "$wl" prepare "$STEP_TIMEOUT"; then
        STATUS[$key]=FAILED
        DETAIL[$key]="prepare: $(first_errors "$(log_of "$sys" "$wl" prepare)")"
    else
        # sysbench reads random ids in 1..table-size; say so when the loaded ids are not exactly that (Canopy's
        # AUTO_INCREMENT is unique but not guaranteed consecutive), since missing ids make point reads find nothing.
        local check want="$TABLE_SIZE"$'\t'1$'\t'"$TABLE_SIZE"
        check=$(sql "$port" "SELECT COUNT(*), MIN(id), MAX(id) FROM sbtest.sbtest1" 2>&1 || true)
        echo "run.sh: sbtest1 after prepare: COUNT(*), MIN(id), MAX(id) = $check" >>"$(log_of "$sys" "$wl" prepare)"
        if [[ $check != "$want" ]]; then
            DETAIL[$key]="after prepare, sbtest1 has COUNT(*), MIN(id), MAX(id) = $(tr '\t\n' ', ' <<<"$check")"
            DETAIL[$key]+=" (expected $TABLE_SIZE, 1, $TABLE_SIZE)"
        fi
        log "$sys: $wl run (${TIME} s)"
        rc=0
        sb_step "$sys" "$port" "$wl" run $((TIME + 300)) || rc=$?
        logf=$(log_of "$sys" "$wl" run)
        if ((rc != 0)); then
            STATUS[$key]=FAILED
            DETAIL[$key]="run (exit $rc): $(first_errors "$logf")"
        else
            if [[ $wl == oltp_point_select ]]; then
                TPS[$key]=$(awk '/^ *queries:/ {gsub(/\(/, "", $3); print $3; exit}' "$logf")
            else
                TPS[$key]=$(awk '/^ *transactions:/ {gsub(/\(/, "", $3); print $3; exit}' "$logf")
            fi
            P95[$key]=$(awk '/95th percentile:/ {print $3; exit}' "$logf")
            ERRS[$key]=$(awk '/ignored errors:/ {print $3; exit}' "$logf")
            if [[ -z ${TPS[$key]} || -z ${P95[$key]} || -z ${ERRS[$key]} ]]; then
                STATUS[$key]=FAILED
                DETAIL[$key]="run: could not parse sysbench's output: $(first_errors "$logf")"
            elif [[ ${ERRS[$key]} != 0 ]]; then
                DETAIL[$key]="run: ${ERRS[$key]} ignored errors; $(first_errors "$logf")"
            fi
        fi
    fi
    log "$sys: $wl cleanup"
    if ! sb_step "$sys" "$port" "$wl" cleanup "$STEP_TIMEOUT"; then
        DETAIL[$key]+="${DETAIL[$key]:+ | }cleanup: $(first_errors "$(log_of "$sys" "$wl" cleanup)")"
        # Start the next workload from an empty database whatever cleanup left.
        sql "$port" 'DROP DATABASE IF EXISTS sbtest' >>"$(log_of "$sys" "$wl" cleanup)" 2>&1 || true
        local options=''
        [[ $sys == canopy ]] && options=$CANOPY_DB_OPTIONS
        sql "$port" "CREATE DATABASE IF NOT EXISTS sbtest$options" >>"$(log_of "$sys" "$wl" cleanup)" 2>&1 || true
    fi
    local dead
    dead=$(all_alive)
    if [[ -n $dead ]]; then
        DETAIL[$key]+="${DETAIL[$key]:+ | }process(es) died: $dead"
        log "process(es) died: $dead"
    fi
    [[ ${STATUS[$key]} == ok ]] || log "$sys: $wl FAILED: ${DETAIL[$key]}"
}

for wl in $WORKLOADS; do
    [[ -f /usr/share/sysbench/$wl.lua || -f $wl ]] || log "warning: no $wl.lua found; sysbench may not know it"
    run_workload mariadb "$MDB_PORT" "$wl"
    run_workload canopy "$MA_PORT" "$wl"
done

# ---------------------------------------------------------------- report

fmt_num() { [[ -n ${1:-} ]] && printf "%'.2f" "$1" 2>/dev/null || printf '%s' "${1:-}"; }
{
    echo
    echo "| workload | MariaDB tps | Canopy tps | ratio (Canopy/MariaDB) | MariaDB p95 ms | Canopy p95 ms | Canopy errors |"
    echo "|---|---|---|---|---|---|---|"
    for wl in $WORKLOADS; do
        m="mariadb/$wl" c="canopy/$wl"
        unit=""
        [[ $wl == oltp_point_select ]] && unit=" (queries/s)"
        if [[ ${STATUS[$m]} == ok ]]; then mt=$(fmt_num "${TPS[$m]}") mp=${P95[$m]}; else mt=FAILED mp=-; fi
        if [[ ${STATUS[$c]} == ok ]]; then ct=$(fmt_num "${TPS[$c]}") cp=${P95[$c]} ce=${ERRS[$c]}; else ct=FAILED cp=- ce=-; fi
        if [[ ${STATUS[$m]} == ok && ${STATUS[$c]} == ok ]]; then
            ratio=$(awk -v a="${TPS[$c]}" -v b="${TPS[$m]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')
        else
            ratio=-
        fi
        echo "| $wl$unit | $mt | $ct | $ratio | $mp | $cp | $ce |"
        if [[ ${STATUS[$m]} != ok || ${STATUS[$c]} != ok || ${ERRS[$c]:-0} != 0 ]]; then ANY_BAD=1; fi
    done
    echo
    notes=""
    for wl in $WORKLOADS; do
        for sys in canopy mariadb; do
            k="$sys/$wl"
            [[ -n ${DETAIL[$k]} ]] || continue
            notes+="- **$sys $wl** ${STATUS[$k]}: $(printf '%s' "${DETAIL[$k]}" | tr '\n' ' ' | sed 's/  */ /g')"$'\n'
        done
    done
    if [[ -n $notes ]]; then
        echo "Failures and errors (full logs in $RESULTS):"
        echo
        printf '%s' "$notes"
        echo
    fi
    if ((ANY_BAD)); then echo "Result: NOT CLEAN (a workload failed or had errors)"; else echo "Result: clean"; fi
} | tee -a "$RESULTS/report.md"

log "report: $RESULTS/report.md; logs: $RESULTS"
# ANY_BAD was set in a pipeline subshell; recompute it here.
bad=0
for wl in $WORKLOADS; do
    [[ ${STATUS[mariadb/$wl]} == ok && ${STATUS[canopy/$wl]} == ok && ${ERRS[canopy/$wl]:-0} == 0 ]] || bad=1
done
exit "$bad"
