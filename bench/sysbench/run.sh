#!/usr/bin/env bash
# Run stock sysbench OLTP workloads against throw-away systems on this machine, with the same options, and print one
# table. The systems (SYSTEMS, default "mariadb canopy"): mariadb (one server), mariadb-semisync (a primary with a
# semi-synchronous replica), canopy (master aggregator + LEAVES leaves, redundancy 1), canopy-r2 (master aggregator
# + LEAVES leaves in two availability groups, redundancy 2: every partition has a synchronous replica on the pair),
# canopy-r2-async (the same with the database created WITH ASYNC REPLICATION: commits do not wait for the replica).
# How to read it and what differs between them: docs/sysbench.md.
#
# Knobs (environment): SYSTEMS ("mariadb canopy") TIME (20) THREADS (8) TABLES (4) TABLE_SIZE (100000) LEAVES (4)
#   WORKLOADS ("oltp_point_select oltp_read_only oltp_insert oltp_update_index oltp_update_non_index oltp_delete")
#   RESULTS (results dir, default /tmp/canopy-sysbench-<UTC time>), KEEP=1 (keep data dirs),
#   CANOPY_BIN (use this binary, skip cargo build), MARIADB_BUFFER_POOL (256M),
#   STEP_TIMEOUT (seconds allowed for one prepare or cleanup, 1200),
#   DURABILITY (sync | async, default sync): sync = Canopy WITH SYNC DURABILITY (fsync per commit) beside
#   innodb_flush_log_at_trx_commit=1 (and sync_binlog=1 where a binary log is on); async = Canopy WITH ASYNC
#   DURABILITY (commit reaches the OS, survives a process kill) beside innodb_flush_log_at_trx_commit=2 and
#   sync_binlog=0 (the same guarantee).
# Besides throughput the report gives each system's CPU per transaction during the run (user + system time of its
# server processes from /proc/<pid>/stat, divided by the transactions; for Canopy also the master aggregator's
# share): on 2 shared cores it is the steadier measure of what a commit costs.
# Exit code: 0 when every workload ran on every system with no Canopy errors; 1 otherwise; 2 on a setup failure.
set -euo pipefail

SYSTEMS=${SYSTEMS:-"mariadb canopy"}
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
            for f in "$TMP"/mariadb*/error.log "$TMP"/mariadb*/*/error.log; do
                [[ -e $f ]] && cp "$f" "$RESULTS/server-logs/$(dirname "${f#"$TMP"/}" | tr / -).log"
            done
            for f in "$TMP"/canopy*/*/node.out; do
                [[ -e $f ]] && cp "$f" "$RESULTS/server-logs/$(dirname "${f#"$TMP"/}" | tr / -).log"
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

declare -A SERVER_PIDS AGG_PID # the server processes of each system, and each Canopy system's master aggregator
# CPU time (user + system, clock ticks) the given processes have used so far.
cpu_ticks() { # pid...
    local pid total=0 fields f
    for pid in "$@"; do
        # Fields after the command name, which is in parentheses: utime and stime are the 12th and 13th of them.
        fields=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        read -r -a f <<<"$fields"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
TICKS_PER_S=$(getconf CLK_TCK)

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
    echo "# sysbench: $SYSTEMS"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: nproc=$(nproc), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)," \
        "$(uname -sr), cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "- temp dir filesystem: $(df -T "$TMP" | awk 'NR==2 {print $2}')"
    echo "- canopy: $CANOPY (repo at $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
    echo "- $(sysbench --version), $(mariadbd --version | sed 's/ *for .*//; s/  */ /g')"
    echo "- options: --time=$TIME --threads=$THREADS --tables=$TABLES --table-size=$TABLE_SIZE; Canopy: $LEAVES leaves"
    echo "- systems: $SYSTEMS"
    echo "- results: $RESULTS"
    echo
} | tee "$RESULTS/report.md"

# ---------------------------------------------------------------- 2. the systems

for sys in $SYSTEMS; do
    case $sys in
    mariadb | mariadb-semisync | canopy | canopy-r2 | canopy-r2-async) ;;
    *) die "unknown system '$sys' in SYSTEMS (mariadb, mariadb-semisync, canopy, canopy-r2, canopy-r2-async)" ;;
    esac
done
has_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }

DURABILITY=${DURABILITY:-sync}
case $DURABILITY in
sync) MDB_FLUSH=1 MDB_SYNC_BINLOG=1 CANOPY_DB_OPTIONS='' ;;
async) MDB_FLUSH=2 MDB_SYNC_BINLOG=0 CANOPY_DB_OPTIONS=' WITH ASYNC DURABILITY' ;;
*) die "DURABILITY must be sync or async, not '$DURABILITY'" ;;
esac
# The CREATE DATABASE options of a Canopy system: canopy-r2-async's replicas follow without commits waiting.
db_options() { # system
    case $1 in
    canopy-r2-async) [[ -n $CANOPY_DB_OPTIONS ]] && echo "$CANOPY_DB_OPTIONS ASYNC REPLICATION" ||
        echo ' WITH ASYNC REPLICATION' ;;
    canopy*) echo "$CANOPY_DB_OPTIONS" ;;
    esac
}
echo "- durability: $DURABILITY" | tee -a "$RESULTS/report.md"
declare -A PORT

mariadb_init() { # dir
    mkdir -p "$1"
    mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$1/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$1/install.log" 2>&1 ||
        { cat "$1/install.log" >&2; die "mariadb-install-db failed"; }
}
# The options every MariaDB server here gets (durability matched to Canopy's, see docs/sysbench.md).
mariadb_args() { # dir port
    printf '%s\n' --no-defaults --user="$(id -un)" --datadir="$1/data" \
        --port="$2" --bind-address=127.0.0.1 --socket="$1/mysqld.sock" \
        --pid-file="$1/mysqld.pid" --log-error="$1/error.log" --tmpdir="$1" \
        --skip-grant-tables --skip-name-resolve \
        --innodb-flush-log-at-trx-commit="$MDB_FLUSH" --innodb-buffer-pool-size="$MARIADB_BUFFER_POOL" \
        --max-connections=500
}

if has_system mariadb; then
    free_port MDB_PORT
    PORT[mariadb]=$MDB_PORT
    log "initialising MariaDB datadir"
    mariadb_init "$TMP/mariadb"
    # Durability matched: sync = every commit fsynced (InnoDB redo log flushed at every commit, no binlog);
    # async = every commit handed to the OS (survives a process kill, not a power loss).
    mapfile -t MDB_ARGS < <(mariadb_args "$TMP/mariadb" "$MDB_PORT")
    MDB_ARGS+=(--skip-log-bin --sync-binlog=0)
    log "starting MariaDB on 127.0.0.1:$MDB_PORT"
    start_bg mariadb "$TMP/mariadb/stdout.log" mariadbd "${MDB_ARGS[@]}"
    SERVER_PIDS[mariadb]="${PIDS[-1]}"
    wait_sql MariaDB "$MDB_PORT" "${PIDS[-1]}"
    sql "$MDB_PORT" 'CREATE DATABASE sbtest' || die "MariaDB: CREATE DATABASE sbtest failed"
    {
        echo "- mariadb: ${MDB_ARGS[*]}" | sed "s|$TMP|\$TMP|g"
        echo "- mariadb reports innodb_flush_log_at_trx_commit, log_bin, sync_binlog, innodb_buffer_pool_size =" \
            "$(sql "$MDB_PORT" 'SELECT @@innodb_flush_log_at_trx_commit, @@log_bin, @@sync_binlog, @@innodb_buffer_pool_size' |
                tr '\t' ' ')"
    } | tee -a "$RESULTS/report.md"
fi

# A primary whose commits wait until the replica has received their binary log events (semi-synchronous, the
# lossless AFTER_SYNC wait point: the primary's readers see a commit only after the replica acknowledged it), so an
# acknowledged write survives the loss of the primary: the guarantee Canopy's redundancy 2 gives. The timeout is an
# hour so the primary never falls back to asynchronous replication during a run (the report shows Rpl_semi_sync
# counters to prove it).
if has_system mariadb-semisync; then
    free_port MDBP_PORT
    free_port MDBR_PORT
    PORT[mariadb-semisync]=$MDBP_PORT
    log "initialising the MariaDB semi-sync primary and replica datadirs"
    mariadb_init "$TMP/mariadb-semisync/primary"
    mariadb_init "$TMP/mariadb-semisync/replica"
    mapfile -t MDBP_ARGS < <(mariadb_args "$TMP/mariadb-semisync/primary" "$MDBP_PORT")
    MDBP_ARGS+=(--server-id=1 --log-bin="$TMP/mariadb-semisync/primary/binlog" --binlog-format=ROW
        --sync-binlog="$MDB_SYNC_BINLOG" --rpl-semi-sync-master-enabled=ON
        --rpl-semi-sync-master-wait-point=AFTER_SYNC --rpl-semi-sync-master-timeout=3600000)
    mapfile -t MDBR_ARGS < <(mariadb_args "$TMP/mariadb-semisync/replica" "$MDBR_PORT")
    MDBR_ARGS+=(--server-id=2 --skip-log-bin --relay-log="$TMP/mariadb-semisync/replica/relay"
        --rpl-semi-sync-slave-enabled=ON)
    log "starting the MariaDB semi-sync primary on 127.0.0.1:$MDBP_PORT and its replica on 127.0.0.1:$MDBR_PORT"
    start_bg mariadb-primary "$TMP/mariadb-semisync/primary/stdout.log" mariadbd "${MDBP_ARGS[@]}"
    SERVER_PIDS[mariadb-semisync]="${PIDS[-1]}"
    wait_sql "MariaDB primary" "$MDBP_PORT" "${PIDS[-1]}"
    start_bg mariadb-replica "$TMP/mariadb-semisync/replica/stdout.log" mariadbd "${MDBR_ARGS[@]}"
    SERVER_PIDS[mariadb-semisync]+=" ${PIDS[-1]}"
    wait_sql "MariaDB replica" "$MDBR_PORT" "${PIDS[-1]}"
    sql "$MDBR_PORT" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MDBP_PORT, MASTER_USER='root',
        MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos; START SLAVE" || die "MariaDB replica: START SLAVE failed"
    deadline=$((SECONDS + 60))
    until [[ $(sql "$MDBP_PORT" "SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'" | cut -f2) == 1 ]]; do
        ((SECONDS < deadline)) || die "the MariaDB replica did not connect as a semi-sync replica within 60 s"
        sleep 0.3
    done
    sql "$MDBP_PORT" 'CREATE DATABASE sbtest' || die "MariaDB primary: CREATE DATABASE sbtest failed"
    {
        echo "- mariadb-semisync primary: ${MDBP_ARGS[*]}" | sed "s|$TMP|\$TMP|g"
        echo "- mariadb-semisync replica: ${MDBR_ARGS[*]}" | sed "s|$TMP|\$TMP|g"
        echo "- mariadb-semisync primary reports rpl_semi_sync_master_enabled, wait_point, log_bin, sync_binlog," \
            "innodb_flush_log_at_trx_commit = $(sql "$MDBP_PORT" 'SELECT @@rpl_semi_sync_master_enabled,
                @@rpl_semi_sync_master_wait_point, @@log_bin, @@sync_binlog, @@innodb_flush_log_at_trx_commit' |
                tr '\t' ' '); replica: rpl_semi_sync_slave_enabled = $(sql "$MDBR_PORT" 'SELECT @@rpl_semi_sync_slave_enabled')"
    } | tee -a "$RESULTS/report.md"
fi

start_canopy() { # dir name port
    mkdir -p "$TMP/$1/$2"
    start_bg "$1 $2" "$TMP/$1/$2/node.out" \
        "$CANOPY" server --data-dir "$TMP/$1/$2" --host 127.0.0.1 --port "$3"
    SERVER_PIDS[$1]+="${SERVER_PIDS[$1]:+ }${PIDS[-1]}"
    [[ $2 == ma ]] && AGG_PID[$1]=${PIDS[-1]}
    wait_sql "$1 $2" "$3" "${PIDS[-1]}"
}
# A Canopy cluster: master aggregator + LEAVES leaves; redundancy 2 puts the first half of the leaves in
# availability group 1 and the rest in group 2 (leaf k paired with leaf k + LEAVES/2).
start_cluster() { # system redundancy
    local sys=$1 redundancy=$2 ma i group leaf_ports=()
    free_port ma
    PORT[$sys]=$ma
    for ((i = 1; i <= LEAVES; i++)); do free_port lp; leaf_ports+=("$lp"); done
    log "starting $sys: master aggregator on $ma, leaves on ${leaf_ports[*]}"
    start_canopy "$sys" ma "$ma"
    for ((i = 0; i < LEAVES; i++)); do start_canopy "$sys" "leaf$((i + 1))" "${leaf_ports[$i]}"; done
    sql "$ma" "BOOTSTRAP AGGREGATOR '127.0.0.1'" || die "$sys: BOOTSTRAP AGGREGATOR failed"
    if ((redundancy == 2)); then
        ((LEAVES % 2 == 0)) || die "canopy-r2 needs an even LEAVES (pairs), not $LEAVES"
        sql "$ma" "SET GLOBAL redundancy_level = 2" || die "$sys: SET GLOBAL redundancy_level = 2 failed"
    fi
    for ((i = 0; i < LEAVES; i++)); do
        group=""
        ((redundancy == 2)) && group=" INTO GROUP $((i < LEAVES / 2 ? 1 : 2))"
        sql "$ma" "ADD LEAF root@'127.0.0.1':${leaf_ports[$i]}$group" || die "$sys: ADD LEAF ${leaf_ports[$i]} failed"
    done
    local options
    options=$(db_options "$sys")
    sql "$ma" "CREATE DATABASE sbtest$options" || die "$sys: CREATE DATABASE sbtest failed"
    echo "- $sys: redundancy $redundancy, CREATE DATABASE sbtest$options," \
        "$(sql "$ma" 'SHOW PARTITIONS ON sbtest' | wc -l) partition instances on $LEAVES leaves" |
        tee -a "$RESULTS/report.md"
}
has_system canopy && start_cluster canopy 1
has_system canopy-r2 && start_cluster canopy-r2 2
has_system canopy-r2-async && start_cluster canopy-r2-async 2

# ---------------------------------------------------------------- 3. workloads

SB_COMMON=(--time="$TIME" --threads="$THREADS" --tables="$TABLES" --table-size="$TABLE_SIZE" --report-interval=0
    --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=root --mysql-db=sbtest)

declare -A TPS P95 ERRS STATUS DETAIL SEMISYNC CPU
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
        local all_before agg_before=0 all_after agg_after=0
        # shellcheck disable=SC2086 # a list of pids
        all_before=$(cpu_ticks ${SERVER_PIDS[$sys]})
        [[ -n ${AGG_PID[$sys]:-} ]] && agg_before=$(cpu_ticks "${AGG_PID[$sys]}")
        sb_step "$sys" "$port" "$wl" run $((TIME + 300)) || rc=$?
        # shellcheck disable=SC2086
        all_after=$(cpu_ticks ${SERVER_PIDS[$sys]})
        [[ -n ${AGG_PID[$sys]:-} ]] && agg_after=$(cpu_ticks "${AGG_PID[$sys]}")
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
            # CPU per transaction in µs: all server processes, and (Canopy) the master aggregator's part.
            CPU[$key]=$(awk -v all=$((all_after - all_before)) -v agg=$((agg_after - agg_before)) -v hz="$TICKS_PER_S" \
                -v canopy="${AGG_PID[$sys]:+1}" '/^ *transactions:/ {
                    if ($2 > 0) { printf "%.0f", all / hz * 1e6 / $2; if (canopy) printf " (ma %.0f)", agg / hz * 1e6 / $2 }
                    exit }' "$logf")
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
        local options
        options=$(db_options "$sys")
        sql "$port" "CREATE DATABASE IF NOT EXISTS sbtest$options" >>"$(log_of "$sys" "$wl" cleanup)" 2>&1 || true
    fi
    if [[ $sys == mariadb-semisync ]]; then
        # Whether every commit of the run waited for the replica (no_tx counts commits that did not).
        SEMISYNC[$key]=$(sql "$port" "SHOW STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_yes_tx',
            'Rpl_semi_sync_master_no_tx', 'Rpl_semi_sync_master_status')" | tr '\t\n' '= ' | sed 's/ $//')
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
    for sys in $SYSTEMS; do run_workload "$sys" "${PORT[$sys]}" "$wl"; done
done

# ---------------------------------------------------------------- report

fmt_num() { [[ -n ${1:-} ]] && printf "%'.2f" "$1" 2>/dev/null || printf '%s' "${1:-}"; }
# The ratios worth reading, each shown when both of its systems ran: numerator/denominator.
RATIOS=""
for r in canopy/mariadb canopy-r2/canopy canopy-r2/mariadb-semisync canopy-r2-async/canopy mariadb-semisync/mariadb; do
    has_system "${r%/*}" && has_system "${r#*/}" && RATIOS+="$r "
done
ratio_of() { # workload numerator denominator
    local a="$2/$1" b="$3/$1"
    if [[ ${STATUS[$a]} == ok && ${STATUS[$b]} == ok ]]; then
        awk -v a="${TPS[$a]}" -v b="${TPS[$b]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'
    else
        printf -- '-'
    fi
}
{
    echo
    header="| workload |"
    rule="|---|"
    for sys in $SYSTEMS; do header+=" $sys tps |"; rule+="---|"; done
    for r in $RATIOS; do header+=" $r |"; rule+="---|"; done
    for sys in $SYSTEMS; do header+=" $sys p95 ms |"; rule+="---|"; done
    for sys in $SYSTEMS; do header+=" $sys CPU µs/tx |"; rule+="---|"; done
    for sys in $SYSTEMS; do [[ $sys == canopy* ]] && header+=" $sys errors |" && rule+="---|"; done
    echo "$header"
    echo "$rule"
    for wl in $WORKLOADS; do
        unit=""
        [[ $wl == oltp_point_select ]] && unit=" (queries/s)"
        line="| $wl$unit |"
        for sys in $SYSTEMS; do
            k="$sys/$wl"
            if [[ ${STATUS[$k]} == ok ]]; then line+=" $(fmt_num "${TPS[$k]}") |"; else line+=" FAILED |"; fi
        done
        for r in $RATIOS; do line+=" $(ratio_of "$wl" "${r%/*}" "${r#*/}") |"; done
        for sys in $SYSTEMS; do
            k="$sys/$wl"
            if [[ ${STATUS[$k]} == ok ]]; then line+=" ${P95[$k]} |"; else line+=" - |"; fi
        done
        for sys in $SYSTEMS; do line+=" ${CPU[$sys/$wl]:--} |"; done
        for sys in $SYSTEMS; do
            k="$sys/$wl"
            [[ $sys == canopy* ]] || continue
            if [[ ${STATUS[$k]} == ok ]]; then line+=" ${ERRS[$k]} |"; else line+=" - |"; fi
        done
        echo "$line"
    done
    echo
    notes=""
    for wl in $WORKLOADS; do
        for sys in $SYSTEMS; do
            k="$sys/$wl"
            [[ -n ${SEMISYNC[$k]:-} ]] && notes+="- **$sys $wl** primary after the run (cumulative): ${SEMISYNC[$k]}"$'\n'
            [[ -n ${DETAIL[$k]} ]] || continue
            notes+="- **$sys $wl** ${STATUS[$k]}: $(printf '%s' "${DETAIL[$k]}" | tr '\n' ' ' | sed 's/  */ /g')"$'\n'
        done
    done
    if [[ -n $notes ]]; then
        echo "Notes, failures and errors (full logs in $RESULTS):"
        echo
        printf '%s' "$notes"
        echo
    fi
    bad=0
    for wl in $WORKLOADS; do
        for sys in $SYSTEMS; do
            k="$sys/$wl"
            [[ ${STATUS[$k]} == ok ]] || bad=1
            [[ $sys == canopy* && ${STATUS[$k]} == ok && ${ERRS[$k]:-0} != 0 ]] && bad=1
        done
    done
    if ((bad)); then echo "Result: NOT CLEAN (a workload failed or had errors)"; else echo "Result: clean"; fi
} | tee -a "$RESULTS/report.md"

log "report: $RESULTS/report.md; logs: $RESULTS"
# The verdict was computed in a pipeline subshell; compute it again here.
bad=0
for wl in $WORKLOADS; do
    for sys in $SYSTEMS; do
        k="$sys/$wl"
        [[ ${STATUS[$k]} == ok ]] || bad=1
        [[ $sys == canopy* && ${STATUS[$k]} == ok && ${ERRS[$k]:-0} != 0 ]] && bad=1
    done
done
exit "$bad"
