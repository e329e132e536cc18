#!/usr/bin/env bash
# A two-node Slurm cluster on one machine, for the multi-node test of
# tools/slurm_train.sh (tests/test_dist/test_slurm_multinode.py). Needs root.
#
#   tools/ci/slurm_multinode.sh start    # network, munged (reused if running),
#                                        # slurmctld, two slurmd; write $DIR/env.sh
#   tools/ci/slurm_multinode.sh status   # sinfo -N
#   tools/ci/slurm_multinode.sh stop     # daemons and leftover tasks by PID, then the
#                                        # namespaces, veths, bridge and hosts files
#
# Each node is a network namespace (`${PREFIX}-n1`, `${PREFIX}-n2`) with its own
# address (${SUBNET}.11, .12) on a veth pair whose other end is on a bridge
# (`${PREFIX}br0`, ${SUBNET}.1) in the root namespace. The bridge has no uplink and no
# forwarding is enabled: the traffic stays between the two nodes and the root namespace.
# A node's slurmd runs in its namespace with its own host name (UTS namespace), and
# `ip netns exec` mounts /etc/netns/<node>/hosts over /etc/hosts, which resolves both
# node names to their addresses. Job steps inherit all of it from slurmd, so each task
# is a process "on" its node: hostname, address, and what gloo binds to by default
# (the address of the host name). slurmctld, munged and the client commands (srun,
# sinfo) run in the root namespace and reach the nodes over the bridge.
#
# Exit status of `start`: 0 up, 1 error, 3 this machine cannot create the isolated
# network (no CAP_NET_ADMIN, no `ip`/`unshare`): $DIR/skip_reason says why, and the
# multi-node test is skipped with that reason.
#
# After `start`, `source $DIR/env.sh` exports RECLIP_TEST_SLURM_MULTINODE=1 and
# RECLIP_TEST_SLURM_MULTINODE_{CONF,PARTITION,SRUN_ARGS}. It does not set SLURM_CONF,
# so the single-node cluster of slurm_cluster.sh can run at the same time; point the
# client commands at this cluster with SLURM_CONF=$DIR/slurm.conf.
#
# Environment: RECLIP_SLURM_MN_DIR (state folder, default
# ${RECLIP_SLURM_DIR:-/tmp/reclip-slurm}/multinode), RECLIP_SLURM_MN_PREFIX (names of
# the namespaces, nodes and links, default reclip), RECLIP_SLURM_MN_SUBNET (first three
# octets of a private /24 that this machine does not use, default 10.231.77),
# RECLIP_SLURM_MN_PORT (slurmctld port, default 6827; slurmd +1),
# RECLIP_SLURM_MN_PARTITION (default multinode), RECLIP_SLURM_MN_CPUS (CPUs per node,
# default `nproc`).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# install, munged, start_daemon/stop_pid, fake GPU devices
# shellcheck source=tools/ci/slurm_cluster.sh
source "${HERE}/slurm_cluster.sh"

DIR=${RECLIP_SLURM_MN_DIR:-${RECLIP_SLURM_DIR:-/tmp/reclip-slurm}/multinode}
CONF="${DIR}/slurm.conf"
PREFIX=${RECLIP_SLURM_MN_PREFIX:-reclip}
SUBNET=${RECLIP_SLURM_MN_SUBNET:-10.231.77}
PORT=${RECLIP_SLURM_MN_PORT:-6827}
PARTITION=${RECLIP_SLURM_MN_PARTITION:-multinode}
CPUS=${RECLIP_SLURM_MN_CPUS:-$(nproc)}
FAKE_GPUS=1 # per node: slurm_train.sh asks for --gres=gpu:GPUS_PER_NODE
NODES=(1 2)
BRIDGE="${PREFIX}br0"
CTL_ADDR="${SUBNET}.1"
NETWORK_RECORD="${DIR}/network" # one created object a line, for `stop`
SKIP=3

log() { echo "[slurm_multinode] $*" >&2; }

node_name() { echo "${PREFIX}-n$1"; }
node_addr() { echo "${SUBNET}.$((10 + $1))"; }
veth_name() { echo "${PREFIX}-v$1"; }

check_settings() {
    if ! [[ "${SUBNET}" =~ ^(10\.[0-9]{1,3}\.[0-9]{1,3}|192\.168\.[0-9]{1,3}|172\.(1[6-9]|2[0-9]|3[01])\.[0-9]{1,3})$ ]]; then
        log "error: RECLIP_SLURM_MN_SUBNET=${SUBNET} is not the first three octets of a" \
            "private /24 (e.g. 10.231.77)"
        exit 1
    fi
    # Interface names have at most 15 characters.
    if [ ${#BRIDGE} -gt 15 ] || [ ${#PREFIX} -gt 10 ]; then
        log "error: RECLIP_SLURM_MN_PREFIX=${PREFIX} is too long (10 characters at most)"
        exit 1
    fi
}

skip() {
    mkdir -p "${DIR}"
    echo "$*" >"${DIR}/skip_reason"
    log "cannot start the multi-node cluster: $*"
    teardown_network
    exit "${SKIP}"
}

record() { echo "$1 $2" >>"${NETWORK_RECORD}"; }

# Run a network command; on failure skip (the machine does not allow it).
net() {
    local err
    if ! err=$("$@" 2>&1); then
        skip "\`$*\` failed (${err:-no message}): creating network namespaces, veth pairs" \
            "and a bridge needs root with CAP_NET_ADMIN"
    fi
}

setup_network() {
    local i name addr veth host
    for tool in ip unshare; do
        command -v "${tool}" >/dev/null 2>&1 ||
            skip "\`${tool}\` is not installed (apt-get install iproute2 util-linux)"
    done
    if ip -4 -o addr show | grep -q " inet ${SUBNET}\."; then
        log "error: ${SUBNET}.0/24 is already in use on this machine (another test cluster?" \
            "stop it, or set RECLIP_SLURM_MN_SUBNET)"
        exit 1
    fi
    for i in "${NODES[@]}"; do
        if ip netns list 2>/dev/null | grep -qw "$(node_name "$i")"; then
            log "error: network namespace $(node_name "$i") exists (another test cluster?" \
                "stop it, or set RECLIP_SLURM_MN_PREFIX)"
            exit 1
        fi
    done
    : >"${NETWORK_RECORD}"
    net ip link add "${BRIDGE}" type bridge
    record link "${BRIDGE}"
    net ip addr add "${CTL_ADDR}/24" dev "${BRIDGE}"
    net ip link set "${BRIDGE}" up
    [ -d /etc/netns ] || record dir /etc/netns
    host=$(hostname -s)
    for i in "${NODES[@]}"; do
        name=$(node_name "$i")
        addr=$(node_addr "$i")
        veth=$(veth_name "$i")
        net ip netns add "${name}"
        record netns "${name}"
        net ip link add "${veth}" type veth peer name eth0 netns "${name}"
        record link "${veth}"
        net ip link set "${veth}" master "${BRIDGE}"
        net ip link set "${veth}" up
        net ip netns exec "${name}" ip link set lo up
        net ip netns exec "${name}" ip addr add "${addr}/24" dev eth0
        net ip netns exec "${name}" ip link set eth0 up
        # `ip netns exec` bind-mounts this over /etc/hosts inside the namespace.
        mkdir -p "/etc/netns/${name}"
        record dir "/etc/netns/${name}"
        {
            echo "127.0.0.1 localhost"
            echo "${CTL_ADDR} ${host}"
            for j in "${NODES[@]}"; do echo "$(node_addr "$j") $(node_name "$j")"; done
        } >"/etc/netns/${name}/hosts"
        record file "/etc/netns/${name}/hosts"
        log "node ${name}: network namespace, eth0 ${addr}/24 (veth ${veth} on ${BRIDGE})"
    done
}

teardown_network() {
    [ -f "${NETWORK_RECORD}" ] || return 0
    local kind obj
    # Reverse order: files before their folders, veths before the bridge. gVisor keeps
    # the root end of a veth when its namespace is deleted, so links go explicitly.
    while read -r kind obj; do
        case "${kind}" in
            netns) ip netns del "${obj}" 2>/dev/null || true ;;
            link) ip link del "${obj}" 2>/dev/null || true ;;
            file) rm -f "${obj}" ;;
            dir) rmdir "${obj}" 2>/dev/null || true ;;
        esac
    done < <(tac "${NETWORK_RECORD}")
    rm -f "${NETWORK_RECORD}"
}

write_mn_conf() {
    local gres_types="" gres_node="" names
    names="${PREFIX}-n[${NODES[0]}-${NODES[-1]}]"
    rm -f "${DIR}/gres.conf"
    if make_fake_gpus; then
        gres_types="GresTypes=gpu"
        gres_node="Gres=gpu:${FAKE_GPUS}"
        echo "NodeName=${names} Name=gpu File=${DIR}/dev/fakegpu0" >"${DIR}/gres.conf"
        echo "" >"${DIR}/srun_args"
    else
        echo "--gres=none" >"${DIR}/srun_args"
        log "no fake GPU GRES (mknod failed): jobs need SRUN_ARGS=--gres=none"
    fi
    {
        cat <<EOF
# Generated by tools/ci/slurm_multinode.sh: two nodes in network namespaces on a bridge.
ClusterName=reclip-mn
SlurmctldHost=$(hostname -s)(${CTL_ADDR})
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
SlurmdSpoolDir=${DIR}/spool/%n
SlurmctldPidFile=${DIR}/slurmctld.pidfile
SlurmdPidFile=${DIR}/slurmd.%n.pidfile
SlurmctldLogFile=${DIR}/slurmctld.log
SlurmdLogFile=${DIR}/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
${gres_types}
EOF
        for i in "${NODES[@]}"; do
            echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i")" \
                "NodeHostname=$(node_name "$i") CPUs=${CPUS} ${gres_node} State=UNKNOWN"
        done
        echo "PartitionName=${PARTITION} Nodes=${names} Default=YES MaxTime=INFINITE State=UP"
    } >"${CONF}"
}

# Run by sh in the node's namespaces: $1 node name, $2 slurm.conf.
node_start_script() {
    local mounts
    mounts=$(awk '$2 ~ "^/sys/fs/cgroup(/|$)" {print $3, $4, $1, $2}' /proc/self/mounts)
    echo 'set -e; hostname "$1"'
    # Same file system types and options as in the root namespace.
    while read -r type opts src target; do
        [ -n "${type}" ] || continue
        echo "mkdir -p '${target}'; mount -t '${type}' -o '${opts}' '${src}' '${target}'"
    done <<<"${mounts}"
    echo 'exec slurmd -D -N "$1" -f "$2"'
}

daemons() {
    local i
    for i in "${NODES[@]}"; do echo "slurmd.$(node_name "$i")"; done
    echo slurmctld
}

do_mn_start() {
    need_root
    check_settings
    if [ -f "${DIR}/slurmctld.pid" ] && pid_alive "$(cat "${DIR}/slurmctld.pid")"; then
        log "error: a multi-node test cluster is already running in ${DIR} (stop it first)"
        exit 1
    fi
    do_install
    mkdir -p "${DIR}/state"
    rm -f "${DIR}/skip_reason" "${DIR}/env.sh"
    setup_network
    write_mn_conf
    export SLURM_CONF="${CONF}"
    start_munge
    start_daemon slurmctld slurmctld -D -c -i -f "${CONF}"
    local i name
    for i in "${NODES[@]}"; do
        name=$(node_name "$i")
        mkdir -p "${DIR}/spool/${name}"
        # `ip netns exec` remounts /sys for the namespace, which hides the cgroup
        # mounts that slurmd's start-up checks for: mount them again in the node's
        # private mount namespace. ip netns exec, unshare and sh exec: the recorded
        # PID is slurmd's.
        start_daemon "slurmd.${name}" ip netns exec "${name}" unshare --uts \
            sh -c "$(node_start_script)" sh "${name}" "${CONF}"
    done
    local states="" d
    for _ in $(seq 150); do
        states=$(sinfo -h -N -p "${PARTITION}" -o '%N=%T' 2>/dev/null | sort -u | xargs || true)
        if [ "$(echo "${states}" | grep -o '=idle' | wc -l)" = "${#NODES[@]}" ]; then
            break
        fi
        for d in $(daemons); do
            if ! pid_alive "$(cat "${DIR}/${d}.pid")"; then
                log "error: ${d} exited:"
                tail -n 30 "${DIR}/${d}.out" >&2 2>/dev/null || true
                tail -n 30 "${DIR}"/*.log >&2 2>/dev/null || true
                do_mn_stop
                exit 1
            fi
        done
        sleep 0.2
    done
    if [ "$(echo "${states}" | grep -o '=idle' | wc -l)" != "${#NODES[@]}" ]; then
        log "error: the nodes are not idle after 30 s (${states:-no answer})"
        tail -n 30 "${DIR}"/*.log >&2 2>/dev/null || true
        do_mn_stop
        exit 1
    fi
    cat >"${DIR}/env.sh" <<EOF
export RECLIP_TEST_SLURM_MULTINODE=1
export RECLIP_TEST_SLURM_MULTINODE_CONF=${CONF}
export RECLIP_TEST_SLURM_MULTINODE_PARTITION=${PARTITION}
export RECLIP_TEST_SLURM_MULTINODE_SRUN_ARGS="$(cat "${DIR}/srun_args")"
EOF
    log "cluster up: partition ${PARTITION}, nodes ${states};" \
        "SLURM_CONF=${CONF}; source ${DIR}/env.sh"
}

do_mn_stop() {
    local i name pid cmd
    # slurmd first (they own the job steps), then the controller, then munged (if
    # this script started it).
    for i in "${NODES[@]}"; do stop_pid "slurmd.$(node_name "$i")"; done
    stop_pid slurmctld
    stop_pid munged
    # Whatever still runs in a node's namespace is a leftover task of a test job.
    if [ -f "${NETWORK_RECORD}" ]; then
        for i in "${NODES[@]}"; do
            name=$(node_name "$i")
            grep -qx "netns ${name}" "${NETWORK_RECORD}" || continue
            for pid in $(ip netns pids "${name}" 2>/dev/null); do
                cmd=$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | cut -c1-80 || true)
                log "killing leftover process ${pid} in ${name}: ${cmd}"
                kill -9 "${pid}" 2>/dev/null || true
            done
        done
    fi
    teardown_network
    rm -f "${DIR}/env.sh"
}

do_mn_status() {
    SLURM_CONF="${CONF}" sinfo -N
}

case "${1:-}" in
    start) do_mn_start ;;
    stop) do_mn_stop ;;
    status) do_mn_status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
