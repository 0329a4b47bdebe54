#!/usr/bin/env bash
# Build examples/redis-os.yml and boot it under QEMU, on a fresh Debian 12 machine.
#
# Installs what it needs (.ci/install-deps), builds osbuild, builds the example (its kernel,
# init, DHCP client, shell and redis are this repository's packages, built on the way),
# boots it with `osbuild run qemu` with redis's port published on the host, and asks redis
# for PONG with redis-cli. The guest's console is in out/redis-os-state/console.log.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-deps
cargo build --release --locked -p osbuild
bin=${CARGO_TARGET_DIR:-target}/release
port=${OSBUILD_DEMO_PORT:-16379}
mkdir -p out
"$bin/osbuild" build --dir out examples/redis-os.yml
state=out/redis-os-state
rm -rf "$state"
"$bin/osbuild" run qemu --format kernel+initrd --mem 1024 --publish "$port:6379" --detached --state "$state" out/redis-os
trap 'kill "$(cat "$state/qemu.pid")" 2>/dev/null || true' EXIT
echo "booting out/redis-os under QEMU; waiting for redis on 127.0.0.1:$port"
for _ in $(seq 1 300); do
  [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
  sleep 1
done
grep "init: " "$state/console.log" || true
[ "$(redis-cli -p "$port" PING)" = PONG ]
redis-cli -p "$port" SET demo "hello from osbuild" >/dev/null
echo "demo: redis in the guest answered PONG and returned: $(redis-cli -p "$port" GET demo)"
