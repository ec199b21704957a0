"""The floor for a rerun: a bare `pandas.read_sql` of the columns the sync reads, in a fresh process.

python bench/read_sql_run.py --url URL --out result.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COLUMNS = ["user_uid", "plan_name", "lifetime_value", "order_count", "is_vip", "created_at", "birth_date"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--table", default="users")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(args.url)
    started = time.perf_counter()
    frame = pd.read_sql(f"SELECT {', '.join(COLUMNS)} FROM {args.table}", engine)
    read_s = time.perf_counter() - started
    Path(args.out).write_text(json.dumps({"rows": len(frame), "read_sql_s": round(read_s, 3)}))


if __name__ == "__main__":
    main()
