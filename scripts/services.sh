#!/usr/bin/env bash
# Start the local servers that qstream's integration tests talk to, installing
# them from Debian's packages when they are missing (needs root for that).
# Idempotent: a server that already answers is left alone.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
  echo "services: $2 did not start on 127.0.0.1:$1" >&2
  return 1
}

need_pkg() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "services: $1 is missing; install Debian's $2 package as root" >&2
    return 1
  fi
  echo "services: installing $2" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# Redis on 127.0.0.1:6379
if ! up 6379; then
  need_pkg redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/qstream-redis.log"
  wait_port 6379 redis-server
fi

# NATS with JetStream on 127.0.0.1:4222
if ! up 4222; then
  need_pkg nats-server nats-server
  sd="${TMPDIR:-/tmp}/qstream-nats"
  mkdir -p "$sd"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$sd" -l "${TMPDIR:-/tmp}/qstream-nats.log" >/dev/null 2>&1 &
  wait_port 4222 nats-server
fi
# A three-server JetStream cluster (client ports 4241-4243) for the failover
# tests (internal/natscluster); the single server on 4222 stays as it is.
"$(dirname "$0")/nats-cluster.sh" start

# ClickHouse (Debian's clickhouse-server, 18.16 on bookworm) on 127.0.0.1:8123 (HTTP)
# and 127.0.0.1:9000 (native); the package's config listens on loopback only.
# There is no systemd here: the server runs daemonized as its own user. It
# refuses to start while its pid file names a live process, so a server that
# is still starting or stopping is waited for, and a pid file left by a killed
# server (a zombie, or a pid reused by another program) is removed.
chpid=/var/lib/clickhouse/clickhouse-server.pid
ch_alive() { # the pid file names a clickhouse-server that is not a zombie
  local p
  p=$(cat "$chpid" 2>/dev/null || true)
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = clickhouse-serv ] &&
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]
}
if ! up 8123; then
  PATH="$PATH:/usr/sbin:/sbin" # the server's binary is in /usr/sbin
  need_pkg clickhouse-server clickhouse-server
  need_pkg clickhouse-client clickhouse-client
  for _ in $(seq 1 100); do ch_alive && ! up 8123 || break; sleep 0.1; done
  if ! up 8123; then
    ch_alive && { echo "services: clickhouse-server $(cat "$chpid") runs but does not answer on 8123" >&2; exit 1; }
    rm -f "$chpid"
    start="cd /var/lib/clickhouse && exec $(command -v clickhouse-server) --config-file=/etc/clickhouse-server/config.xml"
    start="$start --pid-file=$chpid --daemon"
    if [ "$(id -u)" = 0 ]; then
      install -d -o clickhouse -g clickhouse /var/lib/clickhouse /var/log/clickhouse-server
      su -s /bin/sh clickhouse -c "$start"
    else
      sh -c "$start" # works only as the clickhouse user
    fi
    wait_port 8123 clickhouse-server
  fi
  wait_port 9000 clickhouse-server
fi
# AWS stand-ins for the aws connectors' integration tests (feeds/kinesis, feeds/sqs,
# sinks/sns, sinks/s3), installed outside the repository: kinesalite (Kinesis,
# in memory) and s3rver (S3) from npm under $QSTREAM_NPM (default /opt/qstream-npm),
# goaws (SQS and SNS, query protocol) with `go install` into $QSTREAM_GOBIN
# (default /opt/qstream-go/bin; its main package app/cmd installs as "cmd"),
# fauxqs (SQS) from npm.
npm_dir="${QSTREAM_NPM:-/opt/qstream-npm}"
go_bin="${QSTREAM_GOBIN:-/opt/qstream-go/bin}"
need_npm() { # bin package@version
  [ -x "$npm_dir/node_modules/.bin/$1" ] && return 0
  need_pkg npm npm
  echo "services: installing $2 into $npm_dir" >&2
  mkdir -p "$npm_dir"
  [ -f "$npm_dir/package.json" ] || echo '{"name":"qstream-services","private":true}' >"$npm_dir/package.json"
  (cd "$npm_dir" && npm install --no-audit --no-fund --silent "$2" >/dev/null)
}
# Kinesis (kinesalite) on 127.0.0.1:4567, in memory, plain HTTP. Started through
# a small script: kinesalite's own CLI exits on a request its client aborted
# (ECONNRESET), which a killed qstream does in the crash tests.
if ! up 4567; then
  need_npm kinesalite kinesalite@3.3.3
  cat >"$npm_dir/qstream-kinesalite.js" <<'JS'
process.on('uncaughtException', function(err) {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) return // a client went away
  console.error(err); process.exit(1)
})
require('kinesalite')({createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50, shardLimit: 100})
  .listen(4567, '127.0.0.1', function(err) { if (err) throw err; console.log('kinesalite on 127.0.0.1:4567') })
JS
  nohup node "$npm_dir/qstream-kinesalite.js" >"${TMPDIR:-/tmp}/qstream-kinesalite.log" 2>&1 &
  wait_port 4567 kinesalite
fi
# S3 (s3rver) on 127.0.0.1:4568, its buckets under $TMPDIR/qstream-s3rver.
if ! up 4568; then
  need_npm s3rver s3rver@3.7.1
  mkdir -p "${TMPDIR:-/tmp}/qstream-s3rver"
  nohup "$npm_dir/node_modules/.bin/s3rver" -d "${TMPDIR:-/tmp}/qstream-s3rver" -a 127.0.0.1 -p 4568 -s \
    >"${TMPDIR:-/tmp}/qstream-s3rver.log" 2>&1 &
  wait_port 4568 s3rver
fi
# SQS (fauxqs 1.9.2, the last release that runs on Node 20) on port 4566, in
# memory. It answers the JSON protocol that aws-sdk-go-v2's SQS client speaks
# (goaws v0.4.5, the newest the module proxy serves, knows only the query one).
if ! up 4566; then
  need_npm fauxqs fauxqs@1.9.2
  FAUXQS_PORT=4566 FAUXQS_LOGGER=false nohup "$npm_dir/node_modules/.bin/fauxqs" >"${TMPDIR:-/tmp}/qstream-fauxqs.log" 2>&1 &
  wait_port 4566 fauxqs
fi
# SNS (goaws v0.4.5: query protocol, as the SDK's SNS client) on 127.0.0.1:4100.
if ! up 4100; then
  if [ ! -x "$go_bin/cmd" ]; then
    echo "services: installing goaws into $go_bin" >&2
    mkdir -p "$go_bin"
    (cd / && GOBIN="$go_bin" GOFLAGS=-mod=mod go install github.com/Admiral-Piett/goaws/app/cmd@v0.4.5)
  fi
  conf="${TMPDIR:-/tmp}/qstream-goaws.yaml"
  printf 'Local:\n  Host: 127.0.0.1\n  Port: 4100\n  Region: us-east-1\n  AccountId: "100010001000"\n  LogToFile: false\n  EnableDuplicates: false\n  QueueAttributeDefaults:\n    VisibilityTimeout: 30\n    ReceiveMessageWaitTimeSeconds: 0\n    MaximumMessageSize: 262144\n' >"$conf"
  nohup "$go_bin/cmd" -config "$conf" Local >"${TMPDIR:-/tmp}/qstream-goaws.log" 2>&1 &
  wait_port 4100 goaws
fi
# Debian's Chromium for the dashboard's browser test (headless, no server to start).
need_pkg chromium chromium

echo "services: redis 127.0.0.1:6379, nats (JetStream) 127.0.0.1:4222, nats cluster :4241-4243 and clickhouse 127.0.0.1:8123 (http), :9000 (native), kinesalite :4567, s3rver :4568, fauxqs (sqs) :4566, goaws (sns) :4100 are up"
