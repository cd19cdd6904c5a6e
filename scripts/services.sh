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
# Debian's Chromium for the dashboard's browser test (headless, no server to start).
need_pkg chromium chromium

echo "services: redis 127.0.0.1:6379, nats (JetStream) 127.0.0.1:4222 and clickhouse 127.0.0.1:8123 (http), :9000 (native) are up"
