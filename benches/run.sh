#!/usr/bin/env bash
# migval benchmark: fee_rename at N rows (default 1M and 10M), one run, on a throwaway
# PostgreSQL started from the local server binaries.
#
#   bash benches/run.sh [N ...]          default: 1000000 10000000
#
# Per N, in one run (so every ratio is against a reference measured minutes apart):
#   load     fresh database, fixtures/fee_rename/schema.sql, fee_rename_generate(N), VACUUM ANALYZE
#   warm     one SELECT count(*) per table
#   snapshot psql -f benches/psql_checks.sql (the runbook's hand-written queries, one per check)
#            vs  migval snapshot --spec fixtures/fee_rename/checks.toml          (interleaved, x3)
#   groups   migval snapshot --spec benches/groups_1m.toml  (1,000,000 groups, baseline for below)
#   migrate  psql -1 -f fixtures/fee_rename/migration.sql
#   verify   psql -f psql_checks.sql with fixed_cost -> fixed_fee_facilitated (the post-state half
#            of the runbook)  vs  migval verify (post snapshot + diff)          (interleaved, x3)
#   1M diff  change 10 of the 1M groups, migval verify --save-after (1M-group post snapshot),
#            then migval diff of the two 1M-group snapshots                     (x3)
# Every timed command runs under /usr/bin/time -f "%e %M" (wall seconds, max RSS of that
# process); the figure kept is the median of the repetitions. The 1-minute load average is
# recorded before each measurement because the machine is shared.
#
# Output: benches/results/results-<git short hash>[-dirty]-<N>.csv (one row per measurement;
# earlier commits' files are kept) and BENCHMARKS.md at the repo root (regenerated).
# Environment: BENCH_REPS (default 3), BENCH_KEEP=1 keeps the work directory, BENCH_EXPLAIN=1
# adds PostgreSQL's execution time of each statement migval ran (benches/explain_probes.py),
# BENCH_STATEMENT_TIMEOUT (e.g. 300s) overrides the spec's statement_timeout, CARGO_TARGET_DIR is honoured, MIGVAL_PG_BIN points at the server binaries' directory.
# Exit status: 0 when every command exited as expected, 1 otherwise (the failures are
# printed with their stderr and recorded in the CSV and BENCHMARKS.md, never hidden).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000000 10000000)
for n in "${SIZES[@]}"; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1000000 ] || {
        echo "run.sh: N must be an integer >= 1000000 (the 1M-group check needs 1M products), got '$n'" >&2
        exit 2
    }
done
REPS=${BENCH_REPS:-3}
FIXTURE=$REPO/fixtures/fee_rename
SPEC=$FIXTURE/checks.toml
GROUPS_SPEC=$REPO/benches/groups_1m.toml
RESULTS=$REPO/benches/results
PG_SETTINGS=(shared_buffers=2GB work_mem=256MB max_parallel_workers_per_gather=2 fsync=off synchronous_commit=off)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is needed for wall time and max RSS"

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
tree_state() { # "<short hash> clean|dirty" of the sources the binary is built from
    local c t=clean
    c=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(git status --porcelain -- src queries Cargo.toml Cargo.lock 2>/dev/null)" ] || t=dirty
    echo "$c $t"
}
BEFORE_BUILD=$(tree_state)
log "cargo build --release"
cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/migval
[[ $BIN = /* ]] || BIN=$REPO/$BIN
[ -x "$BIN" ] || die "no binary at $BIN"
read -r COMMIT TREE < <(tree_state)
# The binary is built from the working tree: say so when it differs from the commit, or when
# the commit or the tree changed while cargo was building (another session is editing).
[ "$BEFORE_BUILD" = "$COMMIT $TREE" ] || TREE=dirty
TAG=$COMMIT
[ "$TREE" = clean ] || TAG=$COMMIT-dirty
RUN_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---------------------------------------------------------------------------------------------
# Throwaway PostgreSQL
# ---------------------------------------------------------------------------------------------
# benches/lib/cluster.sh: PGBIN, PSQL_BIN, AS_PG, WORK, PGDIR, PORT, url, psql_db, stop at exit.
. "$REPO/benches/lib/cluster.sh"
cluster_start bench "${PG_SETTINGS[@]}"
OUT=$WORK/out         # snapshots, reports, psql outputs
mkdir -p "$OUT"
# BENCH_STATEMENT_TIMEOUT=300s: the spec's statement_timeout (60s) raised, for a shared
# machine so loaded that a 10M probe runs past a minute (say so with the figures).
if [ -n "${BENCH_STATEMENT_TIMEOUT:-}" ]; then
    sed "s/^statement_timeout = .*/statement_timeout = \"$BENCH_STATEMENT_TIMEOUT\"/" "$SPEC" >"$WORK/checks.toml"
    SPEC=$WORK/checks.toml
fi
FAILURES=0

PG_VERSION=$(psql_db postgres -At -c "SHOW server_version")
PG_SHOWN=$(psql_db postgres -At -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','work_mem','max_parallel_workers_per_gather','fsync','synchronous_commit')")
NPROC=$(nproc)
MEM_GB=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MIGVAL_VERSION=$("$BIN" --version)
RUSTC_VERSION=$(rustc --version 2>/dev/null || echo unknown)

# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
CSV_HEADER="commit,tree,date_utc,n,task,tool,rep,wall_s,max_rss_mb,exit_code,expected_exit,load1_before,note"
CSV=

load1() { cut -d ' ' -f 1 /proc/loadavg; }

# measure TASK TOOL REP EXPECTED_EXIT NOTE STDOUT_FILE -- command...
# Runs the command under /usr/bin/time, appends one CSV row. A wrong exit status is
# printed with the command's stderr and counted as a failure.
measure() {
    local task=$1 tool=$2 rep=$3 expected=$4 note=$5 stdout=$6
    shift 7
    local tf=$OUT/time.$$ ef=$OUT/stderr.$$ load rc wall rss
    load=$(load1)
    set +e
    /usr/bin/time -f "%e %M" -o "$tf" "$@" >"$stdout" 2>"$ef"
    rc=$?
    set -e
    read -r wall rss < <(tail -n 1 "$tf")
    rss=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
    if [ "$rc" -ne "$expected" ]; then
        FAILURES=$((FAILURES + 1))
        log "UNEXPECTED EXIT $rc (expected $expected) from: $*"
        log "stdout (last 20 lines):"; tail -n 20 "$stdout" >&2 || true
        log "stderr:"; cat "$ef" >&2
    fi
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' \
        "$COMMIT" "$TREE" "$RUN_DATE" "$N" "$task" "$tool" "$rep" "$wall" "$rss" "$rc" "$expected" "$load" "$note" >>"$CSV"
    log "$(printf '%-16s %-7s rep %s  %8ss  %8s MB  exit %s  load1 %s' "$task" "$tool" "$rep" "$wall" "$rss" "$rc" "$load")"
}

# fact KIND KEY VALUE: a non-timed figure (file size, sanity count) as a CSV row.
fact() {
    printf '%s,%s,%s,%s,%s,%s,,,,,,,%s\n' "$COMMIT" "$TREE" "$RUN_DATE" "$N" "$1" "$2" "$3" >>"$CSV"
}

fsize() { stat -c %s "$1" 2>/dev/null || echo "?"; }

report_field() { # FILE KEY -> the last integer value of "KEY" in the JSON report FILE
    grep -o "\"$2\": *[0-9][0-9]*" "$1" | tail -n 1 | sed 's/.*: *//'
}

mkdir -p "$RESULTS"
for N in "${SIZES[@]}"; do
    CSV=$RESULTS/results-$TAG-$N.csv
    echo "$CSV_HEADER" >"$CSV"
    DB=fee_rename_$N
    D=$OUT/$N
    mkdir -p "$D"
    log "=== N = $N: database $DB"
    psql_db postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"

    # Load (once).
    measure load psql 1 0 "schema.sql + fee_rename_generate($N) + VACUUM ANALYZE" "$D/load.out" -- \
        "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$(url "$DB")" -f "$FIXTURE/schema.sql" \
        -c "SELECT fee_rename_generate($N)" -c "VACUUM ANALYZE"
    psql_db "$DB" -At -c "SELECT count(*) FROM companies" -c "SELECT count(*) FROM clients" \
        -c "SELECT count(*) FROM client_products" >"$D/warm.out"
    SIZE_MB=$(psql_db "$DB" -At -c "SELECT round(pg_total_relation_size('client_products') / 1048576.0)")
    echo "$SIZE_MB" >"$D/size_mb"

    # Reference SQL, post-migration names.
    sed 's/fixed_cost/fixed_fee_facilitated/g' "$REPO/benches/psql_checks.sql" >"$D/psql_checks_after.sql"

    # Baseline: psql runbook queries vs migval snapshot, interleaved.
    for r in $(seq 1 "$REPS"); do
        measure snapshot psql "$r" 0 "psql_checks.sql > file" "$D/psql_before.txt" -- \
            "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$(url "$DB")" -f "$REPO/benches/psql_checks.sql"
        measure snapshot migval "$r" 0 "checks.toml" "$D/snapshot.out" -- \
            "$BIN" snapshot --spec "$SPEC" --out "$D/base.json" --db "$(url "$DB")"
    done

    # 1M-group baseline (before the migration, so [rename] is exercised by verify below).
    for r in $(seq 1 "$REPS"); do
        measure groups_snapshot migval "$r" 0 "groups_1m.toml" "$D/groups_snapshot.out" -- \
            "$BIN" snapshot --spec "$GROUPS_SPEC" --out "$D/groups_a.json" --db "$(url "$DB")"
    done

    # The migration, as the runbook applies it (one transaction).
    measure migrate psql 1 0 "migration.sql; psql -1" "$D/migrate.out" -- \
        "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$(url "$DB")" -1 -f "$FIXTURE/migration.sql"

    # Post-migration: psql runbook queries vs migval verify, interleaved.
    for r in $(seq 1 "$REPS"); do
        measure verify psql "$r" 0 "psql_checks.sql with renamed column > file" "$D/psql_after.txt" -- \
            "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$(url "$DB")" -f "$D/psql_checks_after.sql"
        measure verify migval "$r" 0 "checks.toml; --format json -o report.json" "$D/verify.out" -- \
            "$BIN" verify --spec "$SPEC" --baseline "$D/base.json" --db "$(url "$DB")" \
            --format json -o "$D/report.json"
    done
    # Optional: PostgreSQL's own execution time for each statement migval ran (post state).
    if [ -n "${BENCH_EXPLAIN:-}" ]; then
        log "EXPLAIN ANALYZE of each statement in report.json (BENCH_EXPLAIN=1)"
        i=0
        python3 "$REPO/benches/explain_probes.py" "$D/report.json" "$(url "$DB")" "$PSQL_BIN" >"$D/explain.csv" ||
            { FAILURES=$((FAILURES + 1)); log "explain_probes.py failed"; }
        while IFS=, read -r ms rows names; do
            i=$((i + 1))
            printf '%s,%s,%s,%s,probe,postgres,%s,%s,,,,,rows=%s: %s\n' "$COMMIT" "$TREE" "$RUN_DATE" "$N" "$i" \
                "$(awk -v m="$ms" 'BEGIN {printf "%.2f", m / 1000}')" "$rows" "$names" >>"$CSV"
        done <"$D/explain.csv"
    fi

    # The runbook's "compare to baseline" step on the saved psql outputs (not part of the
    # ratio: the reference for verify is the post-state queries alone).
    for r in $(seq 1 "$REPS"); do
        measure compare_outputs diff "$r" 0 "diff psql_before.txt psql_after.txt" "$D/outputs.diff" -- \
            diff "$D/psql_before.txt" "$D/psql_after.txt"
    done

    # 1M-group diff: change 10 of the 1M groups (NULL fees become 0.01, so exactly 10 change),
    # capture the post state through verify --save-after (applies [rename]), diff the files.
    psql_db "$DB" -c "UPDATE client_products
        SET fixed_fee_facilitated = coalesce(fixed_fee_facilitated, 0) + 0.01
        WHERE id % 100000 = 0 AND id <= 1000000" >/dev/null
    for r in $(seq 1 "$REPS"); do
        # Exit 1 is the right answer: 10 groups changed and the check has no tolerance.
        measure groups_verify migval "$r" 1 "groups_1m.toml; --save-after; 10 groups changed" "$D/groups_verify.out" -- \
            "$BIN" verify --spec "$GROUPS_SPEC" --baseline "$D/groups_a.json" --db "$(url "$DB")" \
            --save-after "$D/groups_b.json" --format json -o "$D/groups_verify.json"
    done
    for r in $(seq 1 "$REPS"); do
        measure groups_diff migval "$r" 1 "diff of two 1M-group snapshots; 10 groups changed" "$D/groups_diff.out" -- \
            "$BIN" diff "$D/groups_a.json" "$D/groups_b.json" --format json -o "$D/groups_diff.json"
    done

    # Sanity of what was measured (a fast wrong answer is not a result).
    GROUPS_BASE=$(report_field "$D/groups_diff.json" baseline_groups || true)
    GROUPS_CHANGED=$(report_field "$D/groups_diff.json" changed || true)
    if [ "${GROUPS_BASE:-}" != 1000000 ] || [ "${GROUPS_CHANGED:-}" != 10 ]; then
        FAILURES=$((FAILURES + 1))
        log "UNEXPECTED 1M-group diff result: baseline_groups=${GROUPS_BASE:-?} changed=${GROUPS_CHANGED:-?} (want 1000000 and 10)"
    fi
    fact size client_products_total_mb "$SIZE_MB"
    fact size base_json_bytes "$(fsize "$D/base.json")"
    fact size groups_a_json_bytes "$(fsize "$D/groups_a.json")"
    fact size groups_b_json_bytes "$(fsize "$D/groups_b.json")"
    fact size groups_diff_report_bytes "$(fsize "$D/groups_diff.json")"
    fact size psql_before_txt_bytes "$(fsize "$D/psql_before.txt")"
    fact check groups_diff_baseline_groups "${GROUPS_BASE:-?}"
    fact check groups_diff_changed "${GROUPS_CHANGED:-?}"
    fact check psql_outputs_diff_lines "$(wc -l <"$D/outputs.diff")"
    fact check verify_checks_passed "$(report_field "$D/report.json" passed || true)"
    fact check verify_checks_total "$(report_field "$D/report.json" total || true)"

    psql_db postgres -c "DROP DATABASE $DB"
    log "=== N = $N done: $CSV"
done

# ---------------------------------------------------------------------------------------------
# BENCHMARKS.md
# ---------------------------------------------------------------------------------------------
# stat FILE TASK TOOL FIELD(wall|rss) -> "median (min..max)" over the reps, or "-"
col_of() { case $1 in wall) echo 8 ;; rss) echo 9 ;; load) echo 12 ;; esac; }
values() { # FILE TASK TOOL FIELD
    awk -F, -v t="$2" -v o="$3" -v c="$(col_of "$4")" 'NR > 1 && $5 == t && $6 == o {print $c}' "$1"
}
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR > 1) printf " (%s..%s)", lo, hi}'; }
med() { values "$@" | median; }
spread() { values "$@" | range; }
exits() { # FILE TASK TOOL -> "" when every rep exited as expected, else " **exit N**"
    awk -F, -v t="$2" -v o="$3" 'NR > 1 && $5 == t && $6 == o && $10 != $11 {bad = bad " **exit " $10 "**"} END {printf "%s", bad}' "$1"
}
extra() { awk -F, -v k="$2" '$5 == "size" || $5 == "check" {if ($6 == k) print $NF}' "$1" | tail -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a ~ /^[0-9]+([.][0-9]*)?$/ && a + 0 <= b + 0)}'; }
mib() { awk -v b="$1" 'BEGIN {if (b !~ /^[0-9]+$/) printf "?"; else if (b < 1048576) printf "%.1f KB", b / 1024; else printf "%.1f MB", b / 1048576}'; }
fmt_n() { awk -v n="$1" 'BEGIN {if (n % 1000000 == 0) printf "%dM", n / 1000000; else printf "%d", n}'; }

MD=$REPO/BENCHMARKS.md
# The other benches/*.sh own the blocks between their markers (backfill, rows, rows-big,
# sizes, ...), with the notes around them: keep everything from the first marker to the end
# across this rewrite (only the backfill block was kept before, dropping the others).
OTHER_BLOCKS=$(sed -n '/^<!-- [a-z-]*:begin/,$p' "$MD" 2>/dev/null || true)
{
    echo "# migval benchmarks"
    echo
    echo "Generated by \`bash benches/run.sh ${SIZES[*]}\` (do not edit by hand; rerun the script)."
    echo
    echo "- Date: $RUN_DATE"
    echo "- Commit: \`$COMMIT\`$([ "$TREE" = clean ] || echo " **plus uncommitted changes** in src/, queries/ or Cargo files (the binary was built from the working tree)"), $MIGVAL_VERSION, $RUSTC_VERSION, release profile"
    echo "- Machine: $NPROC CPUs ($CPU_MODEL), $MEM_GB GiB RAM, shared with other workloads (see load averages)"
    echo "- PostgreSQL $PG_VERSION, throwaway cluster on 127.0.0.1: $PG_SHOWN; initdb --locale=C"
    echo "- Raw figures: \`benches/results/results-$TAG-<N>.csv\` (one row per measurement)"
    echo
    echo "Targets (issue, at 10M rows): snapshot and verify each <= 0.4x the psql reference time;"
    echo "a diff of 1M groups <= 2 s and <= 500 MB peak RSS. At other sizes the same thresholds are shown for information."
    for N in "${SIZES[@]}"; do
        F=$RESULTS/results-$TAG-$N.csv
        [ -f "$F" ] || continue
        echo
        echo "## N = $(fmt_n "$N") products (client_products $(extra "$F" client_products_total_mb) MB with indexes)"
        echo
        echo "Median of $REPS runs, (min..max) in brackets. Ratio = migval median / psql median, same run."
        echo
        echo "| task | psql reference s | migval s | ratio migval/psql | migval peak RSS MB | psql peak RSS MB | target | met |"
        echo "|---|---|---|---|---|---|---|---|"
        for task in snapshot verify; do
            pw=$(med "$F" $task psql wall); mw=$(med "$F" $task migval wall)
            r=$(ratio "$mw" "$pw")
            met="not met"; le "$r" 0.4 && met=met
            [ -n "$(exits "$F" $task migval)$(exits "$F" $task psql)" ] && met="not met (error)"
            [ "$N" = 10000000 ] || met="$met (target is for 10M)"
            label=$task; [ $task = verify ] && label="verify (post snapshot + diff)"
            echo "| $label | $pw$(spread "$F" $task psql wall)$(exits "$F" $task psql) | $mw$(spread "$F" $task migval wall)$(exits "$F" $task migval) | **$r** | $(med "$F" $task migval rss) | $(med "$F" $task psql rss) | <= 0.4 | $met |"
        done
        dw=$(med "$F" groups_diff migval wall); dr=$(med "$F" groups_diff migval rss)
        met="not met"; le "$dw" 2 && le "$dr" 500 && met=met
        [ -n "$(exits "$F" groups_diff migval)" ] && met="not met (error)"
        echo "| diff of 1M groups (\`migval diff a.json b.json\`, 10 groups changed) | - | $dw$(spread "$F" groups_diff migval wall)$(exits "$F" groups_diff migval) | - | $dr$(spread "$F" groups_diff migval rss) | - | <= 2 s, <= 500 MB | $met |"
        echo
        echo "Other figures of this run:"
        echo
        echo "- load (schema + \`fee_rename_generate($N)\` + VACUUM ANALYZE, once): $(med "$F" load psql wall) s; migration (\`psql -1 -f migration.sql\`): $(med "$F" migrate psql wall) s"
        echo "- runbook compare step, \`diff\` of the saved psql outputs: $(med "$F" compare_outputs diff wall) s, $(extra "$F" psql_outputs_diff_lines) differing lines; psql output file $(mib "$(extra "$F" psql_before_txt_bytes)")"
        echo "- 1M-group snapshot (\`groups_1m.toml\`): $(med "$F" groups_snapshot migval wall)$(spread "$F" groups_snapshot migval wall) s, $(med "$F" groups_snapshot migval rss) MB$(exits "$F" groups_snapshot migval); 1M-group verify with \`--save-after\`: $(med "$F" groups_verify migval wall)$(spread "$F" groups_verify migval wall) s, $(med "$F" groups_verify migval rss) MB$(exits "$F" groups_verify migval) (exit 1 expected: 10 groups changed)"
        echo "- snapshot files: checks.toml baseline $(mib "$(extra "$F" base_json_bytes)"); 1M-group snapshots $(mib "$(extra "$F" groups_a_json_bytes)") and $(mib "$(extra "$F" groups_b_json_bytes)"); 1M-group diff report $(mib "$(extra "$F" groups_diff_report_bytes)")"
        echo "- verify verdict: $(extra "$F" verify_checks_passed) of $(extra "$F" verify_checks_total) checks passed (all expected)"
        echo "- 1M-group diff found $(extra "$F" groups_diff_baseline_groups) baseline groups, $(extra "$F" groups_diff_changed) changed (10 expected)"
        if awk -F, '$5 == "probe" {found = 1} END {exit !found}' "$F"; then
            echo
            echo "PostgreSQL execution time of each statement migval's verify ran (\`EXPLAIN (ANALYZE)\` once, post-migration, run one at a time; sending rows to the client not included):"
            echo
            echo "| # | execution s | rows | checks fed |"
            echo "|---|---|---|---|"
            awk -F, '$5 == "probe" {n = $13; for (i = 14; i <= NF; i++) n = n "," $i; r = n; sub(/:.*/, "", r); sub(/^rows=/, "", r); sub(/^[^:]*: /, "", n); printf "| %s | %s | %s | %s |\n", $7, $8, r, n; t += $8} END {printf "| | **%.2f** total | | |\n", t}' "$F"
            echo
        fi
        echo "- 1-minute load average before each measurement: $(awk -F, 'NR > 1 && $12 != "" {print $12}' "$F" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s..%s", lo, hi}')"
    done
    cat <<'EOF'

## Method

- `benches/run.sh` builds the release binary, starts a throwaway PostgreSQL (initdb as the
  `postgres` user when run as root) on a free loopback port, and per N creates a fresh database,
  loads `fixtures/fee_rename/schema.sql`, runs `fee_rename_generate(N)` and `VACUUM ANALYZE`, and
  warms the cache with one `SELECT count(*)` per table. Hot cache only.
- **Reference** (`benches/psql_checks.sql`): the same checks as `fixtures/fee_rename/checks.toml`
  written by hand, one query per check, run the way the runbook runs its baseline script:
  `psql -X -q -f psql_checks.sql > file` (default aligned output, to a file, grouped and keyed
  results ordered so two outputs can be compared). After the migration the same file is run with
  `sed s/fixed_cost/fixed_fee_facilitated/g` applied (the only name the migration changes).
  The runbook's compare step (`diff` of the two outputs) is listed separately and is not in the ratio.
- **migval snapshot** = `migval snapshot --spec fixtures/fee_rename/checks.toml --out base.json --db URL`.
  **migval verify** = `migval verify --spec ... --baseline base.json --db URL --format json -o report.json`
  after `psql -1 -f fixtures/fee_rename/migration.sql`: a post-migration capture with the
  [rename] map applied, plus the comparison and the report. Expected exit code 0.
- psql and migval runs are interleaved (psql, migval, psql, migval, ...) so slow phases of the
  shared machine hit both; the figure is the median of the repetitions.
- **1M-group diff**: `benches/groups_1m.toml` has one grouped check on `client_products`
  `WHERE id <= 1000000 GROUP BY id` (1,000,000 groups, three metrics). Its baseline snapshot is taken
  before the migration; after the migration `UPDATE ... SET fixed_fee_facilitated = coalesce(..., 0) + 0.01
  WHERE id % 100000 = 0 AND id <= 1000000` changes exactly 10 groups, `migval verify --save-after`
  captures the post state (with [rename]), and `migval diff a.json b.json --format json -o out.json`
  is timed. Exit code 1 is expected there (10 groups changed, no tolerance), and the script checks
  that the report counts 1,000,000 baseline groups and 10 changed ones.
- Wall time and peak RSS come from `/usr/bin/time -f "%e %M"` around each command: peak RSS is the
  client process only (migval, or psql). The PostgreSQL backends' CPU and memory are not in any
  RSS column; migval runs its probes on up to 4 connections (the spec default), psql on one.
  While several connections probe, migval turns PostgreSQL's parallel workers off for them
  (`settings.query_workers`, default 0 then); psql runs with the server's setting (2 here).

## Why the 0.4x target is out of reach on this machine

The capture is CPU-bound on the 2 vCPUs, and nearly all of the work is the server's, for the
same queries psql runs. Each probe alone on one backend at 10M rows (idle machine, `EXPLAIN
ANALYZE`, parallel workers off, JIT on as by default): revenue_analytics_optimized 21.7 s (a
1M-group hash aggregate inside the view), company_revenue_analytics 14.9 s, products_list_view
13.0 s, company revenue from base tables 12.2 s, per-product rows 6.7 s plus sending and
decoding 8.5M rows, the two fused client_products scans 2.9 s each, orphans 1.6 s (7.5 s before
the ordered merge): about 76 s of backend time, plus 12-15 s of migval's own CPU (decoding 42M
values, sorting, writing a 355 MB baseline). On two cores that is at least 44-46 s; the capture
measures 44-48 s, both cores busy from start to end. psql's reference is 82-84 s because it runs
one query at a time: it gets the second core only from PostgreSQL's parallel workers (its
queries add up to 60 s by `\timing`) and then spends about 21 s formatting 8.5M aligned rows.
A ratio of 0.4 (about 33 s) would need the server work itself to shrink by a third, and the
views' joins and aggregates are the user's SQL: any client pays them.

What was tried to make the server work less, measured at 10M and kept or dropped:

| idea | measured | kept |
|---|---|---|
| orphan count as a merge anti join over index-only scans (both sides indexed, vacuumed) | 7.5 s -> 1.6 s | yes |
| probe order: weigh big hash aggregates and hash joins the planner underprices | the 1M-group view starts first instead of sixth; no core idles at the end | yes |
| snapshot file hashed and written on a second thread; decimals formatted without allocating | write tail 3.6 s -> 2.5 s | yes |
| a cell in 24 bytes instead of 32 (text as `Box<str>`) | peak RSS: snapshot 1.44 -> 1.15 GB, verify 3.6 -> 3.0 GB; fewer page faults | yes |
| a result rotated by a synchronized seq scan (another probe was already scanning the table) rotated back instead of sorted | 12 % of verify's client CPU was this sort | yes |
| malloc on transparent huge pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) | verify 2 s faster (sys 10 -> 8 s) | no: needs the variable set before start; noted |
| `count(DISTINCT)` via a pre-aggregation (GROUP BY the distinct columns, then count) | 25.7 s vs 14.0 s (1M-group hash of numeric sums) | no |
| both client_products scans fused with GROUPING SETS | 5.9 s vs 2.7 + 3.1 s | no |
| JIT off | every probe 5-15 % slower | no |
| hash joins and hash aggregates off for the views | revenue_analytics_optimized 17.9 s vs 21.7 s, company revenue 21-23 s vs 12.2 s | no: a global guess over user SQL |
| connections x parallel workers: 4x0, 2x1, 2x2, 3x1 | 50-59 s, within the noise | default kept (4x0) |

It needs more cores (the probes are independent and spread over them), not a different client.

## Noise and caveats

- The machine is shared (2 vCPUs): other sessions run their own PostgreSQL clusters and builds at the
  same time. The load average before every measurement is in the CSV (`load1_before`). Earlier
  measurements on this machine varied by up to ~40% between reruns of the same command; treat
  differences under ~30% as noise, and read the ratio (both sides measured minutes apart) rather
  than absolute seconds.
- Hot cache: every table fits in RAM and was read once before timing; no cold-cache figures.
- The 10M load runs once; every timed command runs the number of times given above.
- `fsync=off` and `synchronous_commit=off` only speed up the load and the migration; the checks are reads.
EOF
    echo
    echo "## History"
    echo
    echo "Every run's raw CSV is kept in \`benches/results/\`:"
    echo
    echo "| file | date | N | snapshot ratio | verify ratio | 1M-group diff s / MB |"
    echo "|---|---|---|---|---|---|"
    for F in $(ls -t "$RESULTS"/results-*.csv 2>/dev/null); do
        fn=$(awk -F, 'NR == 2 {print $4}' "$F"); fd=$(awk -F, 'NR == 2 {print $3}' "$F")
        sr=$(ratio "$(med "$F" snapshot migval wall)" "$(med "$F" snapshot psql wall)")
        vr=$(ratio "$(med "$F" verify migval wall)" "$(med "$F" verify psql wall)")
        echo "| \`$(basename "$F")\` | $fd | $(fmt_n "$fn") | $sr | $vr | $(med "$F" groups_diff migval wall) / $(med "$F" groups_diff migval rss) |"
    done
    if [ -n "$OTHER_BLOCKS" ]; then
        echo
        printf '%s\n' "$OTHER_BLOCKS"
    fi
} >"$MD"
log "wrote $MD"

if [ "$FAILURES" -ne 0 ]; then
    log "$FAILURES command(s) did not exit as expected; see above and the exit_code column"
    exit 1
fi
