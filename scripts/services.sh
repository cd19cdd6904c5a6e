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
echo "services: redis 127.0.0.1:6379 and nats (JetStream) 127.0.0.1:4222 are up"
