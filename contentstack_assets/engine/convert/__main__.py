"""Timing check of the conversions over generated columns: python -m contentstack_assets.engine.convert [rows]"""

import sys
import time
from decimal import Decimal

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import convert_column, convert_uids

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = np.random.default_rng(0)
secs = rng.integers(0, 2_000_000_000, rows)
stamps = pd.Series(pd.to_datetime(secs, unit="s"))
cases: list[tuple[str, str, pd.Series]] = [
    ("string", "object str", pd.Series([f"plan-{i % 7}" for i in range(rows)], dtype=object)),
    ("string", "str dtype", pd.Series([f"plan-{i % 7}" for i in range(rows)], dtype="str")),
    ("number", "float64", pd.Series(rng.random(rows) * 1000)),
    ("number", "object float", pd.Series((rng.random(rows) * 1000).tolist(), dtype=object)),
    ("number", "object Decimal", pd.Series([Decimal(i) / 100 for i in range(rows)], dtype=object)),
    ("integer", "int64", pd.Series(rng.integers(0, 10**6, rows))),
    ("integer", "object int", pd.Series(rng.integers(0, 10**6, rows).tolist(), dtype=object)),
    ("integer", "float64 w/ NaN", pd.Series(np.where(rng.random(rows) < 0.1, np.nan, 3.0))),
    ("integer", "object Decimal", pd.Series([Decimal(i) for i in range(rows)], dtype=object)),
    ("boolean", "bool", pd.Series(rng.random(rows) < 0.5)),
    ("boolean", "object int 0/1", pd.Series(rng.integers(0, 2, rows).tolist(), dtype=object)),
    ("boolean", "object text", pd.Series(rng.choice(["true", "False", " yes "], rows), dtype=object)),
    ("datetime", "datetime64[s]", stamps.astype("datetime64[s]")),
    ("datetime", "datetime64 tz", stamps.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")),
    ("datetime", "object datetime", pd.Series(stamps.dt.to_pydatetime(), dtype=object)),
    ("datetime", "object ISO text", pd.Series(stamps.dt.strftime("%Y-%m-%d %H:%M:%S"), dtype=object)),
    (
        "datetime",
        "ISO text +02:00",
        pd.Series(stamps.dt.strftime("%Y-%m-%dT%H:%M:%S+02:00"), dtype=object),
    ),
    ("date", "object date", pd.Series([d.date() for d in stamps.dt.to_pydatetime()], dtype=object)),
    ("date", "datetime64[s]", stamps.astype("datetime64[s]")),
    ("date", "object ISO text", pd.Series(stamps.dt.strftime("%Y-%m-%d"), dtype=object)),
]
for type_name, label, column in cases:
    t0 = time.perf_counter()
    res = convert_column(column, type_name)
    took = time.perf_counter() - t0
    bad = int(res.errors.notna().sum())
    print(f"{type_name:9s} {label:18s} {took:7.3f}s  rejected={bad}")
uids = pd.Series([f"user-{i}" for i in range(rows)], dtype=object)
t0 = time.perf_counter()
convert_uids(uids)
print(f"{'uids':9s} {'object str':18s} {time.perf_counter() - t0:7.3f}s")
