# shellcheck shell=bash
# A throwaway PostgreSQL for the benches, started from the local server binaries: the shell
# counterpart of src/cluster.rs, shared by every benches/*.sh (sourced, not run).
#
#   . "$REPO/benches/lib/cluster.sh"
#   cluster_start NAME [SETTING ...]     e.g. cluster_start bench shared_buffers=2GB fsync=off
#
# The caller defines log() and die(). cluster_start finds the binaries ($MIGVAL_PG_BIN, initdb on
# PATH, else the newest /usr/lib/postgresql/*/bin), makes a work directory, picks a free port,
# runs initdb and starts the server on 127.0.0.1 with each SETTING as `-c SETTING`; as root the
# server binaries run as the `postgres` system user (initdb refuses root). It sets:
#   PGBIN     the server binaries' directory      PSQL_BIN  psql (there, else on PATH)
#   AS_PG     the prefix that runs a server binary (empty, or runuser -u postgres --)
#   WORK      the work directory (mode 0755): removed at exit unless BENCH_KEEP is set
#   PGDIR     $WORK/pg, the socket directory; data in $PGDIR/data, log in $PGDIR/server.log
#   PORT      the TCP port
# and defines url DB (a postgres:// URL) and psql_db DB ARGS... . At exit (trap EXIT; INT and
# TERM exit 130 and 143) the server is stopped, and on a failing exit the server log's last
# lines are printed.

cluster_find_bin() {
    if [ -n "${MIGVAL_PG_BIN:-}" ]; then echo "$MIGVAL_PG_BIN"; return; fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

cluster_port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PG_STARTED=

cluster_cleanup() {
    local rc=$?
    # A second signal must not leave the server running or the work directory behind.
    trap '' INT TERM
    if [ -n "$PG_STARTED" ]; then
        "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "${PGDIR:-}/server.log" ]; then
        log "exit $rc; last lines of the server log:"
        tail -n 20 "$PGDIR/server.log" >&2 || true
    fi
    if [ -n "${WORK:-}" ]; then
        if [ -n "${BENCH_KEEP:-}" ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}

cluster_start() {
    local name=$1 p s opts
    shift
    PGBIN=$(cluster_find_bin) || true
    [ -n "${PGBIN:-}" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] ||
        die "no PostgreSQL server binaries (initdb, pg_ctl) in \$MIGVAL_PG_BIN, on PATH or in /usr/lib/postgresql/*/bin"
    PSQL_BIN=$PGBIN/psql
    [ -x "$PSQL_BIN" ] || PSQL_BIN=$(command -v psql) || die "no psql"
    AS_PG=()
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the server as"
        AS_PG=(runuser -u postgres --)
    fi
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/migval-$name.XXXXXX")
    chmod 755 "$WORK"
    PGDIR=$WORK/pg
    mkdir -p "$PGDIR"
    [ ${#AS_PG[@]} -eq 0 ] || chown postgres: "$PGDIR"
    trap cluster_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    PORT=
    for _ in $(seq 1 50); do
        p=$(shuf -i 20000-60000 -n 1)
        if ! cluster_port_in_use "$p"; then PORT=$p; break; fi
    done
    [ -n "$PORT" ] || die "no free port found"

    log "initdb ($PGBIN) in $PGDIR/data"
    "${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 --locale=C \
        >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
    opts="-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGDIR"
    for s in "$@"; do opts+=" -c $s"; done
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 120 -o "$opts" start >/dev/null ||
        die "pg_ctl start failed"
    PG_STARTED=1
}

url() { echo "postgres://postgres@127.0.0.1:$PORT/$1?sslmode=disable"; }
psql_db() { local db=$1; shift; "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$(url "$db")" "$@"; }
