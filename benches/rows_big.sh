#!/usr/bin/env bash
# Row proof at scale: one `rows` check over a generated table of N rows (default 100M), to show
# that snapshot and verify run in bounded memory (target at 100M: peak RSS <= 512 MB) and to
# record their time. No peer here (reladiff at this size is benches/rows.sh's job at 10M): the
# table is generated, snapshotted, changed in place (five one-row changes as in rows.sh, and the
# fee column renamed), verified, and dropped with the throwaway cluster.
#
#   bash benches/rows_big.sh [N]        (default: 100000000; needs ~10 GB of disk per 100M rows)
#
# BENCH_BIN: a migval binary to use instead of `cargo build --release` (BENCH_COMMIT: the
# commit it was built from). Figures: wall time and
# max RSS (/usr/bin/time), the ids verify reported; CSV in benches/results/rows-big-<commit>-<N>.csv
# and the rows-big block of BENCHMARKS.md. Exit status: 0 when verify found exactly the five
# changed ids, 1 otherwise, 2 when it cannot run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
N=${1:-100000000}
RESULTS=$REPO/benches/results
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }
[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is needed for wall time and max RSS"
if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN
else
    cargo build --release
    BIN=${CARGO_TARGET_DIR:-target}/release/migval
    [[ $BIN = /* ]] || BIN=$REPO/$BIN
fi
if [ -n "${BENCH_COMMIT:-}" ]; then
    COMMIT=$BENCH_COMMIT  # the commit BENCH_BIN was built from
else
    COMMIT=$(git rev-parse --short HEAD)
    [ -z "$(git status --porcelain -- src queries Cargo.toml Cargo.lock)" ] || COMMIT=$COMMIT-dirty
fi
RUN_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)

. "$REPO/benches/lib/cluster.sh"
cluster_start rowsbig shared_buffers=2GB work_mem=64MB maintenance_work_mem=1GB fsync=off synchronous_commit=off max_wal_size=16GB
mkdir -p "$WORK/out"
URL="postgres://postgres@127.0.0.1:$PORT/bench?sslmode=disable"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d "postgres://postgres@127.0.0.1:$PORT/postgres" -c "CREATE DATABASE bench"
sql() { "${PSQL[@]}" -d "$URL" "$@"; }
PG_VERSION=$(sql -At -c "SHOW server_version")

cat >"$WORK/checks.toml" <<'TOML'
[settings]
worst_groups = 10

[rename]
"client_products.fixed_cost" = "client_products.fixed_fee_facilitated"

[schema]
diff = false

[[check]]
name = "every product row"
rows = { table = "client_products", key = ["id"] }
TOML

log "loading $N rows"
sql <<SQL
CREATE UNLOGGED TABLE client_products (
    id bigint NOT NULL, company_id int NOT NULL, client_id int NOT NULL,
    fixed_cost numeric(12,2), percentage_fee numeric(6,4) NOT NULL,
    status text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO client_products
SELECT g, 1 + (g * 7919) % 1000, 1 + g % 100000,
       CASE WHEN g % 20 = 0 THEN NULL ELSE round(((g * 104729) % 100000) / 100.0, 2) END,
       ((g * 31) % 500) / 10000.0,
       CASE WHEN g % 7 = 0 THEN 'inactive' ELSE 'active' END,
       timestamptz '2024-01-01 00:00+00' + (g % 500000) * interval '1 minute'
FROM generate_series(1::bigint, $N::bigint) g;
ALTER TABLE client_products ADD PRIMARY KEY (id);
VACUUM ANALYZE client_products;
SQL
SIZE=$(sql -At -c "SELECT pg_size_pretty(pg_total_relation_size('client_products'))")
log "table: $SIZE"
timed() { # NAME -- command: "wall rss"
    local name=$1; shift 2
    /usr/bin/time -f "%e %M" -o "$WORK/out/time" "$@" >"$WORK/out/$name.out" 2>"$WORK/out/$name.err" || true
    read -r w m < <(tail -n 1 "$WORK/out/time")
    echo "$w $(awk -v k="$m" 'BEGIN {printf "%.1f", k / 1024}')"
}
sql -c "CHECKPOINT"
read -r sw sm < <(timed snapshot -- "$BIN" snapshot --spec "$WORK/checks.toml" --out "$WORK/out/base.json" --db "$URL")
BASE_SIZE=$(du -h "$WORK/out/base.json" | cut -f1)
log "snapshot: $sw s, $sm MB, baseline file $BASE_SIZE"
sql <<'SQL'
UPDATE client_products SET fixed_cost = fixed_cost + 0.01 WHERE id = 101;
UPDATE client_products SET fixed_cost = fixed_cost + 250 WHERE id = 1001;
UPDATE client_products SET fixed_cost = fixed_cost - 250
 WHERE id = (SELECT min(id) FROM client_products WHERE company_id = (SELECT company_id FROM client_products WHERE id = 1001) AND id > 1001 AND fixed_cost > 250);
UPDATE client_products SET fixed_cost = 99.00 WHERE id = 20;
UPDATE client_products SET status = 'inactive' WHERE id = 3001;
ALTER TABLE client_products RENAME COLUMN fixed_cost TO fixed_fee_facilitated;
SQL
EXPECTED="20 101 1001 2001 3001"
read -r vw vm < <(timed verify -- "$BIN" verify --spec "$WORK/checks.toml" --baseline "$WORK/out/base.json" --db "$URL" --changes-out "$WORK/out/changes.csv")
IDS=$(python3 -c 'import csv,sys
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    rows = []
print(" ".join(str(i) for i in sorted({int(r["key"]) for r in rows})))' "$WORK/out/changes.csv")
OK=yes
[ "$IDS" = "$EXPECTED" ] || OK=no
log "verify: $vw s, $vm MB, ids [$IDS] $OK"
mkdir -p "$RESULTS"
CSV=$RESULTS/rows-big-$COMMIT-$N.csv
{
    echo "commit,date_utc,n,tool,wall_s,max_rss_mb,ids_found,ok"
    echo "$COMMIT,$RUN_DATE,$N,migval_snapshot,$sw,$sm,,yes"
    echo "$COMMIT,$RUN_DATE,$N,migval_verify,$vw,$vm,$IDS,$OK"
} >"$CSV"
python3 - "$REPO/BENCHMARKS.md" "$N" "$COMMIT" "$RUN_DATE" "$PG_VERSION" "$(nproc)" "$SIZE" "$BASE_SIZE" "$sw" "$sm" "$vw" "$vm" "$OK" "$CSV" <<'PY'
import sys
path, n, commit, date, pg, nproc, size, base, sw, sm, vw, vm, ok, csv = sys.argv[1:]
begin, end = "<!-- rows-big:begin (benches/rows_big.sh) -->", "<!-- rows-big:end -->"
body = (f"### {int(n):,} rows, migval alone (`bash benches/rows_big.sh {n}` at `{commit}`, {date}, PostgreSQL {pg}, {nproc} vCPU)\n\n"
        f"Target: peak RSS <= 512 MB. Table {size} (primary key included); baseline file {base}.\n\n"
        "| task | wall | peak RSS | found the 5 changed ids, none extra |\n|---|---|---|---|\n"
        f"| snapshot | {float(sw):.1f} s | {float(sm):.0f} MB | |\n"
        f"| verify | {float(vw):.1f} s | {float(vm):.0f} MB | {ok} |\n\n"
        f"Figures: `benches/results/{csv.rsplit('/', 1)[-1]}`.")
text = open(path).read()
block = f"{begin}\n{body}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
elif "<!-- rows:end -->" in text:
    text = text.replace("<!-- rows:end -->", "<!-- rows:end -->\n\n" + block, 1)
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
[ "$OK" = yes ] || exit 1
