"""A year of daily operation, simulated: one provider's daily incremental drops, the scoring DAG every day, the
training DAG once a week, retention (python -m batchops prune) after every day, as the maintenance DAG does.

    python scripts/bench_daily.py [--days 365] [--customers 20000] [--train-every 7] [--workdir DIR]
        [--results benchmarks/results]

Each day runs the real DAG with `airflow dags test` (the same tasks the scheduler runs, in one process; the
run is a manual one, so it does not wait for the drop, which is written just before and dated 10 minutes
earlier, as a drop that landed before its run: ingest waits for a file still being uploaded). By default the
commands `airflow dags test ...`, `python -m batchops prune ...` and the `airflow db clean ...` prune runs
are parsed and run by Airflow's and BatchOps' own CLI code inside this one process, day after day: the same
code path as typing them, without starting Python and importing Airflow three times a day (which took about
15 of the 25 seconds a day; a year fits in about an hour instead of 2.5). `--commands subprocess` runs each
as a process of its own, as before; both give the same predictions and warehouse rows day by day
(scripts/compare_daily_runs.py). The runs of the days the time target compares (within 3 days of day 30 and
of the last day) are always processes of their own, as a scheduled run's tasks are: state that builds up in one
process over hundreds of runs is not a cost a production run pays. Per day it records the
run's seconds and outcome, the bytes of the warehouse, of runs/, of the model store, of Airflow's metadata
database and of the landing drops, and the rows of every warehouse table. Airflow's records are pruned with
the simulated calendar: the records of the runs made more than airflow_metadata_days simulated days ago.
At the end the year's transactions are loaded once, as one full extract, into a warehouse of their own: the
size the warehouse is compared with. Results: benchmarks/results/daily_year.json and .md (rewritten every day,
so a stopped run leaves what it measured).
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from collections.abc import Callable

import duckdb

import generate_data
from bench import machine, writable_folder, write_results
from batchops.config import load_config_set
from batchops.progress import Steps
from batchops.storage.retention import METADATA_TABLES, airflow_clean_arguments, folder_bytes

REPO = Path(__file__).resolve().parents[1]
PROVIDER = "daily"
FULL = "daily_full"  # the same layout, one full extract of the last day: what the warehouse is compared with
START = date(2026, 1, 1)
TIME_WIDTH = 3  # the time target compares the medians of the scoring runs within this many days of day 30 and the last


def provider_config(provider_id: str, delivery: str) -> str:
    """provider_a's layout; transactions delivered `delivery`, keyed by transaction_id."""
    text = (REPO / "include" / "configs" / "provider_a.yaml").read_text()
    text = text.replace("provider_id: provider_a", f"provider_id: {provider_id}")
    return text.replace("    file: transactions.csv\n", f"    file: transactions.csv\n    delivery: {delivery}\n")


def warehouse_bytes(warehouse_dir: Path, provider_id: str) -> int:
    return sum(p.stat().st_size for p in warehouse_dir.glob(f"{provider_id}.duckdb*") if p.is_file()
               and not p.name.endswith((".lock", ".json")))


def table_rows(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def metadata_cleans(provider, day: date, index: int, day_started: list[datetime]) -> list[list[str]]:
    """The `airflow db clean` of what prune removes, in two parts: a run made with `airflow dags test` starts
    (dag_run.start_date) at its simulated date, its task instances, XComs and logs at the real time. Each part
    is cut at airflow_metadata_days back on its own clock (in production both clocks are one; prune runs one
    clean)."""
    days = provider.retention.airflow_metadata_days
    dag_ids = [f"{provider.provider_id}__{name}" for name in provider.pipelines]
    simulated = datetime.combine(day - timedelta(days=days), datetime.min.time(), UTC)
    real = day_started[max(index - days, 0)]
    others = ",".join(t for t in METADATA_TABLES.split(",") if t != "dag_run")
    return [airflow_clean_arguments(dag_ids, simulated, tables="dag_run"),
            airflow_clean_arguments(dag_ids, real, tables=others)]


def table_bytes(path: Path, scratch: Path) -> dict[str, int]:
    """What each table of a DuckDB file takes on its own: the file it makes alone (copied into an empty
    database), less an empty database's size. The rest of the warehouse file is free space."""
    scratch.mkdir(parents=True, exist_ok=True)
    empty = scratch / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    found = {}
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{path}' AS source (READ_ONLY)")
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'source' "
                                    "AND table_schema = 'main' ORDER BY 1").fetchall():
            alone = scratch / f"{table}.duckdb"
            alone.unlink(missing_ok=True)
            con.execute(f"ATTACH '{alone}' AS alone")
            con.execute(f'CREATE TABLE alone."{table}" AS SELECT * FROM source.main."{table}"')
            con.execute("DETACH alone")
            found[table] = alone.stat().st_size - empty.stat().st_size
            alone.unlink()
    empty.unlink()
    return found


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the command's processes, the result). CPU seconds hardly move when
    something else shares the machine; wall seconds do."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(time.perf_counter() - started, 2), round(cpu, 2), done


class InProcessCommands:
    """`airflow ...` and `python -m batchops ...` command lines run by their own CLI code in this process.
    Airflow reads its configuration at import: the environment is set before the first import."""

    def __init__(self, env: dict[str, str]):
        assert "airflow" not in sys.modules, "Airflow was imported before its environment was set"
        os.environ.clear()
        os.environ.update(env)
        from airflow.cli.cli_parser import get_parser

        self.parser = get_parser()

    def _timed(self, call) -> tuple[float, float, int]:
        started, before = time.perf_counter(), cpu_now()
        try:
            call()
            code = 0
        except SystemExit as exit_:  # `dags test` exits 1 when the run failed, as the command does
            code = exit_.code if isinstance(exit_.code, int) else 1
        return round(time.perf_counter() - started, 2), round(cpu_now() - before, 2), code

    def airflow(self, arguments: list[str]) -> tuple[float, float, int]:
        args = self.parser.parse_args(arguments)
        return self._timed(lambda: args.func(args))

    def batchops(self, arguments: list[str]) -> tuple[float, float, int]:
        from batchops.cli import main as batchops_main

        return self._timed(lambda: sys.exit(batchops_main(arguments)))


def cpu_now() -> float:
    """CPU seconds of this process and of the processes it waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_seconds(run_folder: Path) -> dict[str, float]:
    """Seconds of each stage's own work in the run (its logs.jsonl): the data work, apart from Airflow's
    per-run and per-task overhead around it."""
    try:
        events = [json.loads(line) for line in (run_folder / "logs.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return {}
    return {e["stage"]: e["seconds"] for e in events if e.get("event") == "stage_finished" and "seconds" in e}


def stage_total(day: dict) -> float | None:
    """The stages' own seconds of a day's run, apart from Airflow's per-run overhead."""
    return round(sum(day["stage_seconds"].values()), 3) if day.get("stage_seconds") else None


def median_around(days: list[dict], day: int, key: str | Callable[[dict], float | None] = "seconds",
                  width: int = TIME_WIDTH, pipeline: str | None = None) -> float:
    """The median of `key` (a field, or a function of the day) over the days within `width` of `day` (of one
    pipeline's runs, when given)."""
    value = key if callable(key) else (lambda d: d.get(key))
    return statistics.median(value(d) for d in days if abs(d["day"] - day) <= width and value(d)
                             and (pipeline is None or d["pipeline"] == pipeline))


def markdown(results: dict) -> str:
    days = results["days"]
    last = days[-1]
    lines = [f"# A year of daily operation, simulated ({results['started']})", "",
             f"`python scripts/bench_daily.py --days {results['days_requested']} --customers {results['customers']} "
             f"--train-every {results['train_every']} --commands {results.get('commands', 'subprocess')}`; {results['machine']['cpus']} CPUs. One provider "
             "(provider_a's layout, transactions delivered incremental, keyed by transaction_id): the drop of the "
             "first day holds the history, every later drop one day's purchases; the scoring DAG daily, the "
             "training DAG every train_every days, both with `airflow dags test` (by Airflow's CLI code in one process, "
             "`--commands in-process`, unless the command line says subprocess); `python -m batchops prune` after "
             "every day with the shipped retention (_defaults.yaml), and Airflow's records cleaned as prune does "
             "(runs on the simulated clock, their task records on the real one). Each drop is dated 10 minutes "
             "before its run (landed, not being uploaded); the runs the time target compares (around day 30 and "
             "the last day) are each `airflow dags test` in a process of its own.", ""]
    targets = results.get("targets") or {}
    if targets:
        lines += ["| target | measured | |", "|---|---|---|"]
        for row in targets.values():
            lines.append(f"| {row['target']} | {row['measured']} | {'met' if row['met'] else 'NOT met'} |")
        lines.append("")
    if results.get("warehouse_tables_bytes"):
        tables = results["warehouse_tables_bytes"]
        free = days[-1]["warehouse_bytes"] - sum(tables.values())
        lines += [f"The warehouse on day {days[-1]['day']}, each table on its own: "
                  + ", ".join(f"{t} {b / 2**20:.1f} MiB" for t, b in sorted(tables.items(), key=lambda i: -i[1]))
                  + f"; the rest of the file ({max(free, 0) / 2**20:.1f} MiB) is free space. One load of the year's "
                  "transactions: " + ", ".join(f"{t} {b / 2**20:.1f} MiB" for t, b in
                                                sorted(results["one_load_tables_bytes"].items(), key=lambda i: -i[1]))
                  + ".", ""]
    lines += ["| day | date | DAG | seconds | CPU s | outcome | warehouse MiB | runs/ MiB | models MiB | metadata MiB | "
              "landing MiB | transactions rows | features rows | predictions rows |", "|---" * 14 + "|"]
    shown = {1, 2, 7, 8, 30, 60, 90, 120, 180, 240, 300, 365, last["day"]}
    for entry in days:
        if entry["day"] in shown:
            rows = entry["rows"]
            lines.append(f"| {entry['day']} | {entry['date']} | {entry['pipeline']} | {entry['seconds']} | "
                         f"{entry.get('cpu_seconds')} | {entry['outcome']} | {entry['warehouse_bytes'] / 2**20:.1f} | "
                         f"{entry['runs_bytes'] / 2**20:.1f} | {entry['models_bytes'] / 2**20:.1f} | "
                         f"{entry['metadata_bytes'] / 2**20:.1f} | {entry['landing_bytes'] / 2**20:.1f} | "
                         f"{rows.get('transactions', 0):,} | {rows.get('features', 0):,} | "
                         f"{rows.get('predictions', 0):,} |")
    return "\n".join(lines) + "\n"


def targets(results: dict) -> dict:
    days = results["days"]
    by_day = {d["day"]: d for d in days}
    found = {}
    last = days[-1]["day"]
    if last >= 30:
        scoring = "propensity_scoring"
        early, late = median_around(days, 30, pipeline=scoring), median_around(days, last, pipeline=scoring)
        early_cpu = median_around(days, 30, "cpu_seconds", pipeline=scoring)
        late_cpu = median_around(days, last, "cpu_seconds", pipeline=scoring)
        # the stages' own work, apart from Airflow's per-run overhead that dilutes the ratio
        early_stages = median_around(days, 30, stage_total, pipeline=scoring)
        late_stages = median_around(days, last, stage_total, pipeline=scoring)
        found["time"] = {"target": f"day {last} <= 1.2x day 30 in time (the daily scoring run: medians of the "
                                   f"scoring runs within {TIME_WIDTH} days of each, each a process of its own)",
                         "measured": f"wall {late:.1f} s against {early:.1f} s ({late / early:.2f}x); CPU "
                                     f"{late_cpu:.1f} s against {early_cpu:.1f} s ({late_cpu / early_cpu:.2f}x); "
                                     f"the stages alone {late_stages:.2f} s against {early_stages:.2f} s "
                                     f"({late_stages / early_stages:.2f}x)",
                         "met": late <= 1.2 * early}
    if results.get("one_load_bytes"):
        ratio = days[-1]["warehouse_bytes"] / results["one_load_bytes"]
        found["warehouse"] = {"target": "warehouse <= 1.5x one load of the year's transactions",
                              "measured": f"{days[-1]['warehouse_bytes'] / 2**20:.1f} MiB against "
                                          f"{results['one_load_bytes'] / 2**20:.1f} MiB ({ratio:.2f}x)",
                              "met": ratio <= 1.5}
    if last >= 180:
        for name in ("runs_bytes", "models_bytes", "metadata_bytes"):
            start, end = by_day[120][name], days[-1][name]
            found[name] = {"target": f"{name.replace('_bytes', '')} flat once retention starts (day 120 -> {last})",
                           "measured": f"{start / 2**20:.1f} MiB -> {end / 2**20:.1f} MiB", "met": end <= 1.15 * start}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--train-every", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="where the simulation's files go; they are kept after the run for inspection (default: a new folder under the system's temp folder)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--commands", choices=["in-process", "subprocess"], default="in-process",
                        help="run each day's commands by their CLI code in this process (default) or as processes")
    args = parser.parse_args(argv)
    writable_folder(parser, "--results", args.results)
    writable_folder(parser, "--workdir", args.workdir)
    work = Path(tempfile.mkdtemp(prefix="batchops-year-", dir=args.workdir))
    home = work / "home"
    for folder in ("configs", "pipelines", "sql"):
        shutil.copytree(REPO / "include" / folder, home / "include" / folder)
    for name in ("provider_a", "provider_b", "provider_c"):
        (home / "include" / "configs" / f"{name}.yaml").unlink()
    (home / "include" / "configs" / f"{PROVIDER}.yaml").write_text(provider_config(PROVIDER, "incremental"))
    (home / "include" / "configs" / f"{FULL}.yaml").write_text(provider_config(FULL, "snapshot"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHOPS_", "AIRFLOW__"))}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", "BATCHOPS_HOME": str(home),
                "AIRFLOW_HOME": str(work / "airflow_home"), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    in_process = InProcessCommands(env) if args.commands == "in-process" else None
    config_set = load_config_set(home / "include" / "configs", home / "include" / "pipelines", home / "include" / "sql")
    assert not config_set.issues, config_set.issues
    provider = config_set.providers[PROVIDER]
    last_day = START + timedelta(days=args.days - 1)
    history = generate_data.make_history(PROVIDER, args.customers, args.seed, START, last_day)
    results = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "customers": args.customers, "days_requested": args.days, "train_every": args.train_every,
               "commands": args.commands,
               "retention": provider.retention.model_dump(), "workdir": str(work), "days": []}
    day_started: list[datetime] = []
    with Steps("a year of daily operation", args.days) as bar:
        for index in range(args.days):
            day = START + timedelta(days=index)
            day_started.append(datetime.now(UTC))
            drop = generate_data.generate(provider, day, args.customers, args.seed, home / "data",
                                          delivery="incremental", series_start=START, history=history)
            generate_data.landed_earlier(drop.values())  # a daily drop lands before its run
            pipeline = "propensity_model" if index % args.train_every == 0 else "propensity_scoring"
            dag_id = f"{PROVIDER}__{pipeline}"
            dags_test = ["dags", "test", dag_id, day.isoformat(), "--conf", json.dumps({"snapshot_date": day.isoformat()})]
            # the days the time target compares run as a process of their own, as a scheduled run's tasks do:
            # hundreds of runs in one process do not show what grows in that process as growth of the day's run
            fresh_process = not in_process or any(abs(index + 1 - probe) <= TIME_WIDTH for probe in (30, args.days))
            if not fresh_process:
                seconds, cpu_seconds, exit_code = in_process.airflow(dags_test)
            else:
                seconds, cpu_seconds, done = run(["airflow", *dags_test], env)
                exit_code = done.returncode
            run_folder = max((p for p in (home / "runs" / dag_id).iterdir() if not p.name.startswith(".")),
                             key=lambda p: p.stat().st_mtime)
            summary = run_folder / "run_summary.md"
            outcome = summary.read_text().splitlines()[0].removeprefix("# Run summary: ") if summary.exists() else \
                f"no summary (exit {exit_code})"
            prune = ["prune", "--provider", PROVIDER, "--today", day.isoformat(), "--keep-airflow-records"]
            commands = [("batchops", prune)] + [("airflow", c) for c in metadata_cleans(provider, day, index, day_started)]
            prune_seconds, prune_exit = 0.0, 0
            for program, arguments in commands:
                if in_process:
                    seconds_taken, _, code = getattr(in_process, program)(arguments)
                else:
                    seconds_taken, _, done_command = run(
                        [sys.executable, "-m", program, *arguments], env)
                    code = done_command.returncode
                prune_seconds, prune_exit = round(prune_seconds + seconds_taken, 2), prune_exit or code
            warehouse = home / "warehouse"
            entry = {"day": index + 1, "date": day.isoformat(), "pipeline": pipeline, "seconds": seconds,
                     "cpu_seconds": cpu_seconds, "stage_seconds": stage_seconds(run_folder),
                     "outcome": outcome, "prune_seconds": prune_seconds, "prune_exit": prune_exit,
                     "warehouse_bytes": warehouse_bytes(warehouse, PROVIDER),
                     "runs_bytes": folder_bytes(home / "runs"), "models_bytes": folder_bytes(warehouse / "models"),
                     "metadata_bytes": (work / "airflow_home" / "airflow.db").stat().st_size,
                     "landing_bytes": folder_bytes(home / "data" / PROVIDER),
                     "rows": table_rows(warehouse / f"{PROVIDER}.duckdb")}
            entry["process"] = "fresh" if fresh_process else "in-process"
            if outcome != "COMPLETE" and fresh_process:
                entry["error"] = (done.stdout + done.stderr)[-3000:]
            results["days"].append(entry)
            results["targets"] = targets(results)
            write_results(args.results, ["daily_year"], results, markdown(results))
            bar.advance()
    # the comparison: the year's transactions loaded once, as one full extract
    generate_data.generate(config_set.providers[FULL], last_day, args.customers, args.seed, home / "data",
                           delivery="snapshot", series_start=START, history=history)
    for stage in ("ingest", "validate", "load"):
        subprocess.run([sys.executable, "-m", "batchops.bench_stage", stage, FULL, "propensity_scoring",
                        last_day.isoformat(), "one_load"], env=env, check=True, capture_output=True)
    results["one_load_bytes"] = warehouse_bytes(home / "warehouse", FULL)
    results["one_load_rows"] = table_rows(home / "warehouse" / f"{FULL}.duckdb")
    results["warehouse_tables_bytes"] = table_bytes(home / "warehouse" / f"{PROVIDER}.duckdb", work / "sizes")
    results["one_load_tables_bytes"] = table_bytes(home / "warehouse" / f"{FULL}.duckdb", work / "sizes")
    results["targets"] = targets(results)
    write_results(args.results, ["daily_year"], results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
