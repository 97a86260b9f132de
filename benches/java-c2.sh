#!/usr/bin/env bash
# JAVA wrapper for tests/support/apache-kafka.sh when benchmarking: that helper starts the JVM with
# -XX:TieredStopAtLevel=1 (C1 only: fast start-up for tests, slower steady state). Drop that flag
# so Kafka runs with the default tiered JIT (C2), as kafka-server-start.sh does.
args=()
for a in "$@"; do [[ "$a" == -XX:TieredStopAtLevel=* ]] || args+=("$a"); done
exec "${BENCH_REAL_JAVA:-java}" "${args[@]}"
