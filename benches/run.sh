#!/usr/bin/env bash
# Build the broker and the Rust load generator (release), then run benches/run.py with the
# given options, e.g.
#   benches/run.sh --smoke                                  # CI: every system, < 1 min of load
#   benches/run.sh --systems rill,kafka --scenarios small   # part of the full benchmark
#   benches/run.sh --client py                              # confluent-kafka instead of rdkafka
#   benches/run.sh --workloads latency,eventbus,backlog --partitions 6,100   # issue 7's other workloads
# Honours CARGO_TARGET_DIR (binaries are looked up there, else in <repo>/target and
# benches/loadgen-rs/target). BENCH_NO_BUILD=1 skips the builds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  (cd "$repo" && cargo build --release -q -p rill-cli)
  (cd "$here/loadgen-rs" && cargo build --release -q)
fi
exec python3 "$here/run.py" "$@"
