"""In-memory DuckDB sessions for stages that do not touch the warehouse (ingest, validate)."""

from __future__ import annotations

from batchops.settings import Settings
from batchops.storage.warehouse import duckdb_config


def scratch_connection(settings: Settings):
    """A private in-memory DuckDB with the deployment's memory/thread limits and a spill folder."""
    import duckdb

    connection = duckdb.connect(":memory:", config=duckdb_config(settings))
    spill = settings.warehouse_dir / "tmp" / "scratch"
    spill.mkdir(parents=True, exist_ok=True)
    connection.execute("SET temp_directory = ?", [str(spill)])
    return connection


def fetch_frame(result, vectors_per_chunk: int = 20, categorical: list[str] | tuple[str, ...] = ()):
    """A DuckDB result as one DataFrame, fetched chunk by chunk (20 vectors = 40,960 rows each). `.df()`
    first materializes the whole result inside DuckDB, then converts it: at 6M training rows that held both
    copies at once (2.6 GiB peak against 1.9 GiB chunked)."""
    import pandas as pd

    chunks = []
    while True:
        chunk = result.fetch_df_chunk(vectors_per_chunk)
        if chunk is None or not len(chunk):
            break
        chunks.append(chunk)
    if not chunks:
        return result.df()  # no rows: the empty frame with the result's columns
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    chunks.clear()
    # categories, not strings: the model's one-hot encoder reads a category column's codes (1M rows:
    # predict 0.16 s against 0.40 s on Arrow strings) and the frame holds each distinct value once
    for name in categorical:
        frame[name] = frame[name].astype("category")
    return frame


def widen_floats(frame):
    """`frame` with its float32 columns as float64: read narrow to save memory, computed on wide (the model's
    arithmetic). The frame itself when it has none."""
    narrow = frame.select_dtypes("float32").columns
    return frame.astype(dict.fromkeys(narrow, "float64")) if len(narrow) else frame
