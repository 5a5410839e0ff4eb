"""Benchmark harness: BatchOps against the shared anchors, on the same files, in the same run.

    python scripts/bench.py [--sizes S,M] [--results benchmarks/results] [--memory-limit 1GB] [--next-day-repeats 3]

Per size it generates data with ../shared/bench/gen_scale.py, runs the anchors (floor.py,
duckdb_ideal.py, pandas_baseline.py), runs the real propensity_model DAG through `airflow dags
test` (orchestration included) and every stage alone in its own process, and records wall time
and peak RSS (wait4's ru_maxrss: the largest process of each command's tree). It also times the
parsing of 200 DAGs (100 providers x 2 pipelines) in a fresh process. Results: a JSON file and a
Markdown table under --results, the JSON also as latest.json.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse
import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import generate_data
from batchops.progress import Steps

REPO = Path(__file__).resolve().parents[1]
def _shared_bench() -> Path:
    """The shared anchors: BATCHOPS_SHARED_BENCH, else shared/bench beside the checkout (as in CI)."""
    if os.environ.get("BATCHOPS_SHARED_BENCH"):
        return Path(os.environ["BATCHOPS_SHARED_BENCH"])
    candidates = [REPO.parent / "shared" / "bench", Path("/work/shared/bench")]
    return next((c for c in candidates if (c / "gen_scale.py").exists()), candidates[0])


SHARED_BENCH = _shared_bench()
SIZES = {"tiny": (20_000, 400_000), "S": (100_000, 2_000_000), "M": (1_000_000, 20_000_000),
         "L": (3_000_000, 60_000_000)}
SNAPSHOT = "2026-02-01"  # the anchors' snapshot; horizon 30 days as in pandas_baseline.py
STAGES = ["plan", "ingest", "validate", "load", "build_features", "train", "score"]
DATA_STAGES = ["ingest", "validate", "load", "build_features"]


def measure(command: list[str], env: dict[str, str], timeout: float = 3600) -> dict:
    """Run `command` from a helper process so that its RUSAGE_CHILDREN maximum belongs to this command only."""
    helper = (
        "import json, resource, subprocess, sys, time\n"
        "started = time.perf_counter()\n"
        "done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)\n"
        "seconds = time.perf_counter() - started\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "rss, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime\n"
        "print(json.dumps({'seconds': seconds, 'rss_kib': rss, 'cpu': cpu, 'code': done.returncode, 'stdout': done.stdout,"
        " 'stderr': done.stderr[-6000:]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", helper, json.dumps(command)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result['code']}):\n{result['stdout'][-2000:]}\n"
                           f"{result['stderr']}")
    return {"seconds": round(result["seconds"], 2), "cpu_seconds": round(result["cpu"], 2),
            "peak_rss_gib": round(result["rss_kib"] / 2**20, 3), "stdout": result["stdout"]}


def last_json_line(text: str) -> dict:
    """The anchors print one dict: JSON (duckdb_ideal, pandas_baseline) or a Python repr (floor)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return ast.literal_eval(line)
    return {}


def bench_env(root: Path, memory_limit: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHOPS_", "AIRFLOW__"))}
    env.update({
        # the `airflow` command of this interpreter's venv, also when the venv is not activated
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "BATCHOPS_HOME": str(REPO), "BATCHOPS_CONFIG_DIR": str(REPO / "benchmarks" / "configs"),
        "BATCHOPS_DATA_DIR": str(root / "data"), "BATCHOPS_RUNS_DIR": str(root / "runs"),
        "BATCHOPS_WAREHOUSE_DIR": str(root / "warehouse"), "AIRFLOW_HOME": str(root / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    })
    if memory_limit:
        env["BATCHOPS_DUCKDB_MEMORY_LIMIT"] = memory_limit
    return env


def dag_test(root: Path, env: dict[str, str], dag_id: str, snapshot: str) -> tuple[dict, Path, list[dict]]:
    """`airflow dags test` of `dag_id` for `snapshot`, measured; the result gets the stages' own seconds from
    the run's logs.jsonl. Also returns the run's folder and its events."""
    result = measure(["airflow", "dags", "test", dag_id, snapshot, "--conf", json.dumps({"snapshot_date": snapshot})],
                     env)
    result.pop("stdout")
    run_folder = sorted(p for p in (root / "runs" / dag_id).iterdir() if not p.name.startswith("."))[-1]
    events = [json.loads(line) for line in (run_folder / "logs.jsonl").read_text().splitlines()]
    result["stage_seconds"] = {e["stage"]: e["seconds"] for e in events if e["event"] == "stage_finished"}
    return result, run_folder, events


def summary_line(run_folder: Path) -> str:
    return (run_folder / "run_summary.md").read_text().splitlines()[0]


STEPS_PER_SIZE = 7 + len(STAGES)  # generate, three anchors, the two DAGs, the next day, every stage alone
NEXT_DAY = "2026-02-02"


def next_day_runs(root: Path, env: dict[str, str], data: Path, repeats: int = 3) -> dict:
    """The scoring DAG on the next day's drop, delivered as a full extract (provider benchmark, snapshot) and as
    one day's increment (provider benchmark_daily, transactions incremental), both from the state the day
    before left. The day's purchases: the snapshot's last day again, under new ids, dated the snapshot.
    Each is run `repeats` times, alternating, every run from that same state; the median run is reported
    (identical runs of the increment spread over 21-27 s at M on one machine)."""
    import duckdb

    full, increment = root / "data" / "benchmark" / NEXT_DAY, root / "data" / "benchmark_daily" / NEXT_DAY
    for folder in (full, increment):
        folder.mkdir(parents=True)
        shutil.copy(data / "customers.csv", folder / "customers.csv")
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE day AS SELECT 'N' || substr(transaction_id, 2) AS transaction_id, customer_id, "
                    f"DATE '{SNAPSHOT}' AS txn_date, amount, channel FROM read_csv('{data}/transactions.csv') "
                    f"WHERE txn_date = DATE '{SNAPSHOT}' - 1")
        day_rows = con.execute("SELECT count(*) FROM day").fetchone()[0]
        con.execute(f"COPY (SELECT * FROM read_csv('{data}/transactions.csv') UNION ALL SELECT * FROM day) "
                    f"TO '{full}/transactions.csv' (HEADER)")
        con.execute(f"COPY day TO '{increment}/transactions.csv' (HEADER)")
    generate_data.landed_earlier([*full.iterdir(), *increment.iterdir()])
    # the daily provider starts from the state the benchmark provider reached on the snapshot
    warehouse, state = root / "warehouse", root / "next_day_state"
    state.mkdir()
    shutil.copy(warehouse / "benchmark.duckdb", warehouse / "benchmark_daily.duckdb")
    shutil.copytree(warehouse / "models" / "benchmark", warehouse / "models" / "benchmark_daily")
    kinds = {"benchmark": "full_extract", "benchmark_daily": "increment"}
    for provider in kinds:
        shutil.copy(warehouse / f"{provider}.duckdb", state / f"{provider}.duckdb")
    measured: dict[str, list[dict]] = {kind: [] for kind in kinds.values()}
    for _ in range(repeats):
        for provider, kind in kinds.items():
            shutil.copy(state / f"{provider}.duckdb", warehouse / f"{provider}.duckdb")
            result, run_folder, _ = dag_test(root, env, f"{provider}__propensity_scoring", NEXT_DAY)
            result["outcome"] = summary_line(run_folder)
            result["warehouse_mib"] = round((warehouse / f"{provider}.duckdb").stat().st_size / 2**20, 1)
            measured[kind].append(result)
    shutil.rmtree(state)
    runs: dict = {}
    for kind, results in measured.items():
        median = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
        runs[kind] = {**median, "runs_seconds": [r["seconds"] for r in results],
                      "outcomes": sorted({r["outcome"] for r in results})}
    runs["day_rows"] = day_rows
    runs["repeats"] = repeats
    runs["increment_vs_full"] = round(runs["increment"]["seconds"] / runs["full_extract"]["seconds"], 3)
    return runs


DROP_STAGES = ("ingest", "validate", "load")  # the stages whose work is the drop's rows; the rest is per customer


def next_day_shares(daily: dict, target: float = 0.35) -> str:
    """Where each next-day run's time goes, and what the target would need: time off the parts both runs
    share (Airflow, the stages over every customer) lowers both, so it must exceed the gap divided by 1 - target."""
    parts = []
    for kind in ("increment", "full_extract"):
        run = daily[kind]
        stages = run["stage_seconds"]
        drop = sum(stages.get(stage, 0) for stage in DROP_STAGES)
        customers = sum(v for k, v in stages.items() if k not in DROP_STAGES)
        parts.append(f"{kind.replace('_', ' ')}: Airflow {run['seconds'] - sum(stages.values()):.2f} s, "
                     f"the drop's rows (ingest, validate, load) {drop:.2f} s, every customer (build_features, score, "
                     f"the rest) {customers:.2f} s")
    increment, full = daily["increment"]["seconds"], daily["full_extract"]["seconds"]
    needed = (increment - target * full) / (1 - target)
    verdict = (f"{target}x would need {needed:.2f} s off the parts both runs share"
               if needed > 0 else f"within {target}x")
    return "; ".join(parts) + f"; {verdict}"


def events_tasks(events: list[dict]) -> set[str]:
    """The tasks that logged to the run's logs.jsonl (plan ... summarize)."""
    return {e["stage"] for e in events if e.get("event") == "stage_finished"}


def bench_size(name: str, root: Path, memory_limit: str | None, bar: Steps | None = None,
               next_day_repeats: int = 3) -> dict:
    customers, transactions = SIZES[name]
    step = bar.advance if bar else (lambda steps=1: None)
    env = bench_env(root, memory_limit)
    data = root / "data" / "benchmark" / SNAPSHOT
    python = sys.executable
    generated = measure([python, str(SHARED_BENCH / "gen_scale.py"), str(data), "--customers", str(customers),
                         "--transactions", str(transactions)], env)
    step()
    csv_mib = sum(p.stat().st_size for p in data.glob("*.csv")) / 2**20
    anchors = {
        "floor": measure([python, str(SHARED_BENCH / "floor.py"), str(data)], env),
        "duckdb_ideal": measure([python, str(SHARED_BENCH / "duckdb_ideal.py"), str(data), SNAPSHOT], env),
        "pandas_baseline": measure([python, str(SHARED_BENCH / "pandas_baseline.py"), str(data), SNAPSHOT, "30"], env),
    }
    step(3)
    for anchor in anchors.values():
        anchor["result"] = last_json_line(anchor.pop("stdout")) or None
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    dag, dag_run, events = dag_test(root, env, "benchmark__propensity_model", SNAPSHOT)
    step()
    metrics = json.loads((dag_run / "metrics.json").read_text())
    summary = summary_line(dag_run)
    # what Airflow itself costs: the dags test wall time minus the time inside our stages
    dag["orchestration_seconds"] = round(dag["seconds"] - sum(dag["stage_seconds"].values()), 2)
    dag["tasks"] = len(events_tasks(events))
    # the daily scoring pipeline on the same drop, with the model the run above approved
    scoring, scoring_run, _ = dag_test(root, env, "benchmark__propensity_scoring", SNAPSHOT)
    scoring["outcome"] = summary_line(scoring_run)
    step()
    daily = next_day_runs(root, env, data, next_day_repeats)
    step()
    # every stage alone, in its own process, on a fresh warehouse
    shutil.rmtree(root / "warehouse", ignore_errors=True)
    alone = {}
    for stage in STAGES:
        result = measure([python, "-m", "batchops.bench_stage", stage, "benchmark", "propensity_model", SNAPSHOT,
                          "bench_alone"], env)
        result.pop("stdout")
        alone[stage] = result
        step()
    pandas_seconds = anchors["pandas_baseline"]["seconds"]
    ideal_seconds = anchors["duckdb_ideal"]["seconds"]
    data_stage_seconds = sum(alone[s]["seconds"] for s in DATA_STAGES)
    return {
        "customers": customers, "transactions": transactions, "csv_mib": round(csv_mib, 1),
        "generate_seconds": generated["seconds"], "anchors": anchors, "dag": dag, "dag_outcome": summary,
        "scoring_dag": scoring,
        "next_day": daily,
        "stages_alone": alone,
        "dag_vs_pandas": round(dag["seconds"] / pandas_seconds, 3),
        "data_stages_seconds": round(data_stage_seconds, 2),
        "data_stages_vs_duckdb_ideal": round(data_stage_seconds / ideal_seconds, 3),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in alone.values()),
        "dag_process_peak_rss_gib": dag["peak_rss_gib"],
        # the score task inside the DAG (model load, features, predict, checks, publish), measured where the
        # snapshot has 1M customers; the process-alone figure adds Python and library start-up
        "score_task_seconds": dag["stage_seconds"].get("score"),
        "score_alone_process_seconds": alone["score"]["seconds"],
        "score_seconds_1m": dag["stage_seconds"].get("score") if customers == 1_000_000 else None,
        "roc_auc": round(metrics["roc_auc"], 4),
        "baseline_roc_auc": (anchors["pandas_baseline"]["result"] or {}).get("train_auc"),
    }


PARSE_PROFILE_ROWS = 12


def parse_dags(root: Path, providers: int) -> dict:
    """`providers` provider configs x 2 pipelines, parsed by DagBag in a fresh process: wall and CPU seconds, and
    (in a second fresh process, under cProfile) the calls that take the time."""
    configs = root / f"configs_{providers}"
    configs.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "include" / "configs" / "_defaults.yaml", configs / "_defaults.yaml")
    template = (REPO / "include" / "configs" / "provider_a.yaml").read_text()
    for i in range(providers):
        (configs / f"provider_{i:04d}.yaml").write_text(template.replace("provider_id: provider_a",
                                                                         f"provider_id: provider_{i:04d}"))
    env = {**bench_env(root, None), "BATCHOPS_CONFIG_DIR": str(configs), "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600"}
    probe = ("import json, sys, time\nfrom airflow.dag_processing.dagbag import DagBag\n"
             "started, cpu = time.perf_counter(), time.process_time(); bag = DagBag(sys.argv[1])\n"
             "print(json.dumps({'seconds': time.perf_counter() - started, 'cpu_seconds': time.process_time() - cpu,"
             " 'dags': len(bag.dags), 'errors': len(bag.import_errors)}))")

    def parse_in_a_fresh_process(parse_env: dict[str, str]) -> dict:
        done = subprocess.run([sys.executable, "-c", probe, str(REPO / "dags")], env=parse_env, check=True,
                              capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = parse_in_a_fresh_process(env)
    # what each task's parse costs: Airflow names the task's DAG in the parsing context
    result["task_parse"] = parse_in_a_fresh_process({**env, "_AIRFLOW_PARSING_CONTEXT_DAG_ID":
                                                     "provider_0000__propensity_scoring",
                                                     "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "score"})
    profiled = ("import cProfile, json, pstats, sys\nfrom airflow.dag_processing.dagbag import DagBag\n"
                "profile = cProfile.Profile(); profile.enable(); DagBag(sys.argv[1]); profile.disable()\n"
                "stats = pstats.Stats(profile); total = stats.total_tt\n"
                "rows = sorted(((v[3], f'{k[0].split(\"site-packages/\")[-1].split(\"/src/\")[-1]}:{k[1]}({k[2]})')"
                " for k, v in stats.stats.items()), reverse=True)\n"
                "print(json.dumps([[name, round(cum / total, 3)] for cum, name in rows[:60]]))")
    shares = json.loads(subprocess.run([sys.executable, "-c", profiled, str(REPO / "dags")], env=env, check=True,
                                       capture_output=True, text=True).stdout.strip().splitlines()[-1])
    wanted = ("factory.py", "apply_defaults", "param.py", "jsonschema/validators.py:1265", "copy.py:128",
              "load_config_set", "yaml/__init__.py", "dag.py", "python.py", "check_like")
    result["profile_share_of_total"] = [row for row in shares if any(w in row[0] for w in wanted)][:PARSE_PROFILE_ROWS]
    return result


def machine() -> dict:
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1] if Path("/proc/meminfo").exists() else "?"
    return {"cpus": os.cpu_count(), "memory_gib": round(int(memory) / 2**20, 1) if memory != "?" else None,
            "python": platform.python_version(), "platform": platform.platform()}


def markdown(results: dict) -> str:
    lines = [f"# BatchOps benchmark, {results['started']}", "",
             f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB; "
             f"DuckDB memory_limit {results['duckdb_memory_limit']}.", "",
             "| size | rows (customers / transactions) | CSV MiB | pandas baseline s | duckdb_ideal s | floor s | "
             "DAG s (dags test) | data stages s | DAG / pandas (target ≤ 0.4) | data stages / ideal (≤ 1.5) | "
             "peak RSS GiB per stage (≤ 2) | pandas peak RSS GiB | score task s at 1M (≤ 3) | ROC-AUC holdout | "
             "baseline train AUC |",
             "|---" * 15 + "|"]
    for name, size in results["sizes"].items():
        anchors = size["anchors"]
        lines.append(
            f"| {name} | {size['customers']:,} / {size['transactions']:,} | {size['csv_mib']} | "
            f"{anchors['pandas_baseline']['seconds']} | {anchors['duckdb_ideal']['seconds']} | "
            f"{anchors['floor']['seconds']} | {size['dag']['seconds']} | {size['data_stages_seconds']} | "
            f"{size['dag_vs_pandas']} | {size['data_stages_vs_duckdb_ideal']} | {size['peak_rss_gib']} | "
            f"{anchors['pandas_baseline']['peak_rss_gib']} | {size['score_seconds_1m'] or '-'} | {size['roc_auc']} | "
            f"{size['baseline_roc_auc']} |")
    lines += ["", "Orchestration and the scoring pipeline (airflow dags test, same drop):", ""]
    for name, size in results["sizes"].items():
        dag, scoring = size["dag"], size.get("scoring_dag")
        lines.append(f"- {name}: propensity_model {dag['seconds']} s ({dag.get('cpu_seconds')} CPU-s), of which "
                     "Airflow (parsing, serialization, task start-up; wall minus the stages' own time) "
                     f"{dag.get('orchestration_seconds')} s")
        if scoring:
            lines.append(f"- {name}: propensity_scoring {scoring['seconds']} s ({scoring.get('cpu_seconds')} CPU-s), "
                         f"peak RSS {scoring['peak_rss_gib']} GiB; "
                         "stages " + ", ".join(f"{k} {v} s" for k, v in scoring["stage_seconds"].items()))
    lines += ["", "The next day (scoring DAG, the state of the snapshot before it; target: increment <= 0.35x the full "
                  "extract):", ""]
    for name, size in results["sizes"].items():
        daily = size.get("next_day")
        if daily:
            for kind in ("full_extract", "increment"):
                run = daily[kind]
                spread = (f" (median of {len(run['runs_seconds'])}: "
                          + ", ".join(f"{s} s" for s in run["runs_seconds"]) + ")") if "runs_seconds" in run else ""
                lines.append(f"- {name} {kind.replace('_', ' ')}: {run['seconds']} s{spread}, {run['outcome']}; "
                             "stages of that run " + ", ".join(f"{k} {v} s" for k, v in run["stage_seconds"].items()))
            lines.append(f"- {name}: increment / full extract = {daily['increment_vs_full']} "
                         f"({daily['day_rows']:,} purchases in the day)")
            lines.append(f"- {name}: " + next_day_shares(daily))
    lines += ["", "Per stage (each alone in its own process: seconds / peak RSS GiB):", ""]
    for name, size in results["sizes"].items():
        cells = ", ".join(f"{stage} {r['seconds']} s / {r['peak_rss_gib']}" for stage, r in size["stages_alone"].items())
        lines.append(f"- {name}: {cells}")
        lines.append(f"- {name} inside the DAG run: " + ", ".join(f"{k} {v} s" for k, v in
                                                                  size["dag"]["stage_seconds"].items()))
    for providers, parse in sorted((results.get("parse") or {}).items(), key=lambda item: int(item[0])):
        lines += ["", f"Parsing {providers} providers x 2 pipelines: {parse['dags']} DAGs in {parse['seconds']:.2f} s "
                      f"({parse['cpu_seconds']:.2f} CPU-s, {parse['seconds'] / max(parse['dags'], 1) * 1000:.1f} ms "
                      f"per DAG) in a fresh process, {parse['errors']} import errors. Share of the time under "
                      "cProfile: " + ", ".join(f"{name} {share:.0%}" for name, share in parse["profile_share_of_total"])]
        if "task_parse" in parse:
            task = parse["task_parse"]
            lines += ["", f"A task's parse at {providers} providers (its DAG in Airflow's parsing context): "
                          f"{task['dags']} DAGs in {task['seconds']:.2f} s ({task['cpu_seconds']:.2f} CPU-s)."]
    return "\n".join(lines) + "\n"


def writable_folder(parser: argparse.ArgumentParser, option: str, folder: Path | None) -> None:
    """Create an output folder before a run of many minutes, not after it: a parser error naming it if it cannot."""
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create {option} {folder}: {exc}; give a folder this user can write")


def write_results(folder: Path, names: list[str], results: dict, text: str) -> None:
    """results as <name>.json and its Markdown as <name>.md, for each name."""
    for name in names:
        (folder / f"{name}.json").write_text(json.dumps(results, indent=2))
        (folder / f"{name}.md").write_text(text)


def stamp(started: str) -> str:
    """A results file's time stamp from the ISO time a run started."""
    return started.replace(":", "").replace("-", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="S,M")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--memory-limit", default="1GB", help="BATCHOPS_DUCKDB_MEMORY_LIMIT for the runs")
    parser.add_argument("--workdir", type=Path, help="where data, runs and warehouses go (default: a temp folder)")
    parser.add_argument("--parse-providers", default="100,1000", type=lambda text: [int(v) for v in text.split(",") if v],
                        help="provider counts of the DAG parse measurement (2 DAGs each)")
    parser.add_argument("--next-day-repeats", type=int, default=3,
                        help="runs of each next-day scoring DAG (full extract, increment); the median is reported")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {list(SIZES)}")
    if args.next_day_repeats < 1:
        parser.error(f"--next-day-repeats {args.next_day_repeats}: give 1 or more runs")
    if not (SHARED_BENCH / "gen_scale.py").exists():
        parser.error(f"the shared anchors are not at {SHARED_BENCH}; set BATCHOPS_SHARED_BENCH")
    if args.workdir:
        try:
            args.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"cannot create --workdir {args.workdir}: {exc}; give a folder on a disk with room for "
                         "the data (about 3 GB at L) that this user can write")
    writable_folder(parser, "--results", args.results)
    results = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "duckdb_memory_limit": args.memory_limit, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="batchops-bench-", dir=args.workdir) as work:
        with Steps("benchmark", len(sizes) * STEPS_PER_SIZE) as bar:
            for name in sizes:
                bar.describe(f"size {name}")
                results["sizes"][name] = bench_size(name, Path(work) / name, args.memory_limit, bar,
                                                      args.next_day_repeats)
        results["parse"] = {str(count): parse_dags(Path(work) / "parse", count) for count in args.parse_providers}
    # a parse-only run (--sizes '') must not replace the latest sizes' figures
    prefix, latest = ("bench", "latest") if sizes else ("parse", "parse_latest")
    write_results(args.results, [f"{prefix}_{stamp(results['started'])}", latest], results, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
