#!/usr/bin/env bash
# Regenerates protocol/tests/golden/*.bin from the real Kafka client (kafka-clients, see pom.xml).
# Needs Java 17+ and Maven. Run from anywhere; commit the resulting .bin files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../tests/golden"
cd "$here"
mvn -q -B package -DskipTests
cp_file="$(mktemp)"
trap 'rm -f "$cp_file"' EXIT
mvn -q -B dependency:build-classpath -Dmdep.outputFile="$cp_file" >/dev/null
rm -rf "$out"
mkdir -p "$out"
java -cp "target/classes:$(cat "$cp_file")" dev.rill.golden.GenerateGolden "$out"
echo "wrote $(ls "$out" | wc -l) files to $out"
