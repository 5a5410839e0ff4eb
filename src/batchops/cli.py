"""`python -m batchops validate`: check every provider and pipeline file, print `file: field: reason`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batchops.config import load_config_set
from batchops.settings import Settings


def validate_command(settings: Settings) -> int:
    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    for issue in config_set.issues:
        print(issue, file=sys.stderr)
    pairs = config_set.dag_pairs()
    print(f"{len(config_set.providers)} provider(s), {len(config_set.pipelines)} pipeline(s), "
          f"{len(pairs)} DAG(s): {', '.join(f'{p.provider_id}__{q.pipeline_id}' for p, q in pairs) or 'none'}")
    if config_set.issues:
        print(f"{len(config_set.issues)} problem(s) in {len(config_set.broken_files)} file(s)", file=sys.stderr)
        return 1
    print("all configs are valid")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchops", description=__doc__)
    parser.add_argument("--home", type=Path, help="project folder (default: BATCHOPS_HOME or the current folder)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="validate every provider and pipeline config")
    args = parser.parse_args(argv)
    settings = Settings.from_env(default_home=args.home)
    if args.command == "validate":
        return validate_command(settings)
    return 2
