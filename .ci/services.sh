#!/usr/bin/env bash
# CI services for the scale-out tests: a private PostgreSQL cluster and a Chroma server, both on loopback.
#
#   .ci/services.sh          install if needed, start (or find running), print the env lines on stdout:
#                              DOORSTEP_TEST_PG_URL=postgresql+psycopg://doorstep:doorstep@127.0.0.1:PORT/doorstep_test
#                              DOORSTEP_TEST_CHROMA_URL=http://127.0.0.1:PORT
#   .ci/services.sh stop     stop both (the data stays, a later start reuses it)
#   .ci/services.sh status   say what runs
#
# Use from CI:  set -a; eval "$(.ci/services.sh)"; set +a
# Safe to run twice and concurrently (one flock); progress goes to stderr, only the env lines to stdout.
# The PostgreSQL cluster is private (its own data directory and port, owned by the postgres user when run as
# root), so it neither needs systemd nor touches Debian's default cluster. It is tuned for tests (fsync off):
# never use this cluster for real data; docs/deployment.md describes a production set-up.
#
# Settings (environment): DOORSTEP_SERVICES_DIR (default ${TMPDIR:-/tmp}/doorstep-services),
# DOORSTEP_CI_PG_PORT (55432), DOORSTEP_CI_CHROMA_PORT (58001).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export DEBIAN_FRONTEND=noninteractive

DIR=${DOORSTEP_SERVICES_DIR:-${TMPDIR:-/tmp}/doorstep-services}
PG_PORT=${DOORSTEP_CI_PG_PORT:-55432}
CHROMA_PORT=${DOORSTEP_CI_CHROMA_PORT:-58001}
PG_USER=doorstep
PG_PASSWORD=doorstep
PG_DB=doorstep_test
CHROMA=${DOORSTEP_CHROMA_BIN:-$ROOT/.venv/bin/chroma}
ACTION=${1:-start}

log() { echo "services: $*" >&2; }
die() { echo "services: error: $*" >&2; exit 1; }

mkdir -p "$DIR"
chmod 755 "$DIR"
exec 9>"$DIR/.lock"
flock -w 120 9 || die "another services.sh holds $DIR/.lock"

PGDATA=$DIR/pg/data
PGRUN=$DIR/pg/run          # the unix socket directory
PGLOG=$DIR/pg/postgres.log
CHROMA_DIR=$DIR/chroma/data
CHROMA_LOG=$DIR/chroma/chroma.log
CHROMA_PID=$DIR/chroma/chroma.pid

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

# Run a PostgreSQL binary as the cluster's owner: postgres refuses to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

install_postgres() {
  pg_bindir >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and only root can apt-get install it"
  log "installing PostgreSQL (apt)"
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  pg_bindir >/dev/null || die "apt installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found"
}

pg_running() {
  local bin=$1
  as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1 && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
}

start_postgres() {
  install_postgres
  local bin
  bin=$(pg_bindir)
  mkdir -p "$DIR/pg" "$PGRUN"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$DIR/pg"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA ($bin)"
    rm -rf "$PGDATA"
    as_pg "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$DIR/pg/initdb.log" 2>&1 || { cat "$DIR/pg/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PGDATA/postgresql.conf" <<EOF
# doorstep CI: loopback only, a private socket directory, speed over durability (test data only)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGRUN'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  if pg_running "$bin"; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    # A container restart leaves a postmaster.pid whose pid may now belong to another process.
    if [ -f "$PGDATA/postmaster.pid" ] && ! as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      rm -f "$PGDATA/postmaster.pid"
    fi
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 start >&2 9>&- ||
      { tail -n 30 "$PGLOG" >&2; die "PostgreSQL did not start (log: $PGLOG)"; }
  fi
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGRUN" -p "$PG_PORT" -U postgres -d postgres)
  if [ "$(as_pg "${psql[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
    as_pg "${psql[@]}" -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" >&2
  fi
  if [ "$(as_pg "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    as_pg "${psql[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER ENCODING 'UTF8' TEMPLATE template0" >&2
  fi
}

chroma_up() { curl -fsS -m 2 "http://127.0.0.1:$CHROMA_PORT/api/v2/heartbeat" >/dev/null 2>&1; }

# The pid in the pid file, if that process is alive and is our Chroma (pids are reused after a restart).
chroma_pid() {
  local pid
  [ -f "$CHROMA_PID" ] || return 1
  pid=$(cat "$CHROMA_PID")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "chroma run" && echo "$pid"
}

start_chroma() {
  [ -x "$CHROMA" ] || die "no chroma command at $CHROMA (make install puts it in .venv)"
  mkdir -p "$CHROMA_DIR"
  if chroma_up; then
    log "Chroma already running on 127.0.0.1:$CHROMA_PORT"
    return 0
  fi
  local attempt i pid
  for attempt in 1 2; do
    if ! pid=$(chroma_pid); then
      log "starting Chroma on 127.0.0.1:$CHROMA_PORT (data $CHROMA_DIR)"
      ANONYMIZED_TELEMETRY=False setsid nohup "$CHROMA" run --host 127.0.0.1 --port "$CHROMA_PORT" \
        --path "$CHROMA_DIR" >"$CHROMA_LOG" 2>&1 </dev/null 9>&- &
      pid=$!
      echo "$pid" >"$CHROMA_PID"
    else
      log "Chroma process $pid exists, waiting for it to answer"
    fi
    for i in $(seq 1 120); do
      chroma_up && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    chroma_up && return 0
    kill -0 "$pid" 2>/dev/null && die "Chroma ($pid) did not answer on 127.0.0.1:$CHROMA_PORT within 60 s (log: $CHROMA_LOG)"
    rm -f "$CHROMA_PID"
  done
  tail -n 30 "$CHROMA_LOG" >&2
  die "Chroma exited (log: $CHROMA_LOG); is port $CHROMA_PORT taken?"
}

stop_all() {
  local bin
  if bin=$(pg_bindir) && [ -f "$PGDATA/PG_VERSION" ]; then
    as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >&2 2>/dev/null || log "PostgreSQL was not running"
  fi
  local pid
  if pid=$(chroma_pid); then
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    log "Chroma ($pid) stopped"
  fi
  rm -f "$CHROMA_PID"
}

case "$ACTION" in
  start)
    start_postgres
    start_chroma
    echo "DOORSTEP_TEST_PG_URL=postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    echo "DOORSTEP_TEST_CHROMA_URL=http://127.0.0.1:$CHROMA_PORT"
    ;;
  stop) stop_all ;;
  status)
    if bin=$(pg_bindir) && [ -f "$PGDATA/PG_VERSION" ] && pg_running "$bin"; then
      echo "postgresql: running on 127.0.0.1:$PG_PORT ($PGDATA)"
    else
      echo "postgresql: not running"
    fi
    if chroma_up; then echo "chroma: running on 127.0.0.1:$CHROMA_PORT ($CHROMA_DIR)"; else echo "chroma: not running"; fi
    ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
