"""The warehouses the source tests reach here: a fresh MariaDB/MySQL database per test, DuckDB files, and the
driver checks (a missing driver skips, except on CI, whose install must include the extra)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import ON_CI, require_service

MYSQL_ADMIN_URL = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def require_modules(extra: str, *modules: str) -> None:
    """Skip without the extra's packages, except on CI, where the Makefile's install must bring them."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not importable: pip install -e '.[{extra}]'"
    if ON_CI:
        pytest.fail(f"{message}, and CI=true: the Makefile's install must include the extra")
    pytest.skip(f"{message} (CI fails instead of skipping)")


def optional_modules(extra: str, *modules: str) -> None:
    """Skip without the extra's packages, on CI too: an extra the Makefile does not install (a dialect
    package that is compiled against, never connected to)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not importable: pip install '.[{extra}]'")


@contextlib.contextmanager
def mysql_database() -> Iterator[str]:
    """A fresh database on the local MariaDB/MySQL server, dropped afterwards; yields its URL."""
    require_modules("mysql", "pymysql")
    admin_url = sa.engine.make_url(MYSQL_ADMIN_URL)
    require_service("MariaDB", admin_url.host or "127.0.0.1", admin_url.port or 3306)
    name = f"cs_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from contentstack_assets.engine.source import _engine

        _engine(url).dispose()  # the reader's pooled connections to this database
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def execute(url: str, *statements: str, rows: list[dict] | None = None) -> None:
    """Run DDL/DML on a source (the last statement with `rows` as its parameters, if given)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            for index, statement in enumerate(statements):
                last = index == len(statements) - 1
                connection.execute(sa.text(statement), rows if last and rows is not None else {})
    finally:
        engine.dispose()
