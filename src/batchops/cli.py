"""`python -m batchops`: validate configs; back up, restore or rebuild a provider's warehouse."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path

from batchops.config import ConfigIssue, load_config_set
from batchops.errors import BatchOpsError
from batchops.settings import Settings


def sql_issues(config_set, settings: Settings) -> list[ConfigIssue]:
    """Every SQL file a pipeline runs, parsed by DuckDB's own parser (no table needs to exist)."""
    import duckdb

    from batchops.config import pipeline_sql_files
    from batchops.sqlsafe import read_sql

    issues = []
    parser = duckdb.connect()
    for pipeline_id, spec in config_set.pipelines.items():
        for field_path, name in pipeline_sql_files(spec).items():
            try:
                parser.extract_statements(read_sql(settings.sql_dir, name))
            except Exception as exc:  # noqa: BLE001 - a parser error is the finding
                reason = " ".join(str(exc).split())
                issues.append(ConfigIssue(str(config_set.pipeline_files[pipeline_id]), field_path,
                                          f"{settings.sql_dir / name} does not parse: {reason}"))
    return issues


def serialization_issues(dag_set) -> list[ConfigIssue]:
    """What the DAG processor does last: serialize each DAG for the scheduler and the UI."""
    from airflow.serialization.serialized_objects import DagSerialization

    issues = []
    for dag_id, dag in dag_set.dags.items():
        try:
            DagSerialization.to_dict(dag)
        except Exception as exc:  # noqa: BLE001 - a refusal of Airflow's is the finding
            issues.append(ConfigIssue(dag_id, "(serialization)", f"{type(exc).__name__}: {exc}"))
    return issues


def validate_command(settings: Settings) -> int:
    """Build every DAG in-process as the DAG processor would, parse every SQL file; report file: field: reason."""
    from batchops.factory import build_dag_set

    dag_set = build_dag_set(settings)
    issues = dag_set.issues + sql_issues(dag_set.config_set, settings) + serialization_issues(dag_set)
    for issue in issues:
        print(issue, file=sys.stderr)
    for warning in dag_set.config_set.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    dags = sorted(dag_id for dag_id in dag_set.dags if not dag_id.startswith("batchops_config_error__"))
    print(f"{len(dag_set.config_set.providers)} provider(s), {len(dag_set.config_set.pipelines)} pipeline(s), "
          f"{len(dags)} DAG(s): {', '.join(dags) or 'none'}")
    if issues:
        files = {issue.file for issue in issues}
        print(f"{len(issues)} problem(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    warned = len(dag_set.config_set.warnings)
    print("all configs are valid" + (f" ({warned} warning(s) above)" if warned else ""))
    return 0


def known_provider(config_set, provider_id: str) -> None:
    """Refuse a provider id that no valid config defines (e.g. ../../x, Provider_A), before any file is touched."""
    from batchops.storage.backup import MaintenanceError

    if provider_id in config_set.providers:
        return
    broken = [file for file, issues in config_set.broken_files.items()
              if any(provider_id in str(issue) for issue in issues) or Path(file).stem == provider_id]
    hint = (f"; its config {broken[0]} has errors: fix it first (python -m batchops validate)" if broken else
            f"; known: {', '.join(sorted(config_set.providers)) or 'none'}")
    raise MaintenanceError(f"--provider {provider_id!r} is not a provider of {config_set_folder(config_set)}{hint}")


def config_set_folder(config_set) -> str:
    files = list(config_set.provider_files.values()) + [Path(f) for f in config_set.broken_files]
    return str(files[0].parent) if files else "the config folder"


def maintenance_command(settings: Settings, args: argparse.Namespace) -> int:
    from batchops.storage import backup as backups
    from batchops.storage.rebuild import rebuild

    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    known_provider(config_set, args.provider)
    exit_code = 0
    if args.command == "backup":
        result = backups.backup(settings, args.provider, args.keep)
        print(f"backed up {args.provider} to {result['backup']} ({result['bytes']:,} bytes, "
              f"{len(result['tables'])} tables, manifest {Path(result['manifest']).name}); removed by retention: "
              f"{', '.join(result['removed']) or 'none'}")
    elif args.command == "restore":
        if args.list:
            for backup in backups.list_backups(settings, args.provider):
                verified = "manifest" if backups.manifest_path(backup).is_file() else "NO MANIFEST: cannot be restored"
                print(f"{backup} ({verified})")
            return 0
        result = backups.restore(settings, args.provider, args.backup)
        print(f"restored {result['warehouse']} from {result['restored_from']} (verified against its manifest: "
              f"{len(result['tables'])} tables, sha256); the replaced file is kept as "
              f"{result['previous_file'] or '(there was none)'}")
    else:
        result = rebuild(settings, config_set, args.provider, args.since, skip=args.skip or (),
                         allow_missing_drops=args.allow_missing_drops)
        loaded = [s for s in result["snapshots"] if s["loaded"]]
        skipped = f" ({len(result['skipped'])} left out by --skip)" if result["skipped"] else ""
        if result["missing_drops_left_out"]:
            skipped += (f" ({len(result['missing_drops_left_out'])} loaded before and gone from the landing folder, "
                        "left out by --allow-missing-drops)")
        print(f"rebuilt {result['warehouse']} from {len(loaded)} of {len(result['snapshots'])} landing drops"
              f"{skipped}; {len(result['models_registered'])} model(s) re-registered; the replaced file is kept as "
              f"{result['previous_file'] or '(there was none)'}")
        exit_code = report_rebuild_problems(result, args.provider)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return exit_code


def report_rebuild_problems(result: dict, provider_id: str) -> int:
    """1 with one line per drop, run folder or model the rebuild could not take, else 0."""
    lines = [f"  drop {r['snapshot_date']}: {r['failed']}" for r in result["failed"]]
    lines += [f"  run folder: {problem}" for problem in result["unreadable_runs"]]
    lines += [f"  model: {reason}" for reason in result["models_skipped"]]
    if not lines:
        return 0
    print(f"batchops rebuild: INCOMPLETE, {len(lines)} thing(s) could not be rebuilt:", file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)
    if result["failed"]:
        skips = " ".join(f"--skip {r['snapshot_date']}" for r in result["failed"])
        print(f"Fix those drops and rebuild again, or leave them out knowingly: python -m batchops rebuild "
              f"--provider {provider_id} {skips}", file=sys.stderr)
    return 1


def prune_command(settings: Settings, args: argparse.Namespace) -> int:
    """What retention removes for each provider (or one), and why; --dry-run only says it."""
    from datetime import UTC, datetime

    from batchops.storage.retention import apply_prune, backup_before_prune, plan_prune

    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    if args.provider:
        known_provider(config_set, args.provider)
    providers = [args.provider] if args.provider else sorted(config_set.providers)
    today = args.today or datetime.now(UTC).date()
    total = 0
    for provider_id in providers:
        backed_up = None if args.dry_run else backup_before_prune(settings, config_set, provider_id)
        plan = plan_prune(settings, config_set, provider_id, today, args.airflow_before)
        print(f"{provider_id} ({'dry run, nothing removed' if args.dry_run else 'pruning'}, today {today}):")
        if backed_up:
            print(f"  {backed_up}")
        for removal in plan.removals:
            print(f"  {removal.line()}")
        if not args.dry_run:
            done = apply_prune(settings, plan, airflow_records=not args.keep_airflow_records)
            total += done["bytes"]
            compacted = done["compacted"]
            if compacted and compacted["compacted"]:
                print(f"  compacted the warehouse file: {compacted['bytes_before'] / (1 << 20):,.1f} MiB -> "
                      f"{compacted['bytes_after'] / (1 << 20):,.1f} MiB")
            records = done["airflow_records"]
            if records and records["returncode"] != 0:
                print(f"  airflow db clean failed ({records['returncode']}): {records['output'][-500:]}", file=sys.stderr)
                return 1
    if not args.dry_run:
        print(f"removed {total / (1 << 20):,.1f} MiB of run folders, models and warehouse free space")
    return 0


def predictions_command(settings: Settings, args: argparse.Namespace) -> int:
    """Every kept day's predictions (the latest scoring run of each snapshot) in one Parquet or CSV file."""
    import os

    import duckdb

    from batchops.storage.rebuild import prediction_files

    if args.since and args.until and args.since > args.until:
        raise BatchOpsError(f"--from {args.since} is after --to {args.until}; give the earlier date first")
    out = args.out.expanduser().absolute()
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise BatchOpsError(f"--out {args.out}: name a .parquet or .csv file")
    if not out.parent.is_dir():
        raise BatchOpsError(f"--out {args.out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise BatchOpsError(f"--out {args.out} is a folder; name a file in it")
    for owned in (settings.runs_dir, settings.warehouse_dir):
        if out.resolve().is_relative_to(owned.resolve()):  # the file would replace a run's own predictions
            raise BatchOpsError(f"--out {args.out} is inside {owned}, which BatchOps writes; name a file elsewhere")
    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    known_provider(config_set, args.provider)
    found = prediction_files(settings, config_set.providers[args.provider], args.since, args.until)
    if not found:
        raise BatchOpsError(f"no predictions of {args.provider} between {args.since or 'the first run'} and "
                            f"{args.until or 'today'} in {settings.runs_dir} (run folders are kept run_days)")
    partial = out.with_name(f".{out.name}.partial")
    with duckdb.connect() as con:
        rows = con.read_parquet([str(path) for _, path in found.values()], union_by_name=True)
        count = rows.aggregate("count(*)").fetchall()[0][0]
        ordered = rows.order("snapshot_date, customer_id")
        (ordered.write_parquet if out.suffix.lower() == ".parquet" else ordered.write_csv)(str(partial))
    os.replace(partial, out)  # a reader never meets half a file
    print(f"wrote {count:,} predictions of {len(found)} snapshot(s), {min(found)} to {max(found)}, to {out} "
          f"(each the latest scoring run of its date: {', '.join(run for run, _ in list(found.values())[-3:])}"
          f"{', ...' if len(found) > 3 else ''})")
    return 0


def check_worker_command(settings: Settings) -> int:
    """The oversubscription warning a worker prints at start-up; exit 0 either way (a warning, not a refusal)."""
    import os

    from airflow.configuration import conf

    from batchops.settings import oversubscription

    slots = conf.getint("celery", "worker_concurrency", fallback=16)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    problem = oversubscription(slots, settings.duckdb_threads, cores)
    if problem:
        print(f"batchops check-worker: WARNING: {problem}", file=sys.stderr)
    else:
        print(f"batchops check-worker: {slots} slots x {settings.duckdb_threads or cores} DuckDB threads fit "
              f"{cores} cores")
    return 0


def positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 1 or more (the newest backups to keep, "
                                         "the new one included)")
    return value


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD") from None


def sync_roles_command(settings: Settings) -> int:
    from batchops.access import roles_of, sync_roles
    from batchops.config import load_config_set

    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    if config_set.issues:
        print(f"batchops sync-roles: the configs have errors; fix them first (python -m batchops validate): "
              f"{config_set.issues[0]}", file=sys.stderr)
        return 1
    try:
        done = sync_roles(roles_of(config_set))
    except ImportError as exc:
        print(f"batchops sync-roles: the FAB auth manager is not installed ({exc}); it is in requirements.txt "
              "(apache-airflow-providers-fab)", file=sys.stderr)
        return 1
    print("\n".join(done))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchops", description=__doc__)
    parser.add_argument("--home", type=Path, help="project folder (default: BATCHOPS_HOME or the current folder)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="validate every provider and pipeline config")
    backup = commands.add_parser("backup", help="copy a provider's warehouse to warehouse/backups/<provider>/")
    backup.add_argument("--keep", type=positive_count, help="backups to keep, 1 or more (default "
                                                            "BATCHOPS_BACKUP_RETENTION, 7)")
    restore = commands.add_parser("restore", help="replace a provider's warehouse by a backup (default: newest)")
    restore.add_argument("--backup", type=Path, help="the backup file (see --list)")
    restore.add_argument("--list", action="store_true", help="list the provider's backups, oldest first")
    rebuild = commands.add_parser("rebuild", help="rebuild a provider's warehouse from its landing drops")
    rebuild.add_argument("--from", dest="since", type=iso_date, help="leave out drops before this date (YYYY-MM-DD)")
    rebuild.add_argument("--skip", action="append", type=iso_date, metavar="DATE",
                         help="leave out the drop of this date (YYYY-MM-DD); repeat for several")
    rebuild.add_argument("--allow-missing-drops", action="store_true",
                         help="rebuild even though drops the warehouse loaded are gone from the landing folder "
                              "(their rows will be missing); without it such a rebuild is refused")
    prune = commands.add_parser("prune", help="remove what retention no longer keeps (rows, run folders, models, "
                                              "Airflow's records), saying why; --dry-run only lists it")
    prune.add_argument("--provider", help="one provider_id (default: every provider)")
    prune.add_argument("--dry-run", action="store_true", help="print what would go and why; remove nothing")
    prune.add_argument("--today", type=iso_date, help="the day windows count back from (default: today, UTC)")
    prune.add_argument("--airflow-before", type=datetime.fromisoformat,
                       help="remove Airflow's records from before this time (default: now - airflow_metadata_days)")
    prune.add_argument("--keep-airflow-records", action="store_true", help="leave Airflow's metadata database alone")
    history = commands.add_parser("predictions", help="every kept day's predictions (the latest scoring run of each "
                                                      "date, from runs/) in one .parquet or .csv file")
    history.add_argument("--provider", required=True, help="provider_id")
    history.add_argument("--from", dest="since", type=iso_date, help="first snapshot date (YYYY-MM-DD)")
    history.add_argument("--to", dest="until", type=iso_date, help="last snapshot date (YYYY-MM-DD)")
    history.add_argument("--out", required=True, type=Path, help="the file to write: .parquet or .csv")
    commands.add_parser("sync-roles", help="create the Airflow (FAB) roles the providers' access_roles name, each "
                                           "seeing only its providers' DAGs (run where `airflow` runs, after db migrate)")
    commands.add_parser("check-worker", help="warn when worker concurrency x DuckDB threads exceeds the cores "
                                             "(run before `airflow celery worker`)")
    for command in (backup, restore, rebuild):
        command.add_argument("--provider", required=True, help="provider_id")
        command.add_argument("--json", action="store_true", help="also print the full result as JSON")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(default_home=args.home)
    except ValueError as exc:
        print(f"batchops: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        return validate_command(settings)
    if args.command == "check-worker":
        return check_worker_command(settings)
    if args.command == "sync-roles":
        return sync_roles_command(settings)
    command = {"predictions": predictions_command, "prune": prune_command}.get(args.command, maintenance_command)
    try:
        return command(settings, args)
    except BatchOpsError as exc:
        print(f"batchops {args.command}: {exc}", file=sys.stderr)
        return 1
