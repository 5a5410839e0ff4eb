"""Does a rollup pay for the daily feature build? (issue 25, Deliver 4)

    python scripts/bench_rollup.py [--customers 1000000] [--transactions 20000000] [--repeats 3]
                                   [--corrections 0.001] [--results benchmarks/results]

build_features computes, for every customer, its purchase aggregates as of the drop's date T (the
windows of include/sql/features.sql: counts and amounts over 30, 90, 365 days and all time, the last
purchase, the 90-day trend) from every transaction row visible at that drop. This script times three ways
to get exactly those aggregates on a table shaped like the warehouse's (valid_from / valid_to per row),
each from the state the day before would have left, and checks that they give the same rows:

- whole_history: one GROUP BY over every visible row (what build_features does);
- cold_summary: a per-customer summary of the rows older than the longest window, kept by load, joined to
  a GROUP BY of the rows inside the windows;
- running_state: yesterday's aggregates per customer carried forward: customers with rows delivered or
  superseded since yesterday's drop are aggregated again, every other customer's windows slide (the rows
  that left each window are subtracted).

The data: ../shared/bench/gen_scale.py at the given size, all delivered by the drop of 2026-02-01; the
drop of 2026-02-02 adds the last day's purchases before it again under new ids (as scripts/bench.py's next day does)
corrects a share of earlier purchases (a new amount under the same id) and removes as many (a full extract
that no longer holds them). Results: rollup_<time>.json
and .md under --results.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from bench import REPO, SHARED_BENCH, machine, stamp, writable_folder, write_results  # noqa: E402

YESTERDAY, TODAY = "2026-02-01", "2026-02-02"
WINDOWS = (30, 90, 365)  # features.sql's windows; the trend compares [T-90, T) with [T-180, T-90)
AGGREGATE_COLUMNS = ["customer_id", "last_txn_date", *(f"count_{w}" for w in WINDOWS), "count_prev_90",
                     *(f"units_{w}" for w in WINDOWS), "count_all", "units_all"]


def visible(drop: str) -> str:
    return f"valid_from <= DATE '{drop}' AND (valid_to IS NULL OR valid_to > DATE '{drop}')"


def purchases(drop: str, as_of: str, where: str = "TRUE") -> str:
    """The rows a run for `drop` reads, amounts in whole ten-thousandths (as features.sql sums them)."""
    return (f"SELECT customer_id, txn_date, CAST(round(amount * 10000) AS BIGINT) AS units FROM transactions "
            f"WHERE {visible(drop)} AND txn_date < DATE '{as_of}' AND ({where})")


def aggregates(as_of: str) -> str:
    day = f"DATE '{as_of}'"
    windows = [f"count(*) FILTER (WHERE txn_date >= {day} - {w}) AS count_{w}" for w in WINDOWS]
    windows.append(f"count(*) FILTER (WHERE txn_date >= {day} - 180 AND txn_date < {day} - 90) AS count_prev_90")
    windows += [f"coalesce(sum(units) FILTER (WHERE txn_date >= {day} - {w}), 0) AS units_{w}" for w in WINDOWS]
    return ", ".join(["customer_id", "max(txn_date) AS last_txn_date", *windows,
                      "count(*) AS count_all", "sum(units) AS units_all"])


def whole_history(drop: str) -> str:
    return f"SELECT {aggregates(drop)} FROM ({purchases(drop, drop)}) GROUP BY customer_id"


def cold_summary_build(drop: str) -> str:
    """What a load would keep: per customer, the rows older than every window."""
    cold = purchases(drop, drop, f"txn_date < DATE '{drop}' - {max(WINDOWS)}")
    return (f"CREATE OR REPLACE TABLE cold AS SELECT customer_id, count(*) AS count_all, sum(units) AS units_all, "
            f"max(txn_date) AS last_txn_date FROM ({cold}) GROUP BY customer_id")


def cold_summary(drop: str) -> str:
    warm = purchases(drop, drop, f"txn_date >= DATE '{drop}' - {max(WINDOWS)}")
    counts = ", ".join(f"coalesce(warm.count_{w}, 0)" for w in WINDOWS)
    units = ", ".join(f"coalesce(warm.units_{w}, 0)" for w in WINDOWS)
    return (f"WITH warm AS (SELECT {aggregates(drop)} FROM ({warm}) GROUP BY customer_id) "
            "SELECT coalesce(warm.customer_id, cold.customer_id), coalesce(warm.last_txn_date, cold.last_txn_date), "
            f"{counts}, coalesce(warm.count_prev_90, 0), {units}, "
            "coalesce(warm.count_all, 0) + coalesce(cold.count_all, 0), "
            "coalesce(warm.units_all, 0) + coalesce(cold.units_all, 0) "
            "FROM warm FULL JOIN cold ON warm.customer_id = cold.customer_id")


def touched_customers(previous: str, drop: str) -> str:
    """Customers with a row delivered or superseded between the two drops, or dated between them."""
    before, day = f"DATE '{previous}'", f"DATE '{drop}'"
    return (f"SELECT DISTINCT customer_id FROM transactions WHERE (valid_from > {before} AND valid_from <= {day}) "
            f"OR (valid_to > {before} AND valid_to <= {day}) OR (txn_date >= {before} AND txn_date < {day})")


def running_state(previous: str, drop: str) -> str:
    """Today's aggregates from `state` (yesterday's, as of `previous`): every customer with a row delivered,
    superseded or dated since yesterday is aggregated again; the others' rows did not change, so only the rows
    that left each window are subtracted."""
    before, day = f"DATE '{previous}'", f"DATE '{drop}'"
    touched = touched_customers(previous, drop)
    # the rows that left a window between the two dates: [previous - w, drop - w)
    left = {w: f"txn_date >= {before} - {w} AND txn_date < {day} - {w}" for w in (*WINDOWS, 180)}
    slides = ", ".join([*(f"count(*) FILTER (WHERE {left[w]}) AS out_count_{w}" for w in (*WINDOWS, 180)),
                        *(f"coalesce(sum(units) FILTER (WHERE {left[w]}), 0) AS out_units_{w}" for w in WINDOWS)])
    counts = ", ".join(f"state.count_{w} - coalesce(out_count_{w}, 0)" for w in WINDOWS)
    units = ", ".join(f"state.units_{w} - coalesce(out_units_{w}, 0)" for w in WINDOWS)
    return (f"WITH touched AS ({touched}), "
            f"redone AS (SELECT {aggregates(drop)} FROM ({purchases(drop, drop)}) AS p "
            "WHERE customer_id IN (SELECT customer_id FROM touched) GROUP BY customer_id), "
            f"slid AS (SELECT customer_id, {slides} FROM ({purchases(drop, drop)}) AS p "
            f"WHERE {' OR '.join(f'({c})' for c in left.values())} GROUP BY customer_id) "
            "SELECT * FROM redone UNION ALL "
            f"SELECT state.customer_id, state.last_txn_date, {counts}, "
            "state.count_prev_90 - coalesce(out_count_180, 0) + coalesce(out_count_90, 0), "
            f"{units}, state.count_all, state.units_all "
            "FROM state LEFT JOIN slid ON slid.customer_id = state.customer_id "
            "WHERE state.customer_id NOT IN (SELECT customer_id FROM touched)")


def make_warehouse(con, data: Path, corrections: float, history_years: float) -> dict[str, int]:
    # --history-years stretches the generator's two years of purchases over a longer past
    con.execute(f"CREATE TABLE transactions AS SELECT transaction_id, customer_id, "
                f"DATE '{YESTERDAY}' - CAST(round((DATE '{YESTERDAY}' - txn_date) * {history_years / 2}) AS INTEGER) "
                f"AS txn_date, amount, DATE '{YESTERDAY}' AS valid_from, CAST(NULL AS DATE) AS valid_to "
                f"FROM read_csv('{data}/transactions.csv')")
    con.execute(f"INSERT INTO transactions SELECT 'N' || substr(transaction_id, 2), customer_id, DATE '{YESTERDAY}', "
                f"amount, DATE '{TODAY}', NULL FROM transactions WHERE txn_date = (SELECT max(txn_date) FROM transactions "
                f"WHERE txn_date < DATE '{YESTERDAY}')")
    # a correction: the old version ends at today's drop, the new one (another amount) starts there
    con.execute(f"CREATE TEMP TABLE corrected AS SELECT transaction_id FROM transactions WHERE valid_from = "
                f"DATE '{YESTERDAY}' AND hash(transaction_id) % 1000000 < {int(corrections * 1_000_000)}")
    con.execute(f"INSERT INTO transactions SELECT transaction_id, customer_id, txn_date, amount + 1, DATE '{TODAY}', "
                "NULL FROM transactions WHERE transaction_id IN (SELECT transaction_id FROM corrected)")
    # as many again are removed (a full extract that no longer holds them): the old version ends, none follows
    con.execute(f"CREATE TEMP TABLE removed AS SELECT transaction_id FROM transactions WHERE valid_from = "
                f"DATE '{YESTERDAY}' AND hash(transaction_id) % 1000000 >= {int(corrections * 1_000_000)} "
                f"AND hash(transaction_id) % 1000000 < {2 * int(corrections * 1_000_000)}")
    con.execute(f"UPDATE transactions SET valid_to = DATE '{TODAY}' WHERE valid_from = DATE '{YESTERDAY}' "
                "AND transaction_id IN (SELECT transaction_id FROM corrected UNION ALL SELECT transaction_id FROM removed)")
    return {"rows": con.execute("SELECT count(*) FROM transactions").fetchone()[0],
            "todays_rows": con.execute(f"SELECT count(*) FROM transactions WHERE valid_from = DATE '{TODAY}'")
            .fetchone()[0],
            "corrected": con.execute("SELECT count(*) FROM corrected").fetchone()[0],
            "removed": con.execute("SELECT count(*) FROM removed").fetchone()[0]}


def timed(con, sql: str, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        con.execute(sql)
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 3)


def differing_rows(con, table: str) -> int:
    return con.execute(f"SELECT (SELECT count(*) FROM (FROM expected EXCEPT ALL FROM {table})) + "
                       f"(SELECT count(*) FROM (FROM {table} EXCEPT ALL FROM expected))").fetchone()[0]


def run(customers: int, transactions: int, repeats: int, corrections: float, history_years: float,
        memory_limit: str) -> dict:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="batchops-rollup-") as work:
        data = Path(work) / "data"
        subprocess.run([sys.executable, str(SHARED_BENCH / "gen_scale.py"), str(data), "--customers", str(customers),
                        "--transactions", str(transactions)], check=True, capture_output=True)
        with duckdb.connect(str(Path(work) / "warehouse.duckdb")) as con:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            shape = make_warehouse(con, data, corrections, history_years)
            con.execute("CHECKPOINT")
            # yesterday's run leaves its aggregates (running_state) and the load keeps the old rows' summary
            con.execute(f"CREATE TABLE state AS {whole_history(YESTERDAY)}")
            started = time.perf_counter()
            con.execute(cold_summary_build(TODAY))
            cold_build = round(time.perf_counter() - started, 3)
            cold_rows = con.execute(f"SELECT count(*) FROM ({purchases(TODAY, TODAY)}) "
                                    f"WHERE txn_date < DATE '{TODAY}' - {max(WINDOWS)}").fetchone()[0]
            variants = {"whole_history": whole_history(TODAY), "cold_summary": cold_summary(TODAY),
                        "running_state": running_state(YESTERDAY, TODAY)}
            results = {}
            for name, sql in variants.items():
                seconds = timed(con, f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", repeats)
                results[name] = {"seconds": seconds}
            con.execute("CREATE TEMP TABLE expected AS FROM whole_history")
            for name in variants:
                results[name]["rows"] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                results[name]["rows_differing_from_whole_history"] = differing_rows(con, name)
            results["running_state"]["customers_aggregated_again"] = con.execute(
                f"SELECT count(*) FROM ({touched_customers(YESTERDAY, TODAY)})").fetchone()[0]
    results["cold_summary"]["build_seconds"] = cold_build
    return {"customers": customers, "transactions": transactions, "corrections": corrections, "history_years": history_years, **shape, "rows_older_than_windows": cold_rows,
            "repeats": repeats, "memory_limit": memory_limit, "variants": results}


def markdown(result: dict) -> str:
    whole = result["variants"]["whole_history"]["seconds"]
    lines = [f"# Feature aggregates of one day: whole history against rollups ({result['started']})", "",
             f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['memory_gib']} GiB. `python scripts/bench_rollup.py --customers {result['customers']} "
             f"--transactions {result['transactions']} --repeats {result['repeats']} --corrections {result['corrections']} "
             f"--history-years {result['history_years']}`; DuckDB memory_limit "
             f"{result['memory_limit']}.", "",
             f"{result['rows']:,} transaction rows, {result['todays_rows']:,} delivered by today's drop "
             f"({result['corrected']:,} of them corrections), {result['removed']:,} earlier rows removed by it, "
             f"{result['rows_older_than_windows']:,} visible rows older than every window.", "",
             "| variant | seconds (median) | vs whole history | rows | rows differing |", "|---|---|---|---|---|"]
    for name, variant in result["variants"].items():
        lines.append(f"| {name} | {variant['seconds']} | {variant['seconds'] / whole:.2f}x | {variant['rows']:,} | "
                     f"{variant['rows_differing_from_whole_history']} |")
    lines += ["", f"The cold summary's own build (once, then kept by each load): "
                  f"{result['variants']['cold_summary']['build_seconds']} s. The running state aggregated "
                  f"{result['variants']['running_state']['customers_aggregated_again']:,} customers again and "
                  "carried the others forward."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=20_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corrections", type=float, default=0.001,
                        help="share of the earlier purchases today's drop corrects, and again removes (0 to 0.5)")
    parser.add_argument("--history-years", type=float, default=2.0,
                        help="years of purchase history (the generator's two years, stretched or squeezed)")
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.transactions < 1 or args.repeats < 1:
        parser.error("--customers, --transactions and --repeats take 1 or more")
    if not 0.1 <= args.history_years <= 50:
        parser.error(f"--history-years {args.history_years}: give between 0.1 and 50")
    if not 0 <= args.corrections <= 0.5:
        parser.error(f"--corrections {args.corrections}: give a share between 0 and 0.5")
    if not (SHARED_BENCH / "gen_scale.py").exists():
        parser.error(f"the shared anchors are not at {SHARED_BENCH}; set BATCHOPS_SHARED_BENCH")
    writable_folder(parser, "--results", args.results)
    result = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              **run(args.customers, args.transactions, args.repeats, args.corrections, args.history_years,
                  args.memory_limit)}
    write_results(args.results, [f"rollup_{stamp(result['started'])}"], result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
