#!/usr/bin/env bash
# Prints the Java classpath (kafka-clients, kafka-tools, kafka_2.13 4.x + deps) resolved by Maven
# from tests/java/pom.xml. Cached in tests/java/target/classpath.txt; re-resolved when the pom changes.
# `classpath.sh connect`: the same for tests/java/connect/pom.xml (a Kafka Connect worker),
# cached in tests/java/target/classpath-connect.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
  "") pom="$here/java/pom.xml"; out="$here/java/target/classpath.txt" ;;
  connect) pom="$here/java/connect/pom.xml"; out="$here/java/target/classpath-connect.txt" ;;
  *) echo "usage: classpath.sh [connect]" >&2; exit 2 ;;
esac
mkdir -p "$here/java/target"
if [[ ! -s "$out" || "$pom" -nt "$out" ]]; then
  # -B: batch mode (no stdin, no colours). Offline first so a warm local repo needs no network.
  if ! mvn -B -q -o -f "$pom" dependency:build-classpath -Dmdep.outputFile="$out.tmp" >/dev/null 2>&1; then
    mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$out.tmp" >&2
  fi
  mv "$out.tmp" "$out"
fi
cat "$out"
