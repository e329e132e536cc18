#!/usr/bin/env bash
# A single-node Slurm cluster on the loopback interface, for CI and local tests of
# tools/slurm_train.sh and tools/slurm_test.sh. Needs root (the daemons run as root,
# munged as the munge user).
#
#   tools/ci/slurm_cluster.sh install   # apt-get install slurmctld slurmd slurm-client munge
#   tools/ci/slurm_cluster.sh start     # install if missing, start munged/slurmctld/slurmd,
#                                       # wait until the node is idle, write $DIR/env.sh
#   tools/ci/slurm_cluster.sh status    # sinfo
#   tools/ci/slurm_cluster.sh stop      # stop the daemons this script started, by PID
#
# After `start`, `source $DIR/env.sh` exports SLURM_CONF (the client commands read the
# cluster's configuration from it), RECLIP_TEST_SLURM=1 (the Slurm tests run instead of
# being skipped), RECLIP_TEST_SLURM_PARTITION and RECLIP_TEST_SLURM_SRUN_ARGS.
#
# The node advertises fake GPUs (GRES `gpu`, backed by character devices equal to
# /dev/null) so that slurm_train.sh's `--gres=gpu:N` is accepted unchanged; the jobs
# still see no CUDA and train on CPU with gloo. Where the devices cannot be created
# (no CAP_MKNOD) the node has no GRES and the tests pass SRUN_ARGS=--gres=none instead.
#
# Environment: RECLIP_SLURM_DIR (state folder, default /tmp/reclip-slurm),
# RECLIP_SLURM_CPUS (CPUs of the node, default `nproc`), RECLIP_SLURM_GPUS (fake GPUs,
# default 8), RECLIP_SLURM_PORT (slurmctld port, default 6817; slurmd uses +1),
# RECLIP_SLURM_PARTITION (default debug).
set -euo pipefail

DIR=${RECLIP_SLURM_DIR:-/tmp/reclip-slurm}
CPUS=${RECLIP_SLURM_CPUS:-$(nproc)}
FAKE_GPUS=${RECLIP_SLURM_GPUS:-8}
PORT=${RECLIP_SLURM_PORT:-6817}
PARTITION=${RECLIP_SLURM_PARTITION:-debug}
MUNGE_SOCKET_DIR=/run/munge
CONF="${DIR}/slurm.conf"

log() { echo "[slurm_cluster] $*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "error: must run as root (the test cluster runs its daemons as root)"
        exit 1
    fi
}

installed() {
    command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
        command -v srun >/dev/null 2>&1 && command -v munged >/dev/null 2>&1
}

do_install() {
    need_root
    if installed; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "error: Slurm is not installed and apt-get is not available"
        exit 1
    fi
    log "installing slurmctld slurmd slurm-client munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    installed
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Start a daemon in the foreground mode in the background; record its PID.
start_daemon() {
    local name=$1
    shift
    "$@" >"${DIR}/${name}.out" 2>&1 &
    echo $! >"${DIR}/${name}.pid"
    log "${name} started (pid $!)"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        log "munged already running: reusing it"
        return 0
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p "${MUNGE_SOCKET_DIR}" /var/lib/munge /var/log/munge
    chown munge:munge "${MUNGE_SOCKET_DIR}" /var/lib/munge /var/log/munge
    chmod 0755 "${MUNGE_SOCKET_DIR}"
    # setpriv execs munged (its PID is the one recorded); runuser/su keep a parent.
    if command -v setpriv >/dev/null 2>&1; then
        start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
            munged --foreground
    else
        start_daemon munged runuser -u munge -- munged --foreground
    fi
    for _ in $(seq 50); do
        munge_works && return 0
        sleep 0.1
    done
    log "error: munged did not start:"
    cat "${DIR}/munged.out" >&2 || true
    return 1
}

make_fake_gpus() {
    # Character devices with /dev/null's numbers: Slurm only needs their major/minor.
    local i last=$((FAKE_GPUS - 1))
    mkdir -p "${DIR}/dev"
    for i in $(seq 0 "${last}"); do
        [ -c "${DIR}/dev/fakegpu${i}" ] || mknod "${DIR}/dev/fakegpu${i}" c 1 3 2>/dev/null || return 1
    done
}

write_conf() {
    local gres_node="" gres_types=""
    rm -f "${DIR}/gres.conf"
    if [ "${FAKE_GPUS}" -gt 0 ] && make_fake_gpus; then
        gres_types="GresTypes=gpu"
        gres_node="Gres=gpu:${FAKE_GPUS}"
        echo "NodeName=localhost Name=gpu File=${DIR}/dev/fakegpu[0-$((FAKE_GPUS - 1))]" \
            >"${DIR}/gres.conf"
        echo "" >"${DIR}/srun_args"
        log "node advertises ${FAKE_GPUS} fake GPUs (GRES backed by ${DIR}/dev/fakegpu*)"
    else
        echo "--gres=none" >"${DIR}/srun_args"
        log "no fake GPU GRES (mknod failed or RECLIP_SLURM_GPUS=0): jobs need SRUN_ARGS=--gres=none"
    fi
    cat >"${CONF}" <<EOF
# Generated by tools/ci/slurm_cluster.sh: one node on the loopback interface.
ClusterName=reclip-ci
SlurmctldHost=localhost
SlurmctldPort=${PORT}
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pidfile
SlurmdPidFile=${DIR}/slurmd.pidfile
SlurmctldLogFile=${DIR}/slurmctld.log
SlurmdLogFile=${DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
${gres_types}
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${CPUS} ${gres_node} State=UNKNOWN
PartitionName=${PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

do_start() {
    need_root
    do_install
    if [ -f "${DIR}/slurmctld.pid" ] && pid_alive "$(cat "${DIR}/slurmctld.pid")"; then
        log "error: a test cluster is already running in ${DIR} (stop it first)"
        exit 1
    fi
    mkdir -p "${DIR}/state" "${DIR}/spool"
    write_conf
    export SLURM_CONF="${CONF}"
    start_munge
    start_daemon slurmctld slurmctld -D -c -i -f "${CONF}"
    start_daemon slurmd slurmd -D -N localhost -f "${CONF}"
    local state=""
    for _ in $(seq 150); do
        state=$(sinfo -h -p "${PARTITION}" -o %T 2>/dev/null | head -n1 || true)
        case "${state}" in
            idle*) break ;;
        esac
        for d in slurmctld slurmd; do
            if ! pid_alive "$(cat "${DIR}/${d}.pid")"; then
                log "error: ${d} exited:"
                tail -n 30 "${DIR}/${d}.out" "${DIR}/${d}.log" >&2 2>/dev/null || true
                do_stop
                exit 1
            fi
        done
        sleep 0.2
    done
    if [[ "${state}" != idle* ]]; then
        log "error: node not idle after 30 s (state: '${state}')"
        tail -n 30 "${DIR}/slurmctld.log" "${DIR}/slurmd.log" >&2 2>/dev/null || true
        do_stop
        exit 1
    fi
    cat >"${DIR}/env.sh" <<EOF
export SLURM_CONF=${CONF}
export RECLIP_TEST_SLURM=1
export RECLIP_TEST_SLURM_PARTITION=${PARTITION}
export RECLIP_TEST_SLURM_SRUN_ARGS="$(cat "${DIR}/srun_args")"
EOF
    log "cluster up: partition ${PARTITION}, node localhost (${CPUS} CPUs) idle;" \
        "source ${DIR}/env.sh"
}

stop_pid() {
    local name=$1 pid
    [ -f "${DIR}/${name}.pid" ] || return 0
    pid=$(cat "${DIR}/${name}.pid")
    if pid_alive "${pid}"; then
        kill "${pid}" 2>/dev/null || true
        for _ in $(seq 50); do
            pid_alive "${pid}" || break
            sleep 0.1
        done
        if pid_alive "${pid}"; then
            log "${name} (pid ${pid}) did not stop: SIGKILL"
            kill -9 "${pid}" 2>/dev/null || true
        fi
        log "${name} (pid ${pid}) stopped"
    fi
    rm -f "${DIR}/${name}.pid"
}

do_stop() {
    # slurmd first (it owns the job steps), then the controller, then munged.
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid munged
    rm -f "${DIR}/env.sh"
}

do_status() {
    SLURM_CONF="${CONF}" sinfo
}

# Sourced (tools/ci/slurm_multinode.sh reuses the functions above): define only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
        install) do_install ;;
        start) do_start ;;
        stop) do_stop ;;
        status) do_status ;;
        *)
            echo "usage: $0 install|start|stop|status" >&2
            exit 2
            ;;
    esac
fi
