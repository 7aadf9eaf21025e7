#!/usr/bin/env bash
# local_slurm.sh - a real SLURM cluster on this one machine, for development and CI (root, Debian/Ubuntu).
#
#   cluster/local_slurm.sh up [--nodes N] [--cpus C] [--no-accounting]   bring it up (idempotent)
#   cluster/local_slurm.sh down [--purge]                                tear it down (idempotent)
#   cluster/local_slurm.sh status                                        what is up, one line per part
#   cluster/local_slurm.sh link I down|up                                cut / restore node I's network link
#   cluster/local_slurm.sh netns-ok                                      rc 0 if network namespaces work here
#
# Layout. The controller side runs on the host: munged, slurmctld and (with accounting, the default) a private
# MariaDB plus slurmdbd, so that `sacct` works (submitit polls job states with it). Each of the N compute nodes
# (default 2) is a slurmd in its own network namespace (`cjepa-node<I>`, address 10.77.0.1<I>) and UTS
# namespace (hostname `node<I>`); a bridge (`cjepa-br0`, 10.77.0.1 on the host) joins them to each other and to
# the controller. Jobs therefore see N machines with their own addresses and host names: MASTER_ADDR, gloo's
# peer discovery and srun's fan-out cross a real (virtual) link that a test can take down.
# Where network namespaces cannot be created (an unprivileged container), `up --nodes 1` falls back to one node
# on the host's loopback and says so; `status` reports the reason, and tests that need several nodes skip on it.
#
# Nothing here uses systemd or cgroups (proctrack/linuxproc, task/none): no CPU or memory enforcement, jobs can
# use every core. --cpus may exceed the hardware (SlurmdParameters=config_overrides), so four one-CPU tasks can
# share a two-core runner.
#
# `down` stops only what `up` started (by recorded pid, checked against /proc/PID/comm), cancels jobs first,
# kills what is left inside our namespaces (by pid, from `ip netns pids`), deletes the namespaces and the bridge,
# removes our /etc/hosts lines and our /etc/slurm configs (restoring a config that was there before us).
# --purge also deletes the state directory (job state, logs, database).
#
# Environment: LOCAL_SLURM_DIR (state, default /tmp/local-slurm), LOCAL_SLURM_CPUS (CPUs per node, default 2),
# LOCAL_SLURM_REALMEM (MiB per node), LOCAL_SLURM_ACCOUNTING (1/0), LOCAL_SLURM_WAIT_S (default 90),
# LOCAL_SLURM_DB_PORT (3307), LOCAL_SLURM_SUBNET (first three octets, default 10.77.0), LOCAL_SLURM_NETNS=0 (one
# node on the host even where namespaces work).
set -euo pipefail

BASE=${LOCAL_SLURM_DIR:-/tmp/local-slurm}
WAIT_S=${LOCAL_SLURM_WAIT_S:-90}
SUBNET=${LOCAL_SLURM_SUBNET:-10.77.0}
DB_PORT=${LOCAL_SLURM_DB_PORT:-3307}
DB_PASS=cjepa-local-only   # a throwaway database that listens on 127.0.0.1 only
CLUSTER=cjepalocal
CONF_DIR=/etc/slurm
TAG="# cjepa local_slurm.sh"
BRIDGE=cjepa-br0
NS_PREFIX=cjepa-node
HOST_IP=$SUBNET.1

say() { echo "[local-slurm $(date +%H:%M:%S)] $*"; }
die() { echo "[local-slurm] error: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------ process helpers
# alive PID -> 0 when PID exists and is not a zombie (daemons are reparented to PID 1, which may reap late)
alive() {
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
# pid_of PIDFILE COMM -> prints the pid when the file names a live process whose comm is COMM
pid_of() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc '0-9' < "$1")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && alive "$pid" || return 1
    echo "$pid"
}
# stop_pid PID NAME: TERM, up to 20 s, then KILL (that pid only)
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do alive "$pid" || return 0; sleep 0.2; done
    say "$2 (pid $pid) ignored TERM for 20 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}
stop_pidfile() {
    local pid
    if pid=$(pid_of "$1" "$2"); then say "stopping $2 (pid $pid)"; stop_pid "$pid" "$2"; fi
    rm -f "$1"
}
# wait_until WHAT CMD...: retry CMD every 0.5 s for WAIT_S seconds
wait_until() {
    local what=$1; shift
    for _ in $(seq $((WAIT_S * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    die "gave up after ${WAIT_S} s waiting for $what (logs: $BASE/log)"
}
show_logs() {
    local f
    for f in "$BASE"/log/*.log "$BASE"/log/*.out "$BASE"/db/mariadbd.log; do
        [ -f "$f" ] && { echo "----- $f (last lines)" >&2; tail -n 20 "$f" >&2; }
    done
    return 0
}

# ------------------------------------------------------------------------------------------ network namespaces
ns_name() { echo "$NS_PREFIX$1"; }
node_ip() { echo "$SUBNET.$((10 + $1))"; }

# netns_ok: can this machine create a namespace, a bridge and a veth pair? (prints the reason when not)
netns_ok() {
    local probe=cjepa-probe$$ err
    if ! err=$(ip netns add "$probe" 2>&1); then echo "cannot create a network namespace: $err"; return 1; fi
    if ! err=$(ip link add cjepa-pv$$ type veth peer name eth0 netns "$probe" 2>&1); then
        ip netns del "$probe" 2>/dev/null; echo "cannot create a veth pair into a namespace: $err"; return 1
    fi
    ip link del cjepa-pv$$ 2>/dev/null || true
    ip netns del "$probe"
}

bridge_up() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr show dev "$BRIDGE" | grep -q "inet $HOST_IP/" || ip addr add "$HOST_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

node_net_up() {
    local i=$1 ns veth
    ns=$(ns_name "$i"); veth=cjepa-v$i
    [ -e "/var/run/netns/$ns" ] || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
    fi
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr show dev eth0 | grep -q "inet $(node_ip "$i")/" || ip -n "$ns" addr add "$(node_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

# our namespaces that exist now, as node numbers
existing_nodes() {
    ip netns list 2>/dev/null | sed -n "s/^$NS_PREFIX\([0-9]*\).*/\1/p" | sort -n
}

hosts_lines() {
    local i
    for i in $(seq "$1"); do echo "$(node_ip "$i") node$i $TAG"; done
}
hosts_set() {
    local tmp
    tmp=$(mktemp)
    grep -v "$TAG\$" /etc/hosts > "$tmp" || true
    [ "$1" -gt 0 ] && hosts_lines "$1" >> "$tmp"
    # /etc/hosts may be a bind mount (containers): rewrite it in place rather than replacing the file
    cmp -s "$tmp" /etc/hosts || cat "$tmp" > /etc/hosts
    rm -f "$tmp"
}

# kill every process left in namespace NS (job steps whose slurmd is gone), by pid
ns_kill_all() {
    local pids pid
    pids=$(ip netns pids "$1" 2>/dev/null || true)
    [ -z "$pids" ] && return 0
    say "killing what is left in $1: $(echo "$pids" | tr '\n' ' ')"
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    for _ in $(seq 25); do [ -z "$(ip netns pids "$1" 2>/dev/null)" ] && return 0; sleep 0.2; done
}

node_down() {
    local i=$1 ns
    ns=$(ns_name "$i")
    stop_pidfile "$BASE/run/slurmd-node$i.pid" slurmd
    ns_kill_all "$ns"
    ip link del "cjepa-v$i" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------ packages
install_packages() {
    local need=() ours=0
    command -v slurmctld >/dev/null || need+=(slurmctld)
    command -v slurmd >/dev/null || need+=(slurmd)
    command -v sbatch >/dev/null || need+=(slurm-client)
    command -v munged >/dev/null || need+=(munge)
    if [ "$ACCOUNTING" = 1 ]; then
        command -v slurmdbd >/dev/null || need+=(slurmdbd)
        command -v mariadbd >/dev/null || need+=(mariadb-server)
        ls /usr/lib/*/slurm-wlm/accounting_storage_mysql.so >/dev/null 2>&1 || need+=(slurm-wlm-mysql-plugin)
    fi
    [ ${#need[@]} -eq 0 ] && return 0
    say "installing ${need[*]}"
    # The packages' postinst would start the system's own munge/mariadb/slurm services next to ours:
    # a policy-rc.d that answers 101 forbids that for the length of the install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; ours=1
    fi
    local apt=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}")
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" > "$BASE/log/apt.log" 2>&1; then
        apt-get update -qq >> "$BASE/log/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" >> "$BASE/log/apt.log" 2>&1 \
            || { [ $ours = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -n 20 "$BASE/log/apt.log" >&2; die "apt-get install failed"; }
    fi
    [ $ours = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

# ------------------------------------------------------------------------------------------ configs
# put_conf NEW DEST MODE -> rc 0 when DEST changed. A config we did not write is kept as DEST.before-cjepa.
put_conf() {
    local new=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$new" "$dest"; then rm -f "$new"; return 1; fi
    if [ -f "$dest" ] && ! grep -q "^$TAG" "$dest" && [ ! -e "$dest.before-cjepa" ]; then
        cp -p "$dest" "$dest.before-cjepa"; say "kept the existing $dest as $dest.before-cjepa"
    fi
    install -m "$mode" "$new" "$dest"; rm -f "$new"
    return 0
}
drop_conf() {
    local dest=$1
    [ -f "$dest" ] && grep -q "^$TAG" "$dest" && rm -f "$dest"
    if [ -f "$dest.before-cjepa" ]; then mv "$dest.before-cjepa" "$dest"; say "restored $dest"; fi
    return 0
}

# slurm_conf MODE NODES CPUS MEM -> the slurm.conf text
slurm_conf() {
    local mode=$1 nodes=$2 cpus=$3 mem=$4 ctld_addr names i acct
    if [ "$mode" = netns ]; then ctld_addr=$HOST_IP; else ctld_addr=127.0.0.1; fi
    if [ "$ACCOUNTING" = 1 ]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
    else
        acct="AccountingStorageType=accounting_storage/none"
    fi
    cat <<EOF
$TAG ($mode, $nodes node(s)): a test cluster on one machine, not for production
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)($ctld_addr)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again after cred_expire seconds (default 120: too slow for tests)
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
# no cgroups needed: processes are tracked through /proc and not confined
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$acct
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
ReturnToService=2
# believe the node lines below even where they claim more CPUs than the hardware has
SlurmdParameters=config_overrides
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool-%n
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd-%n.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
# a node that stops answering is marked down after SlurmdTimeout seconds and its jobs are requeued
SlurmdTimeout=20
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
EOF
    if [ "$mode" = netns ]; then
        names=""
        for i in $(seq "$nodes"); do
            echo "NodeName=node$i NodeAddr=$(node_ip "$i") NodeHostname=node$i CPUs=$cpus RealMemory=$mem State=UNKNOWN"
            names="$names${names:+,}node$i"
        done
    else
        names=$(hostname -s)
        echo "NodeName=$names NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    fi
    echo "PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP"
}

# ------------------------------------------------------------------------------------------ daemons
munge_up() {
    install -d -o munge -g munge -m 0700 /etc/munge
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    pid_of /run/munge/munged.pid munged >/dev/null || rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    say "starting munged"
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
        --pid-file=/run/munge/munged.pid < /dev/null >> "$BASE/log/munged.out" 2>&1 &
    echo $! > "$BASE/run/munged.pid"   # only a munged we started is stopped by `down`
    wait_until munged sh -c 'munge -n | unmunge'
}

accounting_up() {
    local db=$BASE/db sock=$BASE/db/mysqld.sock opts=(--skip-innodb-use-native-aio --innodb-buffer-pool-size=64M)
    install -d -o mysql -g mysql -m 0750 "$db"
    if [ ! -d "$db/data/mysql" ]; then
        say "creating the accounting database"
        mariadb-install-db --no-defaults --user=mysql --datadir="$db/data" --auth-root-authentication-method=socket \
            --skip-test-db "${opts[@]}" > "$db/install.log" 2>&1 || { tail -n 20 "$db/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    if ! { pid_of "$db/mariadbd.pid" mariadbd >/dev/null && mysqladmin --no-defaults --socket="$sock" ping >/dev/null 2>&1; }; then
        say "starting mariadbd (127.0.0.1:$DB_PORT)"
        # native AIO (io_uring, libaio) is often blocked in containers; a test database does not need it
        setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$db/data" --socket="$sock" --port="$DB_PORT" \
            --bind-address=127.0.0.1 --pid-file="$db/mariadbd.pid" --log-error="$db/mariadbd.log" "${opts[@]}" \
            < /dev/null > /dev/null 2>&1 &
        wait_until mariadbd mysqladmin --no-defaults --socket="$sock" ping
    fi
    mysql --no-defaults --socket="$sock" -uroot -e "
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        FLUSH PRIVILEGES;"
    local new
    new=$(mktemp)
    cat > "$new" <<EOF
$TAG
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    put_conf "$new" "$CONF_DIR/slurmdbd.conf" 0600 && stop_pidfile "$BASE/run/slurmdbd.pid" slurmdbd
    if ! pid_of "$BASE/run/slurmdbd.pid" slurmdbd >/dev/null; then
        say "starting slurmdbd"
        setsid /usr/sbin/slurmdbd -D < /dev/null >> "$BASE/log/slurmdbd.out" 2>&1 &
        echo $! > "$BASE/run/slurmdbd.pid"
        wait_until slurmdbd timeout 10 sacctmgr -n -P list cluster
    fi
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

# start_slurmd NAME [I]: node I in its namespaces, or (no I) the host's single node
start_slurmd() {
    local name=$1 i=${2:-}
    pid_of "$BASE/run/slurmd-$name.pid" slurmd >/dev/null && return 0
    say "starting slurmd $name${i:+ (namespace $(ns_name "$i"), $(node_ip "$i"))}"
    mkdir -p "$BASE/spool-$name"
    if [ -n "$i" ]; then
        # nsenter --net, not `ip netns exec`: the latter remounts /sys and slurmd then finds no cgroup mount
        setsid nsenter --net="/var/run/netns/$(ns_name "$i")" unshare --uts \
            sh -c "hostname $name && exec /usr/sbin/slurmd -D -N $name" < /dev/null >> "$BASE/log/slurmd-$name.out" 2>&1 &
    else
        setsid /usr/sbin/slurmd -D -N "$name" < /dev/null >> "$BASE/log/slurmd-$name.out" 2>&1 &
    fi
    wait_until "slurmd $name to write its pid file" pid_of "$BASE/run/slurmd-$name.pid" slurmd
}

nodes_ready() {
    local want=$1 ready
    ready=$(sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 ~ /^(idle|mixed|allocated|completing)/' | wc -l)
    [ "$ready" -ge "$want" ]
}

# ------------------------------------------------------------------------------------------ commands
cmd_up() {
    local nodes=2 cpus=${LOCAL_SLURM_CPUS:-2} mode=netns why="" mem conf_changed=0 i
    ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-1}
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
            --cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
            --no-accounting) ACCOUNTING=0; shift ;;
            *) die "up: unknown option '$1' (options: --nodes N, --cpus C, --no-accounting)" ;;
        esac
    done
    [[ $nodes =~ ^[1-9][0-9]?$ ]] || die "up: --nodes must be 1 to 99, got '$nodes'"
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || die "up: --cpus must be a positive number, got '$cpus'"
    local t0
    t0=$(date +%s)
    mkdir -p "$BASE"/{state,log,run}
    trap 'rc=$?; [ $rc -ne 0 ] && { echo "[local-slurm] up failed (rc=$rc)" >&2; show_logs; }; exit $rc' EXIT
    install_packages
    if [ "${LOCAL_SLURM_NETNS:-1}" = 0 ]; then
        why="LOCAL_SLURM_NETNS=0 asks for none"
    elif why=$(netns_ok); then
        why=""
    fi
    if [ -n "$why" ]; then
        [ "$nodes" -gt 1 ] && die "$nodes nodes need network namespaces, and $why"
        mode=host
        say "no namespaces ($why): one node on the host's loopback"
    fi
    mem=${LOCAL_SLURM_REALMEM:-$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 85 / 100 / nodes ))}

    munge_up
    local new
    new=$(mktemp)
    slurm_conf "$mode" "$nodes" "$cpus" "$mem" > "$new"
    mkdir -p "$CONF_DIR"
    put_conf "$new" "$CONF_DIR/slurm.conf" 0644 && conf_changed=1
    # sacctmgr (used while setting accounting up) reads slurm.conf, so accounting comes after it
    [ "$ACCOUNTING" = 1 ] && accounting_up
    if [ "$ACCOUNTING" != 1 ]; then
        stop_pidfile "$BASE/run/slurmdbd.pid" slurmdbd
        stop_pidfile "$BASE/db/mariadbd.pid" mariadbd
    fi
    if [ $conf_changed = 1 ]; then
        # another shape: every slurmd and the controller restart on the new config; extra nodes go away
        for i in $(existing_nodes); do node_down "$i"; done
        stop_pidfile "$BASE/run/slurmd-$(hostname -s).pid" slurmd
        stop_pidfile "$BASE/run/slurmctld.pid" slurmctld
    fi
    if [ "$mode" = netns ]; then
        bridge_up
        for i in $(seq "$nodes"); do node_net_up "$i"; done
        hosts_set "$nodes"
    else
        ip link del "$BRIDGE" 2>/dev/null || true   # left from an earlier multi-node shape
        hosts_set 0
    fi
    if ! pid_of "$BASE/run/slurmctld.pid" slurmctld >/dev/null; then
        say "starting slurmctld"
        setsid /usr/sbin/slurmctld -D -i < /dev/null >> "$BASE/log/slurmctld.out" 2>&1 &
        echo $! > "$BASE/run/slurmctld.pid"
    fi
    wait_until slurmctld sh -c 'scontrol ping | grep -q "is UP"'
    if [ "$mode" = netns ]; then
        for i in $(seq "$nodes"); do start_slurmd "node$i" "$i"; done
    else
        start_slurmd "$(hostname -s)"
    fi
    printf 'mode=%s\nnodes=%s\ncpus=%s\nnetns=%s\n' "$mode" "$nodes" "$cpus" "${why:-ok}" > "$BASE/cluster.env"
    local n
    n=$([ "$mode" = netns ] && echo "$nodes" || echo 1)
    for _ in $(seq $((WAIT_S * 2))); do
        nodes_ready "$n" && break
        # a node that was down in the controller's saved state comes back with RESUME
        sinfo -h -N -o '%N %T' | awk '$2 ~ /^(down|drain|fail)/ {print $1}' | while read -r node; do
            scontrol update NodeName="$node" State=RESUME 2>/dev/null || true
        done
        sleep 0.5
    done
    nodes_ready "$n" || die "nodes not ready after ${WAIT_S} s: $(sinfo -h -N -o '%N %T %E' | tr '\n' ';')"
    say "up in $(( $(date +%s) - t0 )) s: $n node(s) x $cpus CPUs ($mode), accounting=$ACCOUNTING"
    sinfo
}

cmd_down() {
    local purge=0 i
    [ "${1:-}" = "--purge" ] && purge=1
    [ $# -gt 0 ] && [ "$1" != "--purge" ] && die "down: unknown option '$1' (option: --purge)"
    if pid_of "$BASE/run/slurmctld.pid" slurmctld >/dev/null; then
        local jobs
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [ -n "${jobs// /}" ]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null || true
            for _ in $(seq 40); do [ -z "$(timeout 10 squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
        fi
    fi
    for i in $(existing_nodes); do node_down "$i"; done
    for f in "$BASE"/run/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" slurmd; done
    ip link del "$BRIDGE" 2>/dev/null || true
    hosts_set 0
    stop_pidfile "$BASE/run/slurmctld.pid" slurmctld
    stop_pidfile "$BASE/run/slurmdbd.pid" slurmdbd
    stop_pidfile "$BASE/db/mariadbd.pid" mariadbd
    stop_pidfile "$BASE/run/munged.pid" munged
    drop_conf "$CONF_DIR/slurm.conf"
    drop_conf "$CONF_DIR/slurmdbd.conf"
    rm -f "$BASE/cluster.env"
    if [ $purge = 1 ]; then rm -rf "$BASE"; say "removed $BASE"; fi
    say "down"
}

cmd_status() {
    local i
    [ -f "$BASE/cluster.env" ] && cat "$BASE/cluster.env" || echo "mode=down"
    for f in "$BASE/run/slurmctld.pid:slurmctld" "$BASE/run/slurmdbd.pid:slurmdbd" "$BASE/db/mariadbd.pid:mariadbd"; do
        pid_of "${f%%:*}" "${f##*:}" >/dev/null && echo "${f##*:}=up" || echo "${f##*:}=down"
    done
    for i in $(existing_nodes); do
        pid_of "$BASE/run/slurmd-node$i.pid" slurmd >/dev/null && echo "node$i=up" || echo "node$i=down"
    done
}

cmd_link() {
    local i=${1:?link: which node (a number)} state=${2:?link: down or up}
    [[ $state = up || $state = down ]] || die "link: state must be up or down, got '$state'"
    [ -e "/var/run/netns/$(ns_name "$i")" ] || die "link: node $i has no namespace (is the cluster up with that many nodes?)"
    ip -n "$(ns_name "$i")" link set eth0 "$state"
    say "node$i link $state"
}

[ "$(id -u)" = 0 ] || die "must run as root (daemons, namespaces and /etc/slurm)"
case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    link) shift; cmd_link "$@" ;;
    netns-ok) netns_ok ;;
    *) die "usage: $0 up [--nodes N] [--cpus C] [--no-accounting] | down [--purge] | status | link I down|up | netns-ok" ;;
esac
