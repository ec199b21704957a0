"""Prototypes of changes to files this benchmark does not own, patched into a benchmark child process only.

Edge client transports (`--client`):

The sync's first-sync throughput on a 2-core machine is bound by the CPU the HTTP client spends per request
(the GIL lets one thread run Python at a time, and the emulator needs the other core). These variants
measure what a change to `contentstack_assets/personalize/client.py` would buy, without making it:

- `env-once`: the same `requests` session, but the proxy / CA-bundle environment is read once when the
  client is built (`Session.merge_environment_settings`) instead of on every request (`trust_env=False`
  plus the settings passed explicitly): requests walks every environment variable twice per request.
- `urllib3`: the same urllib3 pool, `Retry` policy (attempt counting, Retry-After cap) and timeouts,
  without the `requests` layer on top.

Source reads (`--source`):

- `driver-tuples`: `SourceReader.read` taking each chunk as the driver's plain tuples
  (`result.cursor.fetchmany`) and transposing it in C (`pandas._libs.lib.to_object_array_tuples`), instead
  of building a SQLAlchemy Row per row and transposing with `zip(*rows)`. Same statement, same values.

`python bench/sync_run.py ... --client urllib3 --source driver-tuples` runs the real sync with the variants
patched in; the benchmark's official figures always use the code as it is (`as-is`).
"""

from __future__ import annotations

import json
import time

from contentstack_assets.personalize import client as client_module
from contentstack_assets.personalize.client import EdgeClient, Response

VARIANTS = ("as-is", "env-once", "urllib3")
SOURCE_VARIANTS = ("as-is", "driver-tuples")


def patch_edge_client(variant: str) -> None:
    if variant == "as-is":
        return
    if variant == "env-once":
        _patch_env_once()
    elif variant == "urllib3":
        _patch_urllib3()
    else:
        raise ValueError(f"unknown client variant {variant!r}: one of {', '.join(VARIANTS)}")


def _patch_env_once() -> None:
    original_init = EdgeClient.__init__

    def __init__(self: EdgeClient, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        original_init(self, *args, **kwargs)
        settings = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.trust_env = False
        request = self.session.request

        def request_with_settings(method, url, **options):  # noqa: ANN001, ANN003
            return request(method, url, **settings, **options)

        self.session.request = request_with_settings

    EdgeClient.__init__ = __init__


def _patch_urllib3() -> None:
    import urllib3

    original_init = EdgeClient.__init__

    def __init__(self: EdgeClient, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        original_init(self, *args, **kwargs)
        adapter = self.session.get_adapter(self.base_url)
        self._retry = adapter.max_retries  # the client's own _CountingRetry
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=adapter._pool_maxsize,
            block=True,
            headers={"User-Agent": client_module.USER_AGENT},
        )
        connect_s, read_s = self.timeout
        self._urllib3_timeout = urllib3.Timeout(connect=connect_s, read=read_s)

    def _call(self: EdgeClient, method: str, path: str, payload: object, user_uid: str | None) -> Response:
        headers = {"x-project-uid": self.project_uid, "Content-Type": "application/json"}
        if user_uid is not None:
            headers["x-cs-personalize-user-uid"] = user_uid
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        client_module._attempts.count = 1
        started = time.perf_counter()
        try:
            response = self._pool.urlopen(
                method,
                self.base_url + path,
                body=data,
                headers=headers,
                retries=self._retry,
                timeout=self._urllib3_timeout,
            )
        except urllib3.exceptions.HTTPError as error:
            return Response(
                False,
                None,
                client_module._attempts.count,
                client_module._ms_since(started),
                f"connection failed: {type(error).__name__}",
            )
        latency = client_module._ms_since(started)
        text = response.data.decode("utf-8", "replace")
        if 200 <= response.status < 300:
            return Response(True, response.status, client_module._attempts.count, latency, body=text[:200])
        return Response(
            False,
            response.status,
            client_module._attempts.count,
            latency,
            f"HTTP {response.status}: {text[:200]}",
        )

    def close(self: EdgeClient) -> None:
        self._pool.clear()
        self.session.close()

    EdgeClient.__init__ = __init__
    EdgeClient._call = _call
    EdgeClient.close = close


def patch_source_reader(variant: str) -> None:
    if variant == "as-is":
        return
    if variant != "driver-tuples":
        raise ValueError(f"unknown source variant {variant!r}: one of {', '.join(SOURCE_VARIANTS)}")
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa
    from pandas._libs import lib

    from contentstack_assets.engine import source

    def read(self, window=None, on_progress=None):  # noqa: ANN001, ANN202 - the same signature as the original
        chunks: list[np.ndarray] = []
        rows_read = 0
        try:
            with source.engine_for(self.source).connect() as connection:
                statement = self._statement(self._relation(connection), window)
                result = connection.execution_options(stream_results=True).execute(statement)
                cursor = result.cursor  # the driver's cursor (server-side on PostgreSQL): plain tuples
                while rows := cursor.fetchmany(self.source.chunk_size):
                    chunks.append(lib.to_object_array_tuples(rows))
                    rows_read += len(rows)
                    if on_progress:
                        on_progress(rows_read)
                result.close()
        except source.SourceError:
            raise
        except sa.exc.SQLAlchemyError as error:
            raise source.SourceError(
                f"source {self.source.display_url} ({self.source.relation}): {source._reason(self.source, error)}"
            ) from None
        table = np.concatenate(chunks) if chunks else np.empty((0, len(self.columns)), dtype=object)
        return pd.DataFrame(
            {
                name: pd.Series(table[:, index], dtype=object, copy=False)
                for index, name in enumerate(self.columns)
            },
            copy=False,
        )

    source.SourceReader.read = read
