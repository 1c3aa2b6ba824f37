# Shared shell functions for ops/ scripts: packages, a private RabbitMQ node, dockerd.
# Everything lives under $STEPFLEET_STATE (default: <repo>/.state) and listens on loopback only.

STEPFLEET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPFLEET_STATE=${STEPFLEET_STATE:-$STEPFLEET_ROOT/.state}
STEPFLEET_AMQP_PORT=${STEPFLEET_AMQP_PORT:-5672}
STEPFLEET_AMQPS_PORT=${STEPFLEET_AMQPS_PORT:-5671}
STEPFLEET_RABBIT_DIST_PORT=${STEPFLEET_RABBIT_DIST_PORT:-25672}
STEPFLEET_RABBIT_NODE=${STEPFLEET_RABBIT_NODE:-stepfleet@localhost}
STEPFLEET_DOCKER_SOCK=${STEPFLEET_DOCKER_SOCK:-/var/run/docker.sock}
export STEPFLEET_ROOT STEPFLEET_STATE

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# need_packages PKG...: installs the Debian packages that are missing (apt-get update first).
need_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# ensure_swift: the Swift toolchain on PATH (it lives in /opt/swift on these machines).
ensure_swift() {
    if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
        export PATH=/opt/swift/usr/bin:$PATH
    fi
    command -v swift >/dev/null 2>&1 || die "no Swift toolchain: install Swift 6 (swift.org) and put it on PATH"
}

# The packages every StepFleet machine needs: build, broker, engine, test peers.
need_base_packages() {
    need_packages rabbitmq-server librabbitmq-dev libssl-dev libsqlite3-dev amqp-tools openssl \
        docker.io docker-compose git jq debootstrap ca-certificates pkg-config curl python3
}

# The data folder of the node named by STEPFLEET_RABBIT_NODE.
rabbit_dir() { echo "$STEPFLEET_STATE/rabbitmq/${STEPFLEET_RABBIT_NODE%%@*}"; }

rabbit_env() {
    local RABBIT_DIR
    RABBIT_DIR=$(rabbit_dir)
    export HOME=$RABBIT_DIR/home
    export RABBITMQ_NODENAME=$STEPFLEET_RABBIT_NODE
    export RABBITMQ_NODE_PORT=$STEPFLEET_AMQP_PORT
    export RABBITMQ_DIST_PORT=$STEPFLEET_RABBIT_DIST_PORT
    export RABBITMQ_MNESIA_BASE=$RABBIT_DIR/mnesia
    export RABBITMQ_LOG_BASE=$RABBIT_DIR/log
    export RABBITMQ_CONFIG_FILE=$RABBIT_DIR/rabbitmq.conf
    export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_DIR/enabled_plugins
    export RABBITMQ_PID_FILE=$RABBIT_DIR/rabbitmq.pid
    # An Erlang crash dump lands under .state, never in the working directory.
    export ERL_CRASH_DUMP=$RABBIT_DIR/log/erl_crash.dump
    export RABBITMQ_CONF_ENV_FILE=/dev/null
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

rabbitmqctl_private() { (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl -n "$STEPFLEET_RABBIT_NODE" "$@"); }

rabbit_answers() { rabbitmqctl_private -q ping >/dev/null 2>&1; }

# make_test_tls: a CA, a server certificate for localhost/127.0.0.1, a client certificate,
# and an unrelated CA (for "wrong CA" tests), made with openssl, kept under .state/tls.
make_test_tls() {
    local dir=$STEPFLEET_STATE/tls
    [[ -f $dir/server.pem && -f $dir/other-ca.pem ]] && return 0
    mkdir -p "$dir"
    log "making a test CA and certificates in $dir"
    (
        cd "$dir" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=StepFleet test CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Unrelated CA" \
            -keyout other-ca.key -out other-ca.pem 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=stepfleet-client" -keyout client.key -out client.csr 2>/dev/null
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -out client.pem 2>/dev/null
        chmod 600 ./*.key
    ) || die "openssl could not make the test certificates"
}

# start_rabbitmq: a private node on loopback (AMQP and AMQPS), unless one already answers.
start_rabbitmq() {
    launch_rabbitmq && await_rabbitmq
}

# launch_rabbitmq: starts the node's server without waiting for it (a cluster node that stopped
# before its peers waits for them at boot, so the three are launched together).
launch_rabbitmq() {
    need_packages rabbitmq-server openssl
    if rabbit_answers; then
        log "RabbitMQ $STEPFLEET_RABBIT_NODE already answers on 127.0.0.1:$STEPFLEET_AMQP_PORT"
        return 0
    fi
    make_test_tls
    local RABBIT_DIR
    RABBIT_DIR=$(rabbit_dir)
    mkdir -p "$RABBIT_DIR/home" "$RABBIT_DIR/mnesia" "$RABBIT_DIR/log"
    local tls=$STEPFLEET_STATE/tls
    cat >"$RABBIT_DIR/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$STEPFLEET_AMQP_PORT
listeners.ssl.1 = 127.0.0.1:$STEPFLEET_AMQPS_PORT
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
heartbeat = 60
consumer_timeout = ${STEPFLEET_CONSUMER_TIMEOUT_MS:-1800000}
CONF
    echo '[].' >"$RABBIT_DIR/enabled_plugins"
    log "starting RabbitMQ $STEPFLEET_RABBIT_NODE (amqp 127.0.0.1:$STEPFLEET_AMQP_PORT, amqps :$STEPFLEET_AMQPS_PORT)"
    (rabbit_env; setsid nohup /usr/lib/rabbitmq/bin/rabbitmq-server >"$RABBIT_DIR/log/console.log" 2>&1 &)
}

# await_rabbitmq: waits (at most 120 s) until the node has booted.
await_rabbitmq() {
    local RABBIT_DIR
    RABBIT_DIR=$(rabbit_dir)
    local deadline=$((SECONDS + 120))
    while ((SECONDS < deadline)); do
        # Bounded: a plain await_startup waits up to 300 s for a node that waits for its peers.
        if rabbitmqctl_private -q await_startup --timeout 5 >/dev/null 2>&1; then
            log "RabbitMQ $STEPFLEET_RABBIT_NODE is up"
            return 0
        fi
        sleep 1
    done
    tail -20 "$RABBIT_DIR/log/console.log" >&2
    die "RabbitMQ did not start within 120 s (logs: $RABBIT_DIR/log)"
}

# with_node NAME CMD...: runs CMD with the STEPFLEET_RABBIT_* variables of one of our private
# nodes: stepfleet (5672, amqps 5671), stepfleet-chaos (5682, amqps 5681), and the cluster nodes
# stepfleet-c1..c3 (569N, amqps 579N). Distribution ports are the AMQP port + 20000.
with_node() {
    local name=${1%%@*} port
    shift
    case $name in
        stepfleet) port=5672 ;;
        stepfleet-chaos) port=5682 ;;
        stepfleet-c[1-3]) port=$((5690 + ${name#stepfleet-c})) ;;
        *) die "unknown private node $name (stepfleet, stepfleet-chaos, stepfleet-c1..c3)" ;;
    esac
    local tls=$((port - 1))
    [[ $name == stepfleet-c[1-3] ]] && tls=$((port + 100))
    (
        STEPFLEET_RABBIT_NODE=$name@localhost STEPFLEET_AMQP_PORT=$port STEPFLEET_AMQPS_PORT=$tls \
            STEPFLEET_RABBIT_DIST_PORT=$((port + 20000)) "$@"
    )
}

# start_chaos_rabbitmq: a second, disposable node for tests that stop or disrupt the broker,
# so they never disturb tests running at the same time on the main node.
start_chaos_rabbitmq() { with_node stepfleet-chaos start_rabbitmq; }

# kill_rabbitmq: SIGKILL the node's Erlang VM (a crash, not a shutdown).
kill_rabbitmq() {
    local pidfile
    pidfile=$(rabbit_dir)/rabbitmq.pid
    [[ -s $pidfile ]] || die "no pid file for $STEPFLEET_RABBIT_NODE ($pidfile)"
    kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 50); do
        rabbit_answers || { rm -f "$pidfile"; return 0; }
        sleep 0.2
    done
    die "$STEPFLEET_RABBIT_NODE still answers after SIGKILL"
}

# start_cluster: stepfleet-c1..c3 as one cluster (a shared Erlang cookie; c2 and c3 join c1).
start_cluster() {
    local cookie=$STEPFLEET_STATE/rabbitmq/cluster.cookie
    mkdir -p "$STEPFLEET_STATE/rabbitmq"
    [[ -s $cookie ]] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$cookie"; chmod 400 "$cookie"; }
    local node home
    for node in stepfleet-c1 stepfleet-c2 stepfleet-c3; do
        home=$STEPFLEET_STATE/rabbitmq/$node/home
        mkdir -p "$home"
        if ! cmp -s "$cookie" "$home/.erlang.cookie"; then
            rm -f "$home/.erlang.cookie"
            cp "$cookie" "$home/.erlang.cookie"
            chmod 400 "$home/.erlang.cookie"
        fi
        with_node $node launch_rabbitmq
    done
    for node in stepfleet-c1 stepfleet-c2 stepfleet-c3; do
        with_node $node await_rabbitmq
    done
    for node in stepfleet-c2 stepfleet-c3; do
        if with_node $node rabbitmqctl_private -q cluster_status --formatter json 2>/dev/null | grep -q '"stepfleet-c1@localhost"'; then
            continue
        fi
        log "joining $node to stepfleet-c1"
        for step in stop_app reset "join_cluster stepfleet-c1@localhost" start_app; do
            # shellcheck disable=SC2086 # the step is a command and its argument
            with_node $node rabbitmqctl_private -q $step >/dev/null 2>&1 || die "$node: rabbitmqctl $step failed"
        done
    done
}

stop_rabbitmq() {
    rabbit_answers && rabbitmqctl_private stop >/dev/null 2>&1
    return 0
}

docker_answers() { curl -sf --unix-socket "$STEPFLEET_DOCKER_SOCK" http://localhost/_ping >/dev/null 2>&1; }

# start_dockerd: Debian's dockerd with no bridge and no iptables rules, unless an engine answers.
start_dockerd() {
    need_packages docker.io curl
    if docker_answers; then
        log "a Docker engine already answers on $STEPFLEET_DOCKER_SOCK"
        return 0
    fi
    mkdir -p "$STEPFLEET_STATE/docker"
    log "starting dockerd (--bridge=none --iptables=false)"
    setsid nohup /usr/sbin/dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
        --host "unix://$STEPFLEET_DOCKER_SOCK" >"$STEPFLEET_STATE/docker/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        docker_answers && { log "dockerd is up"; return 0; }
        sleep 1
    done
    tail -20 "$STEPFLEET_STATE/docker/dockerd.log" >&2
    die "dockerd did not start within 60 s (log: $STEPFLEET_STATE/docker/dockerd.log)"
}
