#!/usr/bin/env python3
"""Server-side cost of each query migval ran, for benches/run.sh (BENCH_EXPLAIN=1).

    python3 benches/explain_probes.py REPORT.json URL [PSQL]

REPORT.json is a `migval verify --format json` report; URL the database it verified (still in
the post-migration state). Every distinct statement in checks[].after_sql (catalog facts and
`-- view ... not found` lines skipped) is run once under EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) with
psql, and one CSV line per statement is printed:

    execution_ms,rows,checks

`execution_ms` is PostgreSQL's own execution time (parallel workers included, sending the rows
to the client not included); `checks` are the names of the checks the statement feeds, joined
with " + ". The statements are read-only SELECTs written by migval.
"""

import json
import subprocess
import sys


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    report_path, url = sys.argv[1], sys.argv[2]
    psql = sys.argv[3] if len(sys.argv) == 4 else "psql"
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)

    statements: dict[str, list[str]] = {}
    for check in report["checks"]:
        for sql in check.get("after_sql") or []:
            text = sql.strip()
            if not text or text.startswith("--"):
                continue
            statements.setdefault(text, []).append(check["name"])

    for sql, checks in statements.items():
        out = subprocess.run(
            [psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url,
             "-c", f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"],
            check=True, capture_output=True, text=True,
        ).stdout
        plan = json.loads(out)[0]
        ms = plan["Execution Time"]
        rows = plan["Plan"].get("Actual Rows", "")
        names = " + ".join(checks).replace(",", ";").replace('"', "'")
        print(f"{ms:.1f},{rows},{names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
