#!/usr/bin/env bash
# Run a real Apache Kafka 4.x (KRaft, single node, combined broker+controller) on loopback,
# from the Maven jars of tests/java/pom.xml. For validating the black-box tests and for benchmarks.
#
#   apache-kafka.sh start <port> <dir> [key=value ...]   format <dir> (first time), start, wait until
#                                                        the port accepts connections (<= 90 s)
#   apache-kafka.sh stop  <port> <dir>                   SIGTERM, wait <= 30 s, then SIGKILL
#   apache-kafka.sh kill9 <port> <dir>                   SIGKILL (crash)
#   apache-kafka.sh status <port> <dir>
#
# Files in <dir>: server.properties, data/ (log.dirs), kafka.log (stdout+stderr), kafka.pid.
# Extra key=value pairs are appended to server.properties (on every start).
# Env: KAFKA_HEAP (default 1g), JAVA (default java), KAFKA_CLUSTER_ID (format with this cluster id
# instead of a random one: the nodes of a multi-node cluster, see benches/cluster.py, share it).
# A multi-node cluster overrides node.id, controller.quorum.voters and listeners with key=value
# pairs (the last value in server.properties wins) and pre-writes <dir>/controller.port.
set -euo pipefail
cmd="${1:?usage: apache-kafka.sh start|stop|kill9|status <port> <dir> [key=value...]}"
port="${2:?port}"
dir="${3:?dir}"
shift 3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAVA="${JAVA:-java}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pidf="$dir/kafka.pid"

alive() { [[ -s "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$cmd" in
start)
  if alive; then echo "already running (pid $(cat "$pidf"))" >&2; exit 1; fi
  cp="$("$here/classpath.sh")"
  # The controller port is remembered so a restart on the same dir reuses it.
  if [[ -s "$dir/controller.port" ]]; then cport="$(cat "$dir/controller.port")"; else
    cport="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
    echo "$cport" > "$dir/controller.port"
  fi
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=5000
PROPS
  for kv in "$@"; do echo "$kv" >> "$dir/server.properties"; done
  cat > "$dir/log4j.properties" <<'L4J'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.kafka.log.LogCleaner=WARN
L4J
  jopts=(-Xms256m "-Xmx${KAFKA_HEAP:-1g}" -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
         "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$cp")
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    cid="${KAFKA_CLUSTER_ID:-$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')}"
    # `=`: a random id may start with '-', which the tool's argument parser would take for an option.
    "$JAVA" "${jopts[@]}" kafka.tools.StorageTool format --cluster-id="$cid" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; exit 1; }
  fi
  nohup "$JAVA" "${jopts[@]}" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/kafka.log" 2>&1 &
  echo $! > "$pidf"
  for _ in $(seq 1 900); do
    if port_open "$port"; then exit 0; fi
    if ! alive; then echo "kafka exited during start-up; tail of $dir/kafka.log:" >&2; tail -n 50 "$dir/kafka.log" >&2; exit 1; fi
    sleep 0.1
  done
  echo "kafka did not open port $port within 90 s" >&2; tail -n 50 "$dir/kafka.log" >&2
  kill -9 "$(cat "$pidf")" 2>/dev/null || true; exit 1
  ;;
stop)
  if alive; then
    pid="$(cat "$pidf")"; kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
  ;;
kill9)
  if alive; then pid="$(cat "$pidf")"; kill -9 "$pid"; for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; fi
  rm -f "$pidf"
  ;;
status)
  if alive; then echo "running pid $(cat "$pidf")"; else echo "stopped"; exit 1; fi
  ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
