#!/usr/bin/env bash
# Runs kube-rs's own cluster tests (the `#[ignore]`d tests of the crates kube, kube-client and
# kube-runtime, at the version in Cargo.lock) against the testbed API server.
#
#   tests/testbed/kube-rs-tests.sh [extra `cargo test` filter args...]
#
# It builds `testbed-apiserver`, starts it on a free port with a kubeconfig, copies the kube
# crates from cargo's registry into a scratch directory (target-kube/src, not committed), adds
# back the `kube` path dev-dependency that publishing strips, and runs their ignored tests with
# KUBECONFIG pointing at the testbed. The 5 tests that need Pods really running on a node (exec,
# attach, logs, the kubelet's debug handlers, conditions of running containers) are skipped.
# Prints one line per test and a summary; exits non-zero when a test fails.
#
# Environment: CARGO_TARGET_DIR for the kube build (default: <repo>/target-kube), KUBE_VERSION
# (default: the `kube` version in Cargo.lock).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
kube_target=${CARGO_TARGET_DIR:-$repo/target-kube}
version=${KUBE_VERSION:-$(awk -F'"' '/^name = "kube"$/ {getline; print $2; exit}' "$repo/Cargo.lock")}
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/kube-"$version" | head -n1 | xargs dirname)
scratch=$kube_target/src
mkdir -p "$kube_target"

# Tests that need a node running the Pod's containers.
excluded=(
    test::pod_can_await_conditions           # waits for Running and ContainersReady
    test::pod_can_use_core_apis              # waits for the Pod's phase to become Running
    test::pod_can_exec_and_write_to_stdin    # exec over WebSocket into a running container
    test::can_get_pod_logs_and_evict         # reads the container's logs
    test::pod_can_exec_and_write_to_stdin_from_node_proxy # the kubelet's debug handlers
)
# Not cluster tests: they run shell commands as exec credential plugins.
not_cluster=(exec_auth_command exec_token_refresh_via_to_header exec_token_refresh_does_not_block_runtime)

# 1. the scratch workspace with the three crates (kept between runs, so cargo rebuilds nothing)
if [ "$(cat "$scratch/.version" 2>/dev/null)" != "$version" ]; then
    rm -rf "$scratch"
    mkdir -p "$scratch"
for c in kube kube-client kube-runtime; do
    cp -r "$registry/$c-$version" "$scratch/$c"
    rm -f "$scratch/$c/Cargo.lock"
done
cat >>"$scratch/kube-client/Cargo.toml" <<'EOF'

[dev-dependencies.kube]
path = "../kube"
features = ["derive", "client", "ws"]
EOF
cat >>"$scratch/kube-runtime/Cargo.toml" <<'EOF'

[dev-dependencies.kube]
path = "../kube"
features = ["derive", "client", "runtime"]
EOF
cat >"$scratch/Cargo.toml" <<'EOF'
[workspace]
members = ["kube", "kube-client", "kube-runtime"]
resolver = "2"

[patch.crates-io]
kube = { path = "kube" }
kube-client = { path = "kube-client" }
kube-runtime = { path = "kube-runtime" }
EOF
# Start from the project's lock file so the versions already downloaded are used.
cp "$repo/Cargo.lock" "$scratch/Cargo.lock"
echo "$version" >"$scratch/.version"
fi

# 2. build the tests (first build is slow: all of kube from scratch)
export CARGO_TARGET_DIR=$kube_target
kube_features=(--features derive,runtime,client,rustls-tls)
client_features=(--features client,config,rustls-tls,openssl-tls,ws,jsonpatch,unstable-client)
(cd "$scratch" && cargo test --no-run -p kube --lib "${kube_features[@]}" \
    && cargo test --no-run -p kube-client --lib "${client_features[@]}" \
    && cargo test --no-run -p kube-runtime --lib) >"$kube_target/build.log" 2>&1 || {
    tail -n 40 "$kube_target/build.log"
    echo "building kube's tests failed (log: $kube_target/build.log)" >&2
    exit 2
}

# 3. the testbed API server
(cd "$repo" && CARGO_TARGET_DIR=$repo/target cargo build -q -p testbed --bin testbed-apiserver)
kubeconfig=$kube_target/kubeconfig
rm -f "$kubeconfig"
"$repo/target/debug/testbed-apiserver" --kubeconfig-out "$kubeconfig" >"$kube_target/apiserver.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [ -s "$kubeconfig" ] && break
    sleep 0.1
done
[ -s "$kubeconfig" ] || { echo "the testbed API server did not start" >&2; cat "$kube_target/apiserver.log" >&2; exit 2; }
export KUBECONFIG=$kubeconfig

# 4. run the ignored tests, one crate at a time
skips=()
for t in "${excluded[@]}" "${not_cluster[@]}"; do skips+=(--skip "$t"); done
results=$kube_target/results.txt
: >"$results"
run() {
    local crate=$1
    shift
    (cd "$scratch" && cargo test -p "$crate" --lib "$@" -- --ignored "${skips[@]}" "${extra[@]}" 2>&1) \
        | tee "$kube_target/test-$crate.log" \
        | sed -n -E "s/^test (.*) \.\.\. (ok|FAILED|ignored)$/$crate \1 \2/p" >>"$results" || true
}
extra=("$@")
run kube "${kube_features[@]}"
run kube-client "${client_features[@]}"
run kube-runtime

echo "kube-rs $version cluster tests against the testbed (excluded: ${excluded[*]})"
sort "$results" | awk '{ printf "%-8s %s %s\n", ($3 == "ok" ? "PASS" : "FAIL"), $1, $2 }'
pass=$(grep -c ' ok$' "$results" || true)
total=$(wc -l <"$results")
echo "$pass of $total passed (logs: $kube_target/test-*.log)"
[ "$pass" -eq "$total" ]
