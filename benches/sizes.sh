#!/usr/bin/env bash
# Sizes benchmark: a `sizes` check over many tables against the runbook's "monitor table sizes"
# query in psql (pg_size_pretty(pg_total_relation_size(...)) over pg_tables), same tables, same
# server, interleaved:
#
#   bash benches/sizes.sh [TABLES...]        (default: 100 1000)
#
# Each table has 1,000 rows, a primary key and a TOASTed text column. migval runs `snapshot`
# (one sizes check, [schema] diff off: the cost of the check, a connection and the snapshot
# file) and `verify` (post capture + compare); the reference runs the runbook query once with
# psql. Figures: wall time (GNU time), median of BENCH_REPS (default 5). CSV:
# benches/results/sizes-<commit>-<tables>.csv; the medians go to the sizes section of
# BENCHMARKS.md. Exit status: 0 when migval's total bytes equal pg_total_relation_size for
# every table, 1 otherwise, 2 when it cannot run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
SIZES=("${@:-100}")
[ $# -gt 0 ] || SIZES=(100 1000)
REPS=${BENCH_REPS:-5}
RESULTS=$REPO/benches/results
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }
[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is needed for wall time"

log "cargo build --release"
cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/migval
[[ $BIN = /* ]] || BIN=$REPO/$BIN
COMMIT=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain -- src queries Cargo.toml Cargo.lock)" ] || COMMIT=$COMMIT-dirty
RUN_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# --- throwaway PostgreSQL (benches/lib/cluster.sh) -------------------------------------------
. "$REPO/benches/lib/cluster.sh"
cluster_start sizesbench fsync=off synchronous_commit=off max_locks_per_transaction=256
URL="postgres://postgres@127.0.0.1:$PORT/bench?sslmode=disable"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d "postgres://postgres@127.0.0.1:$PORT/postgres" -c "CREATE DATABASE bench"
sql() { "${PSQL[@]}" -d "$URL" "$@"; }
PG_VERSION=$(sql -At -c "SHOW server_version")

# Seconds of wall time of a command (stdout to $WORK/out, stderr to $WORK/err).
wall() {
    /usr/bin/time -f "%e" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || true
    cat "$WORK/time"
}

mkdir -p "$RESULTS"
FAILURES=0
: >"$WORK/section.md"
for N in "${SIZES[@]}"; do
    CSV=$RESULTS/sizes-$COMMIT-$N.csv
    echo "commit,date_utc,tables,tool,rep,wall_s" >"$CSV"
    log "creating $N tables"
    sql -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
    sql <<SQL
DO \$\$
BEGIN
    FOR i IN 1..$N LOOP
        EXECUTE format('CREATE TABLE s%s (id int PRIMARY KEY, payload text)', i);
        EXECUTE format('INSERT INTO s%s SELECT g, CASE WHEN g %% 100 = 0 THEN
                            (SELECT string_agg(md5(g::text || k::text), '''') FROM generate_series(1, 100) k)
                        END FROM generate_series(1, 1000) g', i);
    END LOOP;
END
\$\$;
VACUUM ANALYZE;
SQL
    python3 - "$N" >"$WORK/checks.toml" <<'PY'
import sys
n = int(sys.argv[1])
print("[schema]\ndiff = false\n")
print('[[check]]\nname = "sizes"')
print("sizes = { tables = [" + ", ".join(f'"s{i}"' for i in range(1, n + 1)) + "] }")
print('expect = { grows_at_most = "20%" }')
PY
    REF_SQL="SELECT schemaname, tablename, pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) AS size
             FROM pg_tables WHERE tablename ~ '^s[0-9]+\$'
             ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC"
    "$BIN" snapshot --spec "$WORK/checks.toml" --out "$WORK/base.json" --db "$URL" >/dev/null
    for rep in $(seq 1 "$REPS"); do
        t=$(wall "${PSQL[@]}" -d "$URL" -At -c "$REF_SQL")
        echo "$COMMIT,$RUN_DATE,$N,psql_runbook_query,$rep,$t" >>"$CSV"
        t=$(wall "$BIN" snapshot --spec "$WORK/checks.toml" --out "$WORK/base.json" --db "$URL")
        echo "$COMMIT,$RUN_DATE,$N,migval_snapshot,$rep,$t" >>"$CSV"
        t=$(wall "$BIN" verify --spec "$WORK/checks.toml" --baseline "$WORK/base.json" --db "$URL" --format json)
        echo "$COMMIT,$RUN_DATE,$N,migval_verify,$rep,$t" >>"$CSV"
        cp "$WORK/out" "$WORK/report.json"
    done
    # Every table's total as the server has it.
    sql -At -F, -c "SELECT tablename, pg_total_relation_size('public.'||tablename) FROM pg_tables WHERE tablename ~ '^s[0-9]+\$'" >"$WORK/server.csv"
    python3 - "$CSV" "$N" "$WORK/report.json" "$WORK/server.csv" >>"$WORK/section.md" <<'PY' || FAILURES=$((FAILURES + 1))
import csv, json, statistics, sys
path, n, report, server = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = list(csv.DictReader(open(path)))
med = lambda tool: statistics.median(float(r["wall_s"]) for r in rows if r["tool"] == tool)
want = dict(line.strip().split(",") for line in open(server) if line.strip())
got = {v["key"][0]: v["after"] for c in json.load(open(report))["checks"] for v in c["values"] if v["metric"] == "total"}
ok = len(want) == int(n) and all(got.get(t) == int(b) for t, b in want.items())
ref = med("psql_runbook_query")
print(f"### {int(n):,} tables of 1,000 rows\n")
print("| task | wall (median) | ratio to the psql runbook query |\n|---|---|---|")
print(f"| psql: the runbook's monitor-table-sizes query (reference) | {ref:.2f} s | 1.00x |")
for tool, task in [("migval_snapshot", "migval snapshot (one sizes check, file written)"),
                   ("migval_verify", "migval verify (post capture + compare + JSON report)")]:
    print(f"| {task} | {med(tool):.2f} s | {med(tool) / ref:.2f}x |")
print(f"\nTotals equal to pg_total_relation_size for every table: {'yes' if ok else '**no**'}. "
      f"Per repetition: `benches/results/{path.rsplit('/', 1)[-1]}`.\n")
sys.exit(0 if ok else 1)
PY
done
MD=$REPO/BENCHMARKS.md
python3 - "$MD" "$WORK/section.md" "$COMMIT" "$RUN_DATE" "$PG_VERSION" <<'PY'
import sys
path, section, commit, date, pg = sys.argv[1], open(sys.argv[2]).read().rstrip("\n"), *sys.argv[3:]
begin, end = "<!-- sizes:begin (benches/sizes.sh) -->", "<!-- sizes:end -->"
body = ("## Table sizes: a `sizes` check against the runbook's query\n\n"
        f"`bash benches/sizes.sh` at `{commit}`, {date}, PostgreSQL {pg}. No target in the issue; "
        "the figure says what a sizes check adds to a snapshot. migval's wall time includes its "
        "connection, the exported snapshot (ACCESS SHARE on every table) and the snapshot file; "
        "the reference is one psql query.\n\n" + section)
text = open(path).read()
block = f"{begin}\n{body}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
cat "$WORK/section.md"
[ "$FAILURES" -eq 0 ] || { log "$FAILURES mismatches"; exit 1; }
