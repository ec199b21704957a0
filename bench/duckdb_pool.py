"""What DuckDB's buffer pool keeps after one scan of a table, under a `memory_limit` or none (issue 19).

    python bench/duckdb_pool.py bench/data/users_10000000.duckdb                    # DuckDB's default
    python bench/duckdb_pool.py bench/data/users_10000000.duckdb memory_limit=64MB  # the sync's bound, 2 cores
    python bench/duckdb_pool.py bench/data/users_10000000.duckdb memory_limit=64MB threads=64  # too little

The scan is the rerun's: each row's uid and a hash of every column, streamed in chunks (as
`SourceReader.read_digest_chunks` fetches them). Prints the scan's wall time, the `BASE_TABLE` blocks
`duckdb_memory()` reports after it, and the process's peak RSS; an out-of-memory error is printed as it is.
The table is `bench/scale.py`'s (`bench/datagen.py`); the sync's own bound is `duckdb_read_memory`.
"""

from __future__ import annotations

import resource
import sys
import time

import duckdb


def main() -> None:
    path, settings = sys.argv[1], dict(pair.split("=", 1) for pair in sys.argv[2:])
    connection = duckdb.connect(path, read_only=True, config=settings)
    columns = [row[0] for row in connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position"
    ).fetchall()]  # fmt: skip
    hashed = ", ".join(f"coalesce(CAST({column} AS VARCHAR), '')" for column in columns)
    started = time.perf_counter()
    try:
        result = connection.cursor().execute(f"SELECT user_uid, hash({hashed}) FROM users")
        rows = 0
        while len(chunk := result.fetch_df_chunk(25)):
            rows += len(chunk)
    except duckdb.OutOfMemoryException as error:
        print(f"{settings or 'default'}: {str(error).splitlines()[0]}")
        return
    wall_s = time.perf_counter() - started
    kept = connection.execute(
        "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    ).fetchone()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{settings or 'default'}: {rows} rows scanned in {wall_s:.2f} s; BASE_TABLE kept "
        f"{kept / 2**20:.0f} MiB; peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
