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
# set by the Makefile's `test-warehouses`, which runs tests/warehouses/ (and the dialect compile tests) in
# the second environment it builds (.venv-warehouses: fakesnow, snowflake-connector-python 4, pyarrow,
# databricks-sqlalchemy; see the Makefile for why they cannot share the project's environment)
IN_WAREHOUSES_VENV = os.environ.get("CONTENTSTACK_WAREHOUSES_VENV", "") == "1"


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


def require_warehouses_venv(extra: str, *modules: str) -> None:
    """Skip without the packages only the Makefile's second environment holds (.venv-warehouses), with the
    reason; fail instead where that environment runs the test on CI, whose install must bring them."""
    missing = [name for name in modules if not _importable(name)]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not importable here: this test runs in the Makefile's second environment "
        f"(`make test-warehouses`, .venv-warehouses; pip install -e '.[dev,{extra}]')"
    )
    if ON_CI and IN_WAREHOUSES_VENV:
        pytest.fail(f"{message}, and CI=true in .venv-warehouses: its install must include them")
    pytest.skip(message)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent
        return False


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
