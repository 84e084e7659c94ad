#!/usr/bin/env bash
# A real Slurm cluster for the test suite: node `localhost` (partition debug, the default) and,
# for multi-node jobs, a second slurmd `node2` on this same machine (partition multi = both nodes).
#
#   slurm_cluster.sh start|stop|status [STATE_DIR]      (default /tmp/launcher-test-slurm)
#
# start : installs the Debian packages when missing (slurmctld slurmd slurm-client munge
#         slurmdbd mariadb-server libpmix2 libpmix-dev), then starts munged, a private MariaDB (127.0.0.1, own port
#         and datadir), slurmdbd, slurmctld, `slurmd -N localhost` and `slurmd -N node2`, registers
#         the cluster in the accounting database and waits until both nodes are idle. Idempotent: when everything
#         is already up with the same configuration it returns in about a second.
# stop  : cancels jobs, kills every daemon started by `start` and waits until they are gone.
# status: exit 0 when the controller answers and node `localhost` is idle/mixed/allocated.
#
# Slurm reads the DEFAULT config location (/etc/slurm/slurm.conf), so sbatch/squeue/sacct/
# scontrol work for every process on the machine without SLURM_CONF. Consequently only one
# such cluster can run per machine (the Slurm ports 6817-6819 are global too); all state,
# spool, log and pid files live under STATE_DIR.
#
# Environment knobs: LAUNCHER_SLURM_DB_PORT (MariaDB port, default 33306),
#                    LAUNCHER_SLURM_START_TIMEOUT (seconds to wait for an idle node, default 60).
set -uo pipefail

ACTION="${1:-}"
STATE_DIR="${2:-/tmp/launcher-test-slurm}"
CLUSTER=lab
PARTITION=debug
# Two slurmd on one host: each node has its own Port= and its own spool/pid/log files (%n).
MULTI_PARTITION=multi
NODES=(localhost node2)
declare -A NODE_PORT=([localhost]=6818 [node2]=6828)
NGPUS=8
DB_PORT="${LAUNCHER_SLURM_DB_PORT:-33306}"
DB_USER=slurm
DB_PASS=slurm-test-pw
DB_NAME=slurm_acct_db
START_TIMEOUT="${LAUNCHER_SLURM_START_TIMEOUT:-60}"
ETC=/etc/slurm
LOCK_FILE=/tmp/launcher-test-slurm.lock
# libpmix-dev: Slurm's mpi/pmix plugin dlopens the unversioned pmix2/lib/libpmix.so (srun --mpi=pmix).
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server libpmix2 libpmix-dev)
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { echo "[slurm_cluster +${SECONDS}s] $*" >&2; }
die() {
    log "ERROR: $*"
    # Show the tail of the daemon logs: this is what makes a failed start debuggable.
    for f in "$STATE_DIR"/log/*.log "$STATE_DIR"/munge/munged.log; do
        [ -f "$f" ] || continue
        echo "----- tail $f -----" >&2
        tail -n 25 "$f" >&2
    done
    exit 1
}

case "$ACTION" in start|stop|status) ;; *)
    echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$(pwd)/$STATE_DIR" ;; esac
STATE_DIR="${STATE_DIR%/}"

RUN="$STATE_DIR/run"
LOGD="$STATE_DIR/log"
DB_DATADIR="$STATE_DIR/mysql"
DB_SOCK="$RUN/mysqld.sock"
MUNGE_DIR="$STATE_DIR/munge"

# ---------------------------------------------------------------- helpers

# Alive = /proc/PID exists and is not a zombie (PID 1 of a sandbox may reap slowly).
pid_alive() {
    local pid="$1" stat
    [ -n "$pid" ] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != "Z" ] && [ "${stat%% *}" != "X" ]
}

# Run a daemon detached from our stdio (a caller capturing our output must get EOF) and
# without the lock fd 9 (else the daemon would hold the start/stop lock forever).
daemon() { "$@" </dev/null >>"$LOGD/daemons.out" 2>&1 9>&-; }

pidfile_pid() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }

# PID from pid file $1 if that process is alive AND runs executable $2 (a stale pid file
# whose PID was reused by another program must not count, nor be killed).
our_pid() {
    local pid
    pid="$(pidfile_pid "$1")" || return 1
    pid_alive "$pid" && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ] && echo "$pid"
}

# PIDs of live processes whose executable is $1 (exact path); optional $2 must occur in the cmdline.
pids_by_exe() {
    local exe needle="${2:-}" d pid
    exe="$(readlink -f "$1")"  # Debian: /usr/sbin/slurmctld -> /etc/alternatives -> slurmctld-wlm
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        [ "$(readlink "$d/exe" 2>/dev/null)" = "$exe" ] || continue
        if [ -n "$needle" ]; then
            tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$needle" || continue
        fi
        pid_alive "$pid" && echo "$pid"
    done
}

wait_gone() {  # wait_gone SECONDS PID...
    local limit="$1"; shift
    local deadline=$((SECONDS + limit)) p any
    while :; do
        any=""
        for p in "$@"; do pid_alive "$p" && any=1; done
        [ -z "$any" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

kill_and_wait() {  # kill_and_wait NAME PID...
    local name="$1"; shift
    local pids=() p
    for p in $(printf '%s\n' "$@" | sort -un); do pid_alive "$p" && pids+=("$p"); done
    [ "${#pids[@]}" -eq 0 ] && return 0
    log "stopping $name (${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null
    if ! wait_gone 15 "${pids[@]}"; then
        log "$name did not exit on SIGTERM, sending SIGKILL"
        kill -KILL "${pids[@]}" 2>/dev/null
        wait_gone 10 "${pids[@]}" || { log "ERROR: $name (${pids[*]}) still alive"; return 1; }
    fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
    local limit="$1" what="$2"; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

node_state() { sinfo -h -N -n "${1:-localhost}" -o '%T' 2>/dev/null | head -n1; }

ctld_running() { [ -n "$(pids_by_exe /usr/sbin/slurmctld)" ]; }  # fast; `scontrol ping` of a dead one takes ~9 s

cluster_ok() {
    ctld_running || return 1
    scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
    local node
    for node in "${NODES[@]}"; do
        case "$(node_state "$node")" in idle|mixed|allocated|completing) ;; *) return 1 ;; esac
    done
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
db_ok() { mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1; }
dbd_ok() { sacctmgr -n -P show cluster format=Cluster >/dev/null 2>&1; }

# ---------------------------------------------------------------- stop / status

do_status() {
    if cluster_ok; then
        echo "slurm cluster '$CLUSTER' is up: node localhost $(node_state), partition $PARTITION; node node2 $(node_state node2), partition $MULTI_PARTITION"
        return 0
    fi
    echo "slurm cluster is not up (node state: '$(node_state)')"
    return 1
}

do_stop() {
    local rc=0 ids
    # Cancel jobs first so that no slurmstepd / job process outlives the cluster.
    if command -v squeue >/dev/null && ctld_running && scontrol ping 2>/dev/null | grep -q 'is UP'; then
        ids="$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ')"
        if [ -n "${ids// /}" ]; then
            log "cancelling jobs: $ids"
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null
            local deadline=$((SECONDS + 10))
            while [ -n "$(squeue -h -t R,CG -o '%A' 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.2
            done
        fi
    fi
    # shellcheck disable=SC2046
    kill_and_wait slurmd $(for n in "${NODES[@]}"; do our_pid "$RUN/slurmd-$n.pid" /usr/sbin/slurmd; done) $(pids_by_exe /usr/sbin/slurmd) || rc=1
    # shellcheck disable=SC2046
    kill_and_wait slurmstepd $(pids_by_exe /usr/sbin/slurmstepd) || rc=1
    # shellcheck disable=SC2046
    kill_and_wait slurmctld $(our_pid "$RUN/slurmctld.pid" /usr/sbin/slurmctld) $(pids_by_exe /usr/sbin/slurmctld) || rc=1
    # shellcheck disable=SC2046
    kill_and_wait slurmdbd $(our_pid "$RUN/slurmdbd.pid" /usr/sbin/slurmdbd) $(pids_by_exe /usr/sbin/slurmdbd) || rc=1
    # shellcheck disable=SC2046
    kill_and_wait mariadbd $(our_pid "$RUN/mysqld.pid" /usr/sbin/mariadbd) $(pids_by_exe /usr/sbin/mariadbd "$DB_DATADIR") || rc=1
    # munged: ours (pid file under STATE_DIR); a munged started by someone else is left alone.
    # shellcheck disable=SC2046
    kill_and_wait munged $(our_pid "$MUNGE_DIR/munged.pid" /usr/sbin/munged) || rc=1
    rm -f "$RUN"/*.pid "$MUNGE_DIR/munged.pid" 2>/dev/null
    [ "$rc" -eq 0 ] && log "stopped"
    return "$rc"
}

# ---------------------------------------------------------------- start

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get"
    [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}) and not root"
    log "installing ${missing[*]} (apt-get update + install)"
    local created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Keep the packages' own services from starting: we run the daemons ourselves.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$LOGD/apt.log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
            "${missing[@]}" >>"$LOGD/apt.log" 2>&1 || rc=$?
    fi
    [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$LOGD/apt.log" >&2
        die "apt-get failed (rc=$rc), full log in $LOGD/apt.log"
    fi
}

write_if_changed() {  # write_if_changed DEST MODE < content ; returns 0 if the file changed
    local dest="$1" mode="$2" tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        return 1
    fi
    install -D -o root -g root -m "$mode" "$tmp" "$dest"
    rm -f "$tmp"
    return 0
}

write_configs() {  # sets CONF_CHANGED=1 when a config file was (re)written
    CONF_CHANGED=""
    mkdir -p "$ETC"
    write_if_changed "$ETC/slurm.conf" 644 <<EOF && CONF_CHANGED=1
# Generated by launcher tests/cluster/slurm_cluster.sh -- state in $STATE_DIR
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
JobRequeue=1
# submitit ignores SIGTERM (it checkpoints on USR2): a requeue or cancel then waits KillWait before SIGKILL
KillWait=5
MailProg=/bin/true
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd/%n
# Per node: srun --mpi=pmix makes its client dir spmix_appdir_<uid>_<step> under TmpFS on each node
TmpFS=$STATE_DIR/tmp/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGD/jobcomp.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
# node2 comes first: while a node named 'localhost' is the only one defined, Slurm's node lookup
# (_find_node_record) answers every name with it, so a later node2 would read as a duplicate.
NodeName=node2 NodeAddr=127.0.0.1 Port=${NODE_PORT[node2]} Sockets=1 CoresPerSocket=64 ThreadsPerCore=1 RealMemory=1024000 Gres=gpu:$NGPUS State=UNKNOWN
NodeName=localhost NodeAddr=127.0.0.1 Port=${NODE_PORT[localhost]} Sockets=1 CoresPerSocket=64 ThreadsPerCore=1 RealMemory=1024000 Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=$MULTI_PARTITION Nodes=localhost,node2 MaxTime=INFINITE State=UP
EOF
    write_if_changed "$ETC/gres.conf" 644 <<EOF && CONF_CHANGED=1
# Generated by launcher tests/cluster/slurm_cluster.sh: fake GPUs (symlinks to /dev/null)
AutoDetect=off
NodeName=localhost,node2 Name=gpu File=$STATE_DIR/dev/nvidia[0-$((NGPUS - 1))]
EOF
    write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF && CONF_CHANGED=1
# Generated by launcher tests/cluster/slurm_cluster.sh -- state in $STATE_DIR
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGD/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
    chown root:root "$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"
}

make_dirs() {
    mkdir -p "$STATE_DIR" "$RUN" "$LOGD" "$STATE_DIR/slurmctld" "$STATE_DIR/dev"
    local node
    for node in "${NODES[@]}"; do mkdir -p "$STATE_DIR/slurmd/$node" "$STATE_DIR/tmp/$node"; done
    chmod 755 "$STATE_DIR"
    local i
    for ((i = 0; i < NGPUS; i++)); do
        ln -sfn /dev/null "$STATE_DIR/dev/nvidia$i"
    done
}

start_munge() {
    if munge_ok; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 700 /etc/munge
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key || die "mungekey failed"
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 "$MUNGE_DIR"
    log "starting munged"
    daemon runuser -u munge -- munged --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" ||
        die "munged failed to start"
    wait_for 15 munge munge_ok || die "munge does not answer"
}

start_mariadb() {
    if db_ok; then return 0; fi
    local installer
    installer="$(command -v mariadb-install-db || command -v mysql_install_db)" ||
        die "mariadb-install-db not found"
    if [ ! -d "$DB_DATADIR/mysql" ]; then
        log "initialising MariaDB datadir $DB_DATADIR"
        rm -rf "$DB_DATADIR"
        mkdir -p "$DB_DATADIR"
        "$installer" --no-defaults --datadir="$DB_DATADIR" --user=root --skip-test-db \
            --auth-root-authentication-method=socket >"$LOGD/mariadb-install.log" 2>&1 ||
            { cat "$LOGD/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    log "starting MariaDB on 127.0.0.1:$DB_PORT"
    # Fast, non-durable settings: this database is thrown away with the state dir.
    setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$DB_DATADIR" \
        --socket="$DB_SOCK" --pid-file="$RUN/mysqld.pid" --log-error="$LOGD/mariadb.log" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        </dev/null >>"$LOGD/mariadb.log" 2>&1 9>&- &
    disown || true
    wait_for 60 mariadb db_ok || die "MariaDB did not come up"
    mariadb --no-defaults --socket="$DB_SOCK" -uroot <<EOF || die "could not create the slurm DB user"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
    if [ -z "$(pids_by_exe /usr/sbin/slurmdbd)" ]; then
        log "starting slurmdbd"
        daemon slurmdbd || die "slurmdbd failed to start"
    fi
    # The first start creates the schema: give it time.
    wait_for 90 slurmdbd dbd_ok || die "slurmdbd does not answer"
    if [ -z "$(sacctmgr -n -P show cluster "$CLUSTER" format=Cluster 2>/dev/null)" ]; then
        log "registering cluster $CLUSTER and account $CLUSTER in slurmdbd"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
    fi
    if [ -z "$(sacctmgr -n -P show account "$CLUSTER" format=Account 2>/dev/null)" ]; then
        sacctmgr -i add account "$CLUSTER" Cluster="$CLUSTER" Description=tests Organization=tests \
            >/dev/null || die "sacctmgr add account failed"
        sacctmgr -i add user root Account="$CLUSTER" Cluster="$CLUSTER" >/dev/null ||
            die "sacctmgr add user failed"
    fi
}

start_slurmctld() {
    if [ -n "$(pids_by_exe /usr/sbin/slurmctld)" ]; then return 0; fi
    log "starting slurmctld"
    daemon slurmctld || die "slurmctld failed to start"
    wait_for 30 slurmctld bash -c "scontrol ping | grep -q 'is UP'" || die "slurmctld does not answer"
}

start_slurmd() {  # start_slurmd NODE
    local node="$1"
    if [ -n "$(pids_by_exe /usr/sbin/slurmd "-N $node")" ]; then return 0; fi
    log "starting slurmd -N $node"
    SLURMD_STARTED_AT="$(date +%Y-%m-%dT%H:%M:%S)"
    daemon slurmd -N "$node" || die "slurmd -N $node failed to start"
}

slurmd_registered() {  # slurmd_registered NODE: the controller saw this slurmd (not a state restored from disk)
    [ -z "${SLURMD_STARTED_AT:-}" ] && return 0
    local t
    t="$(scontrol show node "$1" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)"
    [ -n "$t" ] && [ "$t" != "None" ] && ! [[ "$t" < "$SLURMD_STARTED_AT" ]]
}

wait_node_idle() {  # wait_node_idle NODE
    local node="$1" deadline=$((SECONDS + START_TIMEOUT)) st resumed=""
    while :; do
        st="$(node_state "$node")"
        case "$st" in
        idle|mixed|allocated|completing) slurmd_registered "$node" && return 0 ;;
        drain*|down*|fail*)
            if [ -z "$resumed" ] && [ -n "$(pids_by_exe /usr/sbin/slurmd "-N $node")" ]; then
                log "node $node is '$st' ($(sinfo -h -N -n "$node" -o '%E')), resuming it"
                scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1
                resumed=1
            fi ;;
        esac
        [ "$SECONDS" -ge "$deadline" ] && die "node $node not idle after ${START_TIMEOUT}s (state '$st': $(sinfo -h -N -n "$node" -o '%E'))"
        sleep 0.2
    done
}

do_start() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    mkdir -p "$LOGD"
    install_packages
    make_dirs
    write_configs
    if [ -n "$CONF_CHANGED" ]; then
        if [ -n "$(pids_by_exe /usr/sbin/slurmctld)$(pids_by_exe /usr/sbin/slurmd)$(pids_by_exe /usr/sbin/slurmdbd)" ]; then
            log "configuration changed: restarting the Slurm daemons"
            # shellcheck disable=SC2046
            kill_and_wait slurmd $(pids_by_exe /usr/sbin/slurmd)
            # shellcheck disable=SC2046
            kill_and_wait slurmctld $(pids_by_exe /usr/sbin/slurmctld)
            # shellcheck disable=SC2046
            kill_and_wait slurmdbd $(pids_by_exe /usr/sbin/slurmdbd)
        fi
    fi
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    local node
    for node in "${NODES[@]}"; do start_slurmd "$node"; done
    for node in "${NODES[@]}"; do wait_node_idle "$node"; done
    echo "# slurm cluster '$CLUSTER' up: partition=$PARTITION gpus=$NGPUS (multi-node partition $MULTI_PARTITION) state_dir=$STATE_DIR"
    echo "export LAUNCHER_TEST_SLURM_STATE_DIR=$STATE_DIR"
    echo "export LAUNCHER_TEST_SLURM_PARTITION=$PARTITION"
}

# ---------------------------------------------------------------- main

case "$ACTION" in
status) do_status; exit $? ;;
esac

# start/stop are serialised machine-wide: /etc/slurm and the Slurm ports are global.
exec 9>>"$LOCK_FILE"
flock -w 900 9 || die "could not take $LOCK_FILE"
T0=$SECONDS
case "$ACTION" in
start) do_start; log "start done in $((SECONDS - T0))s" ;;
stop) do_stop; exit $? ;;
esac
