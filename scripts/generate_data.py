"""Synthetic provider drops with a planted signal, written in each provider's own layout.

Each customer has a purchase rate; some customers churn (their rate drops to a tenth) at a random
date. Future activity therefore depends on recency and frequency, so a model can learn something
real. Files follow the provider config: its column names, delimiter and date format.

One history per --seed, --customers and --series-start (default: the snapshot date): the history
before the series start, then day after day (new customers sign up, customers churn, optional
corrections of earlier amounts). A drop of date D holds what is known on D:
  --delivery snapshot      (default) a full extract: every customer signed up and every transaction dated
                           before D, with the latest correction made before D;
  --delivery incremental   the series start's drop holds the whole history before it; a later date's drop
                           holds the day before it: its transactions and the corrections made that day
                           (a transaction delivered again with its new amount). The customer file is always
                           a full snapshot of the customers known that day.
Without corrections, the transaction files of days 1..N put together are exactly day N's full extract.

    python scripts/generate_data.py --provider provider_a --snapshot-date 2026-02-01 [--customers N]
        [--seed S] [--defect duplicate_keys|missing_column|null_heavy] [--history-days D]
        [--delivery snapshot|incremental] [--series-start DATE] [--days N] [--corrections SHARE]
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
import time
import zlib
from dataclasses import dataclass
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
DELIVERIES = ("snapshot", "incremental")
# After the series start the history is drawn block by block, each block from a seed of its own: a day's rows do
# not depend on how far a series was drawn.
BLOCK_DAYS = 30
NEW_CUSTOMERS_PER_DAY = 0.0005  # of --customers: about 18% more customers a year
CHURN_PER_DAY = 0.45 / HISTORY_DAYS  # the share that churns over the history before the start, per day after it
SEGMENT_BOOST = {"retail": 1.0, "smb": 1.3, "enterprise": 1.6}


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
                      history_days: int = HISTORY_DAYS, rates_now: list | None = None) -> pd.DataFrame:
    """Poisson purchases per customer: rate r before its churn day, r/10 after it. `rates_now`, when given,
    receives each customer's (rate, churned) on the snapshot day, where a series goes on from."""
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
    if rates_now is not None:
        rates_now.extend([rate, churns & (churn_offset > 0)])
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


@dataclass
class History:
    """One provider's synthetic history: customers (with signup dates), transactions dated up to `through`,
    and corrections (a transaction's new amount, made on a day)."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    corrections: pd.DataFrame


def _purchases(rng, rates: np.ndarray, first_day: np.ndarray, churn_day: np.ndarray, days: int) -> tuple:
    """(owner, day) of Poisson purchases over days [0, days): rate before churn_day, a tenth from it on."""
    active = np.clip(np.minimum(churn_day, days) - first_day, 0, None)
    quiet = np.clip(days - np.maximum(churn_day, first_day), 0, None)
    active_n, quiet_n = rng.poisson(rates * active), rng.poisson(rates * 0.1 * quiet)
    owner = np.concatenate([np.repeat(np.arange(len(rates)), active_n), np.repeat(np.arange(len(rates)), quiet_n)])
    start = np.concatenate([np.repeat(first_day, active_n), np.repeat(np.maximum(churn_day, first_day), quiet_n)])
    span = np.concatenate([np.repeat(np.maximum(active, 1), active_n), np.repeat(np.maximum(quiet, 1), quiet_n)])
    return owner, start + np.floor(rng.random(len(owner)) * span).astype(int)


def _block(rng, known: pd.DataFrame, rates: np.ndarray, churned: np.ndarray, block_start: date, days: int,
           new_customers: int, next_customer: int):
    """One block of days after the series start: who signs up, who churns, who buys. Returns the block's new
    customers, its transactions (without ids) and the rates and churn flags going on."""
    signup_day = np.sort(rng.integers(0, days, size=new_customers))
    age = rng.integers(18, 81, size=new_customers).astype("float64")
    age[rng.random(new_customers) < 0.04] = np.nan
    joined = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(next_customer, next_customer + new_customers)],
        "signup_date": [block_start + timedelta(days=int(d)) for d in signup_day],
        "region": rng.choice(["north", "south", "east", "west"], size=new_customers),
        "segment": rng.choice(["retail", "smb", "enterprise"], size=new_customers, p=[0.6, 0.3, 0.1]),
        "age": age,
    })
    boost = joined["segment"].map(SEGMENT_BOOST).to_numpy()
    rates = np.concatenate([rates, rng.gamma(shape=0.9, scale=0.06, size=new_customers) * boost])
    churned = np.concatenate([churned, np.zeros(new_customers, dtype=bool)])
    first_day = np.concatenate([np.zeros(len(known), dtype=int), signup_day])
    churn_day = np.where(~churned & (rng.random(len(rates)) < 1 - (1 - CHURN_PER_DAY) ** days),
                         rng.integers(0, days, size=len(rates)), days)
    churn_day = np.where(churned, 0, churn_day)
    owner, day = _purchases(rng, rates, first_day, churn_day, days)
    customer_ids = np.concatenate([known["customer_id"].to_numpy(), joined["customer_id"].to_numpy()])
    segments = np.concatenate([known["segment"].to_numpy(), joined["segment"].to_numpy()])
    order = np.lexsort((owner, day))
    owner, day = owner[order], day[order]
    amounts = np.round(rng.lognormal(mean=3.4, sigma=0.8, size=len(owner))
                       * pd.Series(segments[owner]).map(SEGMENT_BOOST).to_numpy(), 2)
    channel = rng.choice(np.array(["web", "store", "app"], dtype=object), size=len(owner), p=[0.5, 0.3, 0.2])
    channel[rng.random(len(owner)) < 0.01] = None
    bought = pd.DataFrame({"customer_id": customer_ids[owner],
                           "txn_date": (np.datetime64(block_start.isoformat()) + day.astype("timedelta64[D]")
                                        ).astype("datetime64[D]"),
                           "amount": amounts, "channel": channel})
    return joined, bought, rates, churned | (churn_day < days)


def make_history(provider_id: str, customers_count: int, seed: int, start: date, through: date,
                 history_days: int = HISTORY_DAYS, corrections: float = 0.0, defect: str | None = None) -> History:
    """The history of one series: the past before `start` exactly as a single drop of `start` has always been
    drawn, then block after block up to (not including) `through`."""
    # Each provider gets its own customers for the same seed.
    provider_seed = zlib.crc32(provider_id.encode())
    rng = np.random.default_rng([seed, provider_seed])
    customers = make_customers(rng, customers_count, start)
    state: list = []
    transactions = make_transactions(rng, customers, start, history_days, state)
    if defect:
        customers, transactions = plant_defect(defect, customers, transactions, rng)
    rates, churned = state if state else (np.zeros(0), np.zeros(0, dtype=bool))
    blocks, frames, known = 0, [transactions], customers
    while start + timedelta(days=blocks * BLOCK_DAYS) < through:
        block_rng = np.random.default_rng([seed, provider_seed, 1, blocks])
        newcomers = int(block_rng.poisson(customers_count * NEW_CUSTOMERS_PER_DAY * BLOCK_DAYS))
        joined, bought, rates, churned = _block(block_rng, known, rates, churned,
                                                start + timedelta(days=blocks * BLOCK_DAYS), BLOCK_DAYS, newcomers,
                                                customers_count + 1 + len(known) - len(customers))
        known = pd.concat([known, joined], ignore_index=True)
        first_id = sum(len(frame) for frame in frames) + 1
        bought.insert(0, "transaction_id", [f"T{i:09d}" for i in range(first_id, first_id + len(bought))])
        frames.append(bought)
        blocks += 1
    transactions = pd.concat(frames, ignore_index=True) if len(frames) > 1 else transactions
    transactions = transactions[pd.to_datetime(transactions["txn_date"]) < pd.Timestamp(through)]
    return History(known, transactions.reset_index(drop=True),
                   make_corrections(transactions, start, through, corrections, seed, provider_seed))


def make_corrections(transactions: pd.DataFrame, start: date, through: date, share: float, seed: int,
                     provider_seed: int) -> pd.DataFrame:
    """On each day after the start, `share` of that day's purchases again as corrections: an earlier
    transaction's amount changed (a refund, a fixed price). Drawn per day from a seed of its own."""
    columns = {"transaction_id": [], "corrected_on": [], "amount": []}
    if share <= 0:
        return pd.DataFrame(columns)
    dates = pd.to_datetime(transactions["txn_date"]).to_numpy()
    for offset in range((through - start).days):
        day = start + timedelta(days=offset)
        rng = np.random.default_rng([seed, provider_seed, 2, offset])
        earlier = np.flatnonzero(dates < np.datetime64(day.isoformat()))
        count = min(int(rng.poisson(share * np.sum(dates == np.datetime64(day.isoformat())))), len(earlier))
        chosen = rng.choice(earlier, size=count, replace=False) if count else np.zeros(0, dtype=int)
        columns["transaction_id"] += transactions["transaction_id"].to_numpy()[chosen].tolist()
        columns["corrected_on"] += [day] * count
        columns["amount"] += np.round(transactions["amount"].to_numpy()[chosen] * rng.uniform(0.5, 1.5, count),
                                      2).tolist()
    return pd.DataFrame(columns)


def drop_of(history: History, snapshot: date, since: date | None) -> dict[str, pd.DataFrame]:
    """What a drop of `snapshot` holds: the customers known that day, and the transactions dated before it
    (since `since`, when given: an incremental drop, with the corrections made in [since, snapshot)) with
    the latest correction made before the snapshot."""
    until = pd.Timestamp(snapshot)
    customers = history.customers[pd.to_datetime(history.customers["signup_date"]) < until]
    transactions = history.transactions
    dated = pd.to_datetime(transactions["txn_date"])
    corrections = history.corrections[pd.to_datetime(history.corrections["corrected_on"]) < until]
    if since is None:
        chosen = transactions[dated < until]
    else:
        recent = corrections[pd.to_datetime(corrections["corrected_on"]) >= pd.Timestamp(since)]
        chosen = transactions[((dated >= pd.Timestamp(since)) & (dated < until))
                              | transactions["transaction_id"].isin(recent["transaction_id"])]
    if len(corrections):
        latest = corrections.sort_values("corrected_on", kind="stable").drop_duplicates("transaction_id", keep="last")
        amounts = chosen["transaction_id"].map(latest.set_index("transaction_id")["amount"])
        chosen = chosen.assign(amount=amounts.fillna(chosen["amount"]))
    return {"customers": customers.reset_index(drop=True), "transactions": chosen.reset_index(drop=True)}


def landed_earlier(paths, seconds_ago: float = 600) -> None:
    """Date drop files as landed a while ago: ingest waits for a file modified within landing_settle_seconds
    (an upload that may still be in progress), which a drop written just before its run would be."""
    moment = time.time() - seconds_ago
    for path in paths:
        os.utime(path, (moment, moment), follow_symlinks=False)


def generate(provider: ProviderConfig, snapshot: date, customers_count: int, seed: int, data_dir: Path,
             defect: str | None = None, history_days: int = HISTORY_DAYS, delivery: str = "snapshot",
             series_start: date | None = None, corrections: float = 0.0,
             history: History | None = None) -> dict[str, Path]:
    """Write the drop of `snapshot` in the provider's layout (see the module's doc for delivery and series)."""
    series_start = series_start or snapshot
    if snapshot < series_start:
        raise ValueError(f"snapshot {snapshot} is before the series start {series_start}")
    with Steps(f"generating {provider.provider_id} {snapshot}", 1 + len(provider.entities)) as bar:
        bar.describe("history")
        history = history or make_history(provider.provider_id, customers_count, seed, series_start, snapshot,
                                          history_days, corrections, defect)
        bar.advance()
        since = snapshot - timedelta(days=1) if delivery == "incremental" and snapshot > series_start else None
        frames = drop_of(history, snapshot, since)
        folder = provider.landing_dir(data_dir, snapshot)
        written = {}
        for entity in provider.entities:
            bar.describe(f"writing {entity}")
            written[entity] = write_entity(frames[entity], provider, entity, folder)
            bar.advance()
    return written


def generate_series(provider: ProviderConfig, first: date, days: int, customers_count: int, seed: int,
                    data_dir: Path, delivery: str = "snapshot", series_start: date | None = None,
                    corrections: float = 0.0, history_days: int = HISTORY_DAYS) -> dict[date, dict[str, Path]]:
    """Drops of `days` consecutive dates from `first`, all cut from one history drawn once."""
    start = series_start or first
    history = make_history(provider.provider_id, customers_count, seed, start, first + timedelta(days=days - 1),
                           history_days, corrections)
    return {day: generate(provider, day, customers_count, seed, data_dir, None, history_days, delivery, start,
                          corrections, history)
            for day in (first + timedelta(days=k) for k in range(days))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", required=True)
    parser.add_argument("--snapshot-date", required=True, type=date.fromisoformat)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--defect", choices=DEFECTS)
    parser.add_argument("--history-days", type=int, default=HISTORY_DAYS,
                        help="days of transactions before the series start (keep it short for PDF providers)")
    parser.add_argument("--delivery", choices=DELIVERIES, default="snapshot",
                        help="snapshot: full extracts; incremental: each date after the series start holds its day")
    parser.add_argument("--series-start", type=date.fromisoformat,
                        help="the date the history is drawn up to and goes on from (default: --snapshot-date)")
    parser.add_argument("--days", type=int, default=1, help="drops for this many consecutive dates from the snapshot")
    parser.add_argument("--corrections", type=float, default=0.0,
                        help="share of each day's purchases that correct an earlier amount (after the series start)")
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
    if args.days > 1:
        if args.defect:
            print("--defect applies to one drop; leave out --days", file=sys.stderr)
            return 2
        series = generate_series(provider, args.snapshot_date, args.days, args.customers, args.seed, settings.data_dir,
                                 args.delivery, args.series_start, args.corrections, args.history_days)
    else:
        series = {args.snapshot_date: generate(provider, args.snapshot_date, args.customers, args.seed,
                                               settings.data_dir, args.defect, args.history_days, args.delivery,
                                               args.series_start, args.corrections)}
    for written in series.values():
        for entity, path in written.items():
            print(f"{entity}: {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
