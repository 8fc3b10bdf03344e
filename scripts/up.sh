#!/usr/bin/env bash
# The main job: `smeshfleet up`, the whole smeshing loop on this machine (an embedded devnet node,
# the coordinator and a local worker): identities are initialized, register with the devnet's
# PoETs, prove, publish ATXs and earn rewards. Ctrl-C stops it; run it again to continue.
# Usage: scripts/up.sh [smeshfleet up options]   (default data directory ./smeshfleet-devnet)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked --bin smeshfleet
exec target/release/smeshfleet up "$@"
