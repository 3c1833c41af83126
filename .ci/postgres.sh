# Sourced by .ci/run: a throwaway PostgreSQL server for the catalog tests (tests/pg_server.py).
# Installs Debian's postgresql package when no server binaries exist, starts a server on a Unix
# socket in a temporary folder (as the postgres user when run as root: PostgreSQL refuses root),
# exports PHOTOLIFT_TEST_PG_URL, and stops and removes it when the shell exits.

pg_bindir() {
    local b
    if b=$(command -v pg_ctl) && command -v initdb >/dev/null; then dirname "$(readlink -f "$b")"; return 0; fi
    b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$b" ] && [ -x "$b/pg_ctl" ] && [ -x "$b/initdb" ] && echo "$b"
}

pg_as_server_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_test_postgres() {
    local bindir
    if ! bindir=$(pg_bindir); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "ci: installing Debian's postgresql package for the catalog tests" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
            bindir=$(pg_bindir) || { echo "ci: postgresql installed but no pg_ctl found" >&2; return 1; }
        else
            echo "ci: no PostgreSQL server binaries and cannot install them; PostgreSQL tests will skip" >&2
            return 0
        fi
    fi
    PG_CI_DIR=$(mktemp -d /tmp/photolift-ci-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres: "$PG_CI_DIR"
    PG_CI_BIN=$bindir
    pg_as_server_user "$bindir/initdb" -D "$PG_CI_DIR/data" -U photolift --auth=trust -E UTF8 --locale=C \
        --no-sync >/dev/null
    pg_as_server_user "$bindir/pg_ctl" -D "$PG_CI_DIR/data" -l "$PG_CI_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $PG_CI_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60" \
        start >/dev/null
    trap stop_test_postgres EXIT
    export PHOTOLIFT_TEST_PG_URL="postgresql+psycopg://photolift@/postgres?host=$PG_CI_DIR"
    echo "ci: PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') for the tests at $PG_CI_DIR" >&2
}

stop_test_postgres() {
    if [ -n "${PG_CI_DIR:-}" ]; then
        pg_as_server_user "$PG_CI_BIN/pg_ctl" -D "$PG_CI_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_CI_DIR"
        PG_CI_DIR=
    fi
}
