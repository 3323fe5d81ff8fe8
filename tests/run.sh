#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real programs on loopback —
# the CNCF registry (plain HTTP, Bearer token auth with a token service, htpasswd basic auth,
# TLS and mutual TLS with a test CA, a pull-through cache in proxy mode),
# images built by umoci/skopeo/buildah, and a Docker engine that loads and runs what dockersave
# writes, including what the static builds of every target (build/release.sh) write. Run as root
# on a new machine: it installs the Debian packages it needs (build/packages).
#
#   tests/run.sh            everything
#   tests/run.sh ARGS...    passes ARGS to `cargo test` (e.g. a test name filter)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DS_ROOT=$root
. "$root/tests/harness/lib.sh"

ensure_debs test
# An ARM kernel and busybox, unpacked rather than installed, for booting an ARM initramfs.
export DS_ARM_BOOT=${CARGO_TARGET_DIR:-$root/target}/boot-arm
unpack_debs boot-arm "$DS_ARM_BOOT"
# Docker 26 and containerd 1.7 from Debian 13, unpacked, for the engine tests (tests/engines.rs).
export DS_DOCKER26=${CARGO_TARGET_DIR:-$root/target}/docker26
unpack_debs --suite trixie docker26 "$DS_DOCKER26"
# Other projects' tar test archives (Go's archive/tar testdata, CPython's testtar.tar).
export DS_TAR_CORPUS=${CARGO_TARGET_DIR:-$root/target}/tar-corpus
unpack_debs tar-corpus "$DS_TAR_CORPUS" './usr/share/go-*/src/archive/tar/testdata/*' \
  './usr/lib/python3*/test/testtar.tar' './usr/lib/python3*/test/testtar.tar.xz' 
# The static release binaries for every target, and the minimal (router) build for x86_64 and
# ARMv5TE (tests/static_builds.rs runs them); release.sh fails a binary over its size budget.
export DS_DIST=$root/dist
"$root/build/release.sh" --minimal=x86_64-unknown-linux-musl,armv5te-unknown-linux-musleabi
# Every cargo feature compiles alone, without the others (the default set is the build above).
cd "$root"
for feature in $(sed -n '/^\[features\]/,/^\[/s/^\([a-z0-9-]*\) = .*/\1/p' Cargo.toml | grep -vx default); do
  cargo check --quiet --locked --no-default-features --features "$feature"
done

export DS_STATE
DS_STATE=$(mktemp -d /tmp/dockersave-test.XXXXXX)
trap stop_all EXIT

plain=$(free_port) token_port=$(free_port)
start_registry registry "$plain"
export DS_TOKEN_LOG=$DS_STATE/token.log
: >"$DS_TOKEN_LOG"
export DS_TOKEN_USER=tokenuser DS_TOKEN_PASSWORD=token-secret-42 DS_TOKEN_REFRESH=refresh-secret-77
start_bg token-server python3 "$root/tests/harness/token_server.py" "$token_port" "$DS_TOKEN_LOG" \
  "$DS_TOKEN_USER" "$DS_TOKEN_PASSWORD" "$DS_TOKEN_REFRESH"
wait_port "$token_port" "$(cat "$DS_STATE/token-server.pid")" token-server "$DS_STATE/token-server.log"
tokened=$(free_port)
start_registry registry-token "$tokened" "auth:
  silly:
    realm: http://127.0.0.1:$token_port/token
    service: dockersave-test"
export DS_BASIC_USER=basicuser DS_BASIC_PASSWORD=basic-secret-17
htpasswd -Bbn "$DS_BASIC_USER" "$DS_BASIC_PASSWORD" >"$DS_STATE/htpasswd"
basic=$(free_port)
start_registry registry-basic "$basic" "auth:
  htpasswd:
    realm: dockersave-test
    path: $DS_STATE/htpasswd"
make_test_ca "$DS_STATE/tls"
export DS_TEST_CA=$DS_STATE/tls/ca.pem
tls=$(free_port)
start_registry registry-tls "$tls" "" "  tls:
    certificate: $DS_STATE/tls/server.pem
    key: $DS_STATE/tls/server.key"
# Mutual TLS: the registry wants a client certificate signed by the test CA.
mtls=$(free_port)
start_registry registry-mtls "$mtls" "" "  tls:
    certificate: $DS_STATE/tls/server.pem
    key: $DS_STATE/tls/server.key
    clientcas:
      - $DS_STATE/tls/ca.pem"
export DS_CLIENT_CERT=$DS_STATE/tls/client.cert DS_CLIENT_KEY=$DS_STATE/tls/client.key
# A pull-through cache (distribution in proxy mode) in front of the token-auth registry, with
# storage of its own and a request log, as the mirror of tests/mirrors.rs.
mirror=$(free_port)
DS_REGISTRY_STORAGE=$DS_STATE/mirror-storage start_registry registry-mirror "$mirror" "proxy:
  remoteurl: http://127.0.0.1:$tokened" "" info
export DS_MIRROR=127.0.0.1:$mirror DS_MIRROR_LOG=$DS_STATE/registry-mirror.log
# The push target of tests/push.rs: relative Location headers (the plain registry sends
# absolute ones) and a request log to count uploads in.
pushed=$(free_port)
start_registry registry-push "$pushed" "" "  relativeurls: true" info
start_dockerd
start_docker26 "$DS_DOCKER26"

"$root/tests/harness/fixtures.sh" "127.0.0.1:$plain" "$DS_STATE/fixtures"

export DS_REGISTRY=127.0.0.1:$plain DS_TOKEN_REGISTRY=127.0.0.1:$tokened DS_BASIC_REGISTRY=127.0.0.1:$basic
export DS_TLS_REGISTRY=127.0.0.1:$tls DS_PUSH_REGISTRY=127.0.0.1:$pushed DS_MTLS_REGISTRY=127.0.0.1:$mtls
export DS_PUSH_LOG=$DS_STATE/registry-push.log DS_SIGN_KEYS=$DS_STATE/fixtures/keys
export DS_ARTIFACTS=$DS_STATE/fixtures/artifacts
export DOCKER_HOST=unix://$DS_STATE/d.sock
export DS_DOCKER26_HOST=unix://$DS_STATE/d26.sock DS_DOCKER26C_HOST=unix://$DS_STATE/d26c.sock
cd "$root"
# The library's documentation builds without a warning (a broken link, an undocumented item in
# the front door); its examples are compiled by `cargo test` as doc tests.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
cargo test "$@"
