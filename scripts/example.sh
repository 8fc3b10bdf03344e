#!/usr/bin/env bash
# The main job until `smeshfleet up` exists: initialize a small PoST data directory with
# `smeshfleet post init` (progress bar on a terminal), then prove and verify it.
# Usage: scripts/example.sh [DATADIR]   (default ./example-post; rerun to see it resume/skip)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked --bin smeshfleet
bin=target/release/smeshfleet
dir=${1:-example-post}
node=8411931ece38b5abfb611f3bb1155a7eecd9c0e6c26672b567f7b1629c70a924
atx=66ec687158c86167efec0fcad4b9a6f3e98db07cc065a595a5b979f8a20dc7e2
challenge=68656c6c6f20776f726c642c206368616c6c656e6765206d6521212121212121

# 4 units x 4096 labels at mainnet scrypt N = 8192: 256 KiB of data, four files.
"$bin" post init --datadir "$dir" --node-id "$node" --commitment-atx-id "$atx" \
  --num-units 4 --labels-per-unit 4096 --max-file-size 65536
# A proof with the mainnet K1/K2 and a trivial k2pow (light RandomX: no 2 GiB dataset).
"$bin" post prove --datadir "$dir" --challenge "$challenge" --nonces 64 --randomx light \
  --pow-difficulty ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff --out "$dir/proof.json"
"$bin" post verify --datadir "$dir" --proof "$dir/proof.json" --challenge "$challenge" \
  --pow-difficulty ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
"$bin" post check --datadir "$dir" --fraction 0.05
