"""Synthetic provider drops with a planted signal, written in each provider's own layout.

Each customer has a purchase rate; some customers churn (their rate drops to a tenth) at a random
date. Future activity therefore depends on recency and frequency, so a model can learn something
real. Files follow the provider config: its column names, delimiter and date format.

    python scripts/generate_data.py --provider provider_a --snapshot-date 2026-02-01 [--customers N]
        [--seed S] [--defect duplicate_keys|missing_column|null_heavy] [--history-days D]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)

import argparse
import os
import sys
import zlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from batchops.artifacts import write_with
from batchops.config import DEFAULTS_FILE_NAME, ProviderConfig, load_provider_file
from batchops.progress import Steps
from batchops.scansim import render_table_pdf
from batchops.settings import Settings
from batchops.yaml_loader import read_yaml_file

HISTORY_DAYS = 730
DEFECTS = ("duplicate_keys", "missing_column", "null_heavy")


def make_customers(rng: np.random.Generator, count: int, snapshot: date) -> pd.DataFrame:
    signup_offsets = rng.integers(1, 3 * 365, size=count)
    age = rng.integers(18, 81, size=count).astype("float64")
    age[rng.random(count) < 0.04] = np.nan
    return pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(1, count + 1)],
        "signup_date": [snapshot - timedelta(days=int(d)) for d in signup_offsets],
        "region": rng.choice(["north", "south", "east", "west"], size=count),
        "segment": rng.choice(["retail", "smb", "enterprise"], size=count, p=[0.6, 0.3, 0.1]),
        "age": age,
    })


def make_transactions(rng: np.random.Generator, customers: pd.DataFrame, snapshot: date,
                      history_days: int = HISTORY_DAYS) -> pd.DataFrame:
    """Poisson purchases per customer: rate r before its churn day, r/10 after it."""
    count = len(customers)
    segment_boost = customers["segment"].map({"retail": 1.0, "smb": 1.3, "enterprise": 1.6}).to_numpy()
    rate = rng.gamma(shape=0.9, scale=0.06, size=count) * segment_boost
    start_offset = np.minimum(np.array([(snapshot - d).days for d in customers["signup_date"]]), history_days)
    churns = rng.random(count) < 0.45
    churn_offset = np.where(churns, rng.integers(0, history_days, size=count), -1)  # days before snapshot
    churn_offset = np.minimum(churn_offset, start_offset)
    active_days = np.where(churns, start_offset - churn_offset, start_offset)
    quiet_days = np.where(churns, churn_offset, 0)
    active_n = rng.poisson(rate * active_days)
    quiet_n = rng.poisson(rate * 0.1 * quiet_days)
    owner = np.concatenate([np.repeat(np.arange(count), active_n), np.repeat(np.arange(count), quiet_n)])
    # offsets (days before snapshot, >= 1): active period is (churn, start], quiet period is [1, churn]
    active_offsets = churn_offset.clip(min=0)[np.repeat(np.arange(count), active_n)] + 1 + np.floor(
        rng.random(active_n.sum()) * np.repeat(np.maximum(active_days, 1), active_n)).astype(int)
    quiet_offsets = 1 + np.floor(rng.random(quiet_n.sum()) * np.repeat(np.maximum(quiet_days, 1), quiet_n)).astype(int)
    offsets = np.concatenate([active_offsets, quiet_offsets])
    order = np.lexsort((offsets, owner))
    owner, offsets = owner[order], offsets[order]
    base = np.datetime64(snapshot.isoformat())
    amounts = np.round(rng.lognormal(mean=3.4, sigma=0.8, size=len(owner)) * segment_boost[owner], 2)
    channel = rng.choice(np.array(["web", "store", "app"], dtype=object), size=len(owner), p=[0.5, 0.3, 0.2])
    channel[rng.random(len(owner)) < 0.01] = None
    return pd.DataFrame({
        "transaction_id": [f"T{i:09d}" for i in range(1, len(owner) + 1)],
        "customer_id": customers["customer_id"].to_numpy()[owner],
        "txn_date": (base - offsets.astype("timedelta64[D]")).astype("datetime64[D]"),
        "amount": amounts,
        "channel": channel,
    })


def plant_defect(defect: str, customers: pd.DataFrame, transactions: pd.DataFrame, rng) -> tuple:
    if defect == "duplicate_keys":
        duplicated = transactions.sample(frac=0.01, random_state=int(rng.integers(1 << 31)))
        transactions = pd.concat([transactions, duplicated], ignore_index=True)
    elif defect == "missing_column":
        transactions = transactions.drop(columns=["amount"])
    elif defect == "null_heavy":
        customers = customers.copy()
        customers.loc[rng.random(len(customers)) < 0.4, "age"] = np.nan
    return customers, transactions


def write_entity(frame: pd.DataFrame, provider: ProviderConfig, entity: str, folder: Path) -> Path:
    """The entity in the provider's layout: a CSV, or a scanned-looking PDF table for format: pdf."""
    spec = provider.entities[entity]
    out = pd.DataFrame(index=frame.index)
    for canonical, column in spec.columns.items():
        if canonical not in frame:
            continue
        values = frame[canonical]
        if column.type == "date":
            values = pd.to_datetime(values).dt.strftime(spec.csv.date_format)
        elif column.type == "integer":
            values = values.astype("Int64")
        out[column.source] = values
    target = folder / spec.file
    if spec.format == "pdf":
        for column in spec.columns.values():
            if column.type == "float" and column.source in out:
                out[column.source] = out[column.source].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        table = out.astype("string").fillna("")
        return write_with(target, lambda temp: render_table_pdf(
            list(table.columns), table.to_numpy().tolist(), temp,
            f"{provider.provider_id} {entity} statement", seed=len(table)))
    write_with(target, lambda temp: out.to_csv(temp, sep=spec.csv.delimiter, index=False, quotechar=spec.csv.quote,
                                               lineterminator="\n"))
    return target


def generate(provider: ProviderConfig, snapshot: date, customers_count: int, seed: int, data_dir: Path,
             defect: str | None = None, history_days: int = HISTORY_DAYS) -> dict[str, Path]:
    # Each provider gets its own customers for the same seed.
    rng = np.random.default_rng([seed, zlib.crc32(provider.provider_id.encode())])
    with Steps(f"generating {provider.provider_id} {snapshot}", 2 + len(provider.entities)) as bar:
        bar.describe("customers")
        customers = make_customers(rng, customers_count, snapshot)
        bar.advance()
        bar.describe("transactions")
        transactions = make_transactions(rng, customers, snapshot, history_days)
        bar.advance()
        if defect:
            customers, transactions = plant_defect(defect, customers, transactions, rng)
        folder = provider.landing_dir(data_dir, snapshot)
        frames = {"customers": customers, "transactions": transactions}
        written = {}
        for entity in provider.entities:
            bar.describe(f"writing {entity}")
            written[entity] = write_entity(frames[entity], provider, entity, folder)
            bar.advance()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", required=True)
    parser.add_argument("--snapshot-date", required=True, type=date.fromisoformat)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--defect", choices=DEFECTS)
    parser.add_argument("--history-days", type=int, default=HISTORY_DAYS,
                        help="days of transactions before the snapshot (keep it short for PDF providers)")
    args = parser.parse_args(argv)
    settings = Settings.from_env(default_home=Path(__file__).resolve().parents[1])
    config_file = settings.config_dir / f"{args.provider}.yaml"
    if not config_file.exists():
        print(f"no provider config {config_file}; known: "
              f"{sorted(p.stem for p in settings.config_dir.glob('*.yaml') if not p.name.startswith('_'))}",
              file=sys.stderr)
        return 2
    defaults_file = settings.config_dir / DEFAULTS_FILE_NAME
    defaults = read_yaml_file(defaults_file) if defaults_file.exists() else {}
    provider = load_provider_file(config_file, defaults)
    written = generate(provider, args.snapshot_date, args.customers, args.seed, settings.data_dir, args.defect,
                       args.history_days)
    for entity, path in written.items():
        print(f"{entity}: {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
