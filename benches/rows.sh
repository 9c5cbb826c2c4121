#!/usr/bin/env bash
# Row-proof benchmark: migval `rows` check (snapshot + verify on ONE database across time)
# against reladiff joindiff (both tables live, side by side), on the peer data shape:
#
#   bash benches/rows.sh [N...]        (default: 1000000)
#
# Data per N: client_products (N rows, ~5% NULL fixed_cost, 85% active), and its "after"
# copy with fixed_cost renamed to fixed_fee_facilitated and five one-row changes: C1 +0.01,
# C2/C3 +250.00 / -250.00 on two rows of one company, C4 NULL -> 99.00, C5 status active ->
# inactive; plus an unchanged control copy (renamed too). reladiff compares the original with
# a view that renames the column back (it needs both tables live and by the same names);
# migval snapshots the original, the copy is swapped in by ALTER TABLE ... RENAME (instant),
# and verify runs with the [rename] entry.
# Per repetition (BENCH_REPS, default 3), interleaved: reladiff joindiff, migval snapshot,
# migval verify (changes), migval verify (control). Figures: wall time and max RSS
# (/usr/bin/time), the ids each tool reported. CSV: benches/results/rows-<commit>-<N>.csv;
# the medians go to the rows section of BENCHMARKS.md. reladiff is installed from PyPI into a
# throwaway virtualenv outside the repo (BENCH_VENV, default /tmp/migval-bench-reladiff); the
# benchmark is skipped with a message if that fails. Exit status: 0 when every tool found
# exactly the five changed ids and nothing in the control, 1 otherwise, 2 when it cannot run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
SIZES=("${@:-1000000}")
REPS=${BENCH_REPS:-3}
VENV=${BENCH_VENV:-/tmp/migval-bench-reladiff}
RESULTS=$REPO/benches/results
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }
[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is needed for wall time and max RSS"

if [ ! -x "$VENV/bin/reladiff" ]; then
    log "installing reladiff into $VENV"
    if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "reladiff[postgresql]"; } >"${TMPDIR:-/tmp}/reladiff-install.log" 2>&1; then
        log "SKIPPED: reladiff could not be installed from PyPI (see ${TMPDIR:-/tmp}/reladiff-install.log)"
        exit 0
    fi
fi
RELADIFF=$VENV/bin/reladiff
RELADIFF_VERSION=$("$RELADIFF" --version 2>&1 | tail -n 1)

log "cargo build --release"
cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/migval
[[ $BIN = /* ]] || BIN=$REPO/$BIN
COMMIT=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain -- src queries Cargo.toml Cargo.lock)" ] || COMMIT=$COMMIT-dirty
RUN_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# --- throwaway PostgreSQL (benches/lib/cluster.sh) -------------------------------------------
. "$REPO/benches/lib/cluster.sh"
cluster_start rowsbench shared_buffers=2GB work_mem=64MB fsync=off synchronous_commit=off max_wal_size=8GB
mkdir -p "$WORK/out"
URL="postgres://postgres@127.0.0.1:$PORT/bench?sslmode=disable"
RD_URL="postgresql://postgres@127.0.0.1:$PORT/bench"
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

mkdir -p "$RESULTS"
FAILURES=0
for N in "${SIZES[@]}"; do
    CSV=$RESULTS/rows-$COMMIT-$N.csv
    echo "commit,date_utc,n,tool,rep,wall_s,max_rss_mb,ids_found,ok" >"$CSV"
    log "loading $N rows"
    sql <<SQL
DROP TABLE IF EXISTS client_products, client_products_after, client_products_control, client_products_before CASCADE;
CREATE TABLE client_products (
    id bigint PRIMARY KEY, company_id int NOT NULL, client_id int NOT NULL,
    fixed_cost numeric(12,2), percentage_fee numeric(6,4) NOT NULL,
    status text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO client_products
SELECT g, 1 + (g * 7919) % 1000, 1 + g % 100000,
       CASE WHEN g % 20 = 0 THEN NULL ELSE round(((g * 104729) % 100000) / 100.0, 2) END,
       ((g * 31) % 500) / 10000.0,
       CASE WHEN g % 7 = 0 THEN 'inactive' ELSE 'active' END,
       timestamptz '2024-01-01 00:00+00' + (g % 500000) * interval '1 minute'
FROM generate_series(1::bigint, $N::bigint) g;
CREATE TABLE client_products_after AS SELECT * FROM client_products;
ALTER TABLE client_products_after RENAME COLUMN fixed_cost TO fixed_fee_facilitated;
ALTER TABLE client_products_after ADD PRIMARY KEY (id);
CREATE TABLE client_products_control AS SELECT * FROM client_products_after;
ALTER TABLE client_products_control ADD PRIMARY KEY (id);
-- C1 +0.01; C2/C3 +250 / -250 in one company (ids 1001 and 2001 share company 1 + ... see below);
-- C4 NULL -> 99.00 (id 20 is NULL: g % 20 = 0); C5 status active -> inactive.
UPDATE client_products_after SET fixed_fee_facilitated = fixed_fee_facilitated + 0.01 WHERE id = 101;
UPDATE client_products_after SET fixed_fee_facilitated = fixed_fee_facilitated + 250 WHERE id = 1001;
UPDATE client_products_after SET fixed_fee_facilitated = fixed_fee_facilitated - 250
 WHERE id = (SELECT min(id) FROM client_products WHERE company_id = (SELECT company_id FROM client_products WHERE id = 1001) AND id > 1001 AND fixed_cost > 250);
UPDATE client_products_after SET fixed_fee_facilitated = 99.00 WHERE id = 20;
UPDATE client_products_after SET status = 'inactive' WHERE id = 3001;
CREATE VIEW after_compat AS SELECT id, company_id, client_id, fixed_fee_facilitated AS fixed_cost, percentage_fee, status, created_at FROM client_products_after;
CREATE VIEW control_compat AS SELECT id, company_id, client_id, fixed_fee_facilitated AS fixed_cost, percentage_fee, status, created_at FROM client_products_control;
VACUUM ANALYZE;
SQL
    EXPECTED=$(sql -At -c "SELECT string_agg(a.id::text, ' ' ORDER BY a.id) FROM client_products b JOIN client_products_after a USING (id) WHERE (b.fixed_cost, b.status) IS DISTINCT FROM (a.fixed_fee_facilitated, a.status)")
    log "changed ids: $EXPECTED"
    COLS=()
    for c in company_id client_id fixed_cost percentage_fee status created_at; do COLS+=(-c "$c"); done
    timed() { # TOOL REP -- command: "wall rss"
        local tool=$1 rep=$2; shift 3
        /usr/bin/time -f "%e %M" -o "$WORK/out/time" "$@" >"$WORK/out/$tool.$rep.out" 2>"$WORK/out/$tool.$rep.err" || true
        read -r w m < <(tail -n 1 "$WORK/out/time")
        echo "$w $(awk -v k="$m" 'BEGIN {printf "%.1f", k / 1024}')"
    }
    record() { # TOOL REP WALL RSS IDS WANT
        local ok=yes
        [ "$5" = "$6" ] || { ok=no; FAILURES=$((FAILURES + 1)); log "MISMATCH $1 rep $2: found '$5', want '$6'"; }
        echo "$COMMIT,$RUN_DATE,$N,$1,$2,$3,$4,$5,$ok" >>"$CSV"
        log "$1 rep $2: $3 s, $4 MB, ids [$5] $ok"
    }
    migval_ids() { # the ids in a verify's changes CSV, sorted
        python3 -c 'import csv,sys
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    rows = []
print(" ".join(str(i) for i in sorted({int(r["key"]) for r in rows})))' "$1"
    }
    for rep in $(seq 1 "$REPS"); do
        sql -c "CHECKPOINT"
        read -r w m < <(timed reladiff "$rep" -- "$RELADIFF" "$RD_URL" client_products "$RD_URL" after_compat -a joindiff -k id "${COLS[@]}")
        ids=$(python3 -c 'import re,sys; print(" ".join(str(i) for i in sorted({int(m) for m in re.findall(r"^[-+] \(?(\d+)", open(sys.argv[1]).read(), re.M)})))' "$WORK/out/reladiff.$rep.out")
        record reladiff "$rep" "$w" "$m" "$ids" "$EXPECTED"

        read -r w m < <(timed snapshot "$rep" -- "$BIN" snapshot --spec "$WORK/checks.toml" --out "$WORK/out/base.json" --db "$URL")
        record migval_snapshot "$rep" "$w" "$m" "" ""
        sql -c "ALTER TABLE client_products RENAME TO client_products_before; ALTER TABLE client_products_after RENAME TO client_products"
        read -r w m < <(timed verify "$rep" -- "$BIN" verify --spec "$WORK/checks.toml" --baseline "$WORK/out/base.json" --db "$URL" --changes-out "$WORK/out/changes.csv")
        record migval_verify "$rep" "$w" "$m" "$(migval_ids "$WORK/out/changes.csv")" "$EXPECTED"
        sql -c "ALTER TABLE client_products RENAME TO client_products_after; ALTER TABLE client_products_control RENAME TO client_products"
        read -r w m < <(timed control "$rep" -- "$BIN" verify --spec "$WORK/checks.toml" --baseline "$WORK/out/base.json" --db "$URL" --changes-out "$WORK/out/control.csv")
        record migval_control "$rep" "$w" "$m" "$(migval_ids "$WORK/out/control.csv")" ""
        sql -c "ALTER TABLE client_products RENAME TO client_products_control; ALTER TABLE client_products_before RENAME TO client_products"
    done
    python3 - "$CSV" "$N" "$COMMIT" "$RUN_DATE" "$PG_VERSION" "$RELADIFF_VERSION" "$(nproc)" >>"$WORK/section.md" <<'PY'
import csv, statistics, sys
path, n, commit, date, pg, rd, nproc = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
def med(tool, col):
    v = [float(r[col]) for r in rows if r["tool"] == tool]
    return statistics.median(v) if v else float("nan")
ref = med("reladiff", "wall_s")
print(f"### {int(n):,} rows (`bash benches/rows.sh {n}` at `{commit}`, {date}, PostgreSQL {pg}, reladiff {rd}, {nproc} vCPU)")
print()
print("| tool | task | median wall | vs reladiff joindiff | peak RSS | found the 5 changed ids, none extra |")
print("|---|---|---|---|---|---|")
for tool, task in [("reladiff", "joindiff, both tables live"), ("migval_snapshot", "snapshot (baseline fingerprints)"),
                   ("migval_verify", "verify (fingerprints again, merge)"), ("migval_control", "verify against the unchanged copy")]:
    ok = all(r["ok"] == "yes" for r in rows if r["tool"] == tool)
    w = med(tool, "wall_s")
    print(f"| {tool.split('_')[0]} | {task} | {w:.2f} s | {w / ref:.2f}x | {med(tool, 'max_rss_mb'):.0f} MB | {'yes' if ok else '**no**'} |")
print()
print("Per repetition: `benches/results/" + path.rsplit('/', 1)[-1] + "`.")
print()
PY
done
MD=$REPO/BENCHMARKS.md
python3 - "$MD" "$WORK/section.md" <<'PY'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
begin, end = "<!-- rows:begin (benches/rows.sh) -->", "<!-- rows:end -->"
body = ("## Row proof: migval `rows` against reladiff joindiff\n\n"
        "Targets (issue: row proof) at 10M rows: verify <= 0.33x reladiff joindiff's wall time, snapshot <= 0.5x, "
        "peak RSS <= 256 MB for each.\n\n" + section)
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
