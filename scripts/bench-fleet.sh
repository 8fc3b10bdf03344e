#!/usr/bin/env bash
# Coordinator scale benchmark (orchestrator/benches/fleet.rs): a simulated fleet heartbeating and
# leasing against the real coordinator on SQLite and on PostgreSQL; prints a markdown table.
#
#   scripts/bench-fleet.sh                       # full size: 1000 workers, 10000 identities, 20 s
#   scripts/bench-fleet.sh --smoke               # 50 workers, 500 identities, 5 s
#
# Sizes and options come from the environment (see the bench's header): FLEET_BENCH_WORKERS,
# FLEET_BENCH_IDENTITIES, FLEET_BENCH_CONCURRENCY, FLEET_BENCH_SECONDS, FLEET_BENCH_BACKENDS
# ("sqlite,postgres"), FLEET_BENCH_RATE, FLEET_BENCH_LEASE_PERCENT, FLEET_BENCH_PLAN_RUNS,
# FLEET_BENCH_SETTLE_SECONDS, FLEET_BENCH_SEED. The output is also written to
# ${FLEET_BENCH_LOG:-target/bench-fleet.log} under the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--smoke" ]]; then
    export FLEET_BENCH_WORKERS="${FLEET_BENCH_WORKERS:-50}"
    export FLEET_BENCH_IDENTITIES="${FLEET_BENCH_IDENTITIES:-500}"
    export FLEET_BENCH_SECONDS="${FLEET_BENCH_SECONDS:-5}"
    shift
fi

target="${CARGO_TARGET_DIR:-target}"
log="${FLEET_BENCH_LOG:-$target/bench-fleet.log}"
mkdir -p "$(dirname "$log")"
cargo bench -p orchestrator --bench fleet "$@" 2>&1 | tee "$log"
echo "written: $log"
