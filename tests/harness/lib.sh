# Shell helpers for the test harness: install what the tests need, start real servers on
# loopback ports picked here, and stop each by its own pid. Sourced by tests/run.sh (which sets
# DS_ROOT, the checkout).

. "$DS_ROOT/build/apt.sh"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT PID NAME LOG: until something accepts on the port, or fail showing the log.
wait_port() {
  local port=$1 pid=$2 name=$3 log=$4 i
  for i in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "$name did not start on port $port; its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

# start_bg NAME CMD...: runs CMD in the background with its log and pid under $DS_STATE.
start_bg() {
  local name=$1
  shift
  "$@" >"$DS_STATE/$name.log" 2>&1 &
  echo $! >"$DS_STATE/$name.pid"
}

# start_registry NAME PORT [TOP_YAML [HTTP_YAML [LOG_LEVEL]]]: the CNCF distribution server on
# 127.0.0.1:PORT, all of them sharing one storage directory so images pushed once are served by
# every variant. TOP_YAML adds top-level settings (auth), HTTP_YAML settings under http (tls);
# LOG_LEVEL info logs every request (method, URI, status) for tests to count. DS_REGISTRY_STORAGE,
# when set, gives this one a storage directory of its own.
start_registry() {
  local name=$1 port=$2 auth=${3:-} http=${4:-} level=${5:-warn}
  cat >"$DS_STATE/$name.yml" <<YAML
version: 0.1
log:
  level: $level
storage:
  filesystem:
    rootdirectory: ${DS_REGISTRY_STORAGE:-$DS_STATE/storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$http
$auth
YAML
  start_bg "$name" docker-registry serve "$DS_STATE/$name.yml"
  wait_port "$port" "$(cat "$DS_STATE/$name.pid")" "$name" "$DS_STATE/$name.log"
}

# make_test_ca DIR: a throw-away CA (ca.pem), a server certificate for 127.0.0.1 and
# localhost signed by it (server.pem, server.key) and a client certificate (client.cert,
# client.key), made with openssl.
make_test_ca() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=dockersave-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir/ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/ext" -out "$dir/server.pem" 2>/dev/null
  # A client certificate for mutual TLS (client.cert, client.key), as Docker's certs.d names them.
  openssl req -newkey rsa:2048 -nodes -subj /CN=dockersave-test-client \
    -keyout "$dir/client.key" -out "$dir/client.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" >"$dir/client-ext"
  openssl x509 -req -in "$dir/client.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/client-ext" -out "$dir/client.cert" 2>/dev/null
}

# start_dockerd: a Docker engine with its own data and exec roots and socket under $DS_STATE.
start_dockerd() {
  start_bg dockerd dockerd --storage-driver=vfs --iptables=false --bridge=none \
    -H "unix://$DS_STATE/d.sock" --data-root "$DS_STATE/docker-data" \
    --exec-root "$DS_STATE/docker-exec" --pidfile "$DS_STATE/docker.pid"
  wait_engine docker "$DS_STATE/d.sock" dockerd
}

# start_docker26 TREE: Docker 26 and containerd 1.7 unpacked in TREE (unpack_debs docker26),
# with this machine's runc: one containerd, and one engine per image store — the graph driver
# store (vfs) on d26.sock and the containerd store (containerd-snapshotter, the native
# snapshotter) on d26c.sock, each in a containerd namespace of its own.
start_docker26() {
  local tree=$1 store
  cat >"$DS_STATE/containerd26.toml" <<TOML
version = 2
root = "$DS_STATE/containerd26-root"
state = "$DS_STATE/containerd26-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$DS_STATE/containerd26.sock"
TOML
  # containerd finds its shim on PATH; dockerd finds runc there.
  PATH=$tree/usr/bin:$PATH start_bg containerd26 "$tree/usr/bin/containerd" \
    --config "$DS_STATE/containerd26.toml"
  echo '{"features":{"containerd-snapshotter":true}}' >"$DS_STATE/d26c.json"
  echo '{}' >"$DS_STATE/d26.json"
  for store in d26:vfs d26c:native; do
    PATH=$tree/usr/bin:$tree/usr/sbin:$PATH start_bg "${store%:*}" "$tree/usr/sbin/dockerd" \
      --config-file "$DS_STATE/${store%:*}.json" --storage-driver="${store#*:}" \
      --containerd "$DS_STATE/containerd26.sock" --containerd-namespace "${store%:*}" \
      --containerd-plugins-namespace "${store%:*}-plugins" --iptables=false --bridge=none \
      -H "unix://$DS_STATE/${store%:*}.sock" --data-root "$DS_STATE/${store%:*}-data" \
      --exec-root "$DS_STATE/${store%:*}-exec" --pidfile "$DS_STATE/${store%:*}.pidfile"
  done
  for store in d26 d26c; do
    wait_engine "$tree/usr/bin/docker" "$DS_STATE/$store.sock" "$store"
  done
}

# wait_engine CLIENT SOCKET NAME: until the engine answers, or fail showing its log.
wait_engine() {
  local client=$1 socket=$2 name=$3 i
  for i in $(seq 1 150); do
    if "$client" -H "unix://$socket" version >/dev/null 2>&1; then return 0; fi
    kill -0 "$(cat "$DS_STATE/$name.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "$name did not start; its log:" >&2
  tail -n 30 "$DS_STATE/$name.log" >&2
  return 1
}

# stop_all: every server this harness started, by pid, the engines before the containerd they
# use; then the state directory.
stop_all() {
  local pidfile first=()
  for pidfile in "$DS_STATE"/*.pid; do
    # docker.pid is dockerd's own copy of dockerd.pid.
    case $pidfile in */docker.pid | */containerd26.pid) ;; *) first+=("$pidfile") ;; esac
  done
  stop_pids "${first[@]}"
  stop_pids "$DS_STATE"/containerd26.pid
  # vfs layers of containers may hold read-only files; the engine is gone, so this is ours.
  rm -rf "$DS_STATE" 2>/dev/null || true
}

# stop_pids PIDFILE...: TERM to each, then KILL what is left after 10 seconds.
stop_pids() {
  local pidfile pid
  for pidfile in "$@"; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for pidfile in "$@"; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
