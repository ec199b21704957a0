"""What a failed read tells the user: `SourceError`, naming the source by its masked URL, and for a URL whose
SQLAlchemy dialect or driver is absent, the extra of this package to install. A database's own message is
cut to its first line and scrubbed of the URL's secrets.
"""

from __future__ import annotations

import sqlalchemy as sa

from contentstack_assets.spec import SourceSpec
from contentstack_assets.urls import scrub


class SourceError(RuntimeError):
    """The source cannot be read as the spec says: the message names the URL (masked), table and column."""


# the extra of this package that installs each warehouse's SQLAlchemy dialect and driver
# (`pip install 'contentstack_assets[EXTRA]'`), by the URL's backend name
DRIVER_EXTRAS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "duckdb": "duckdb",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "redshift": "redshift",
    "databricks": "databricks",
}
# the driver each extra brings, where the dialect's default driver is another one: the URL must name it
_EXTRA_DRIVERS = {"mysql": "pymysql", "mariadb": "pymysql", "redshift": "redshift_connector"}


def _missing_driver(source: SourceSpec, error: Exception) -> str:
    """What to install for a URL whose SQLAlchemy dialect or driver is absent."""
    url = sa.engine.make_url(source.url.get_secret_value())
    backend = url.get_backend_name()
    what = f"source {source.display_url}: no SQLAlchemy driver for {url.drivername!r} ({error})"
    extra = DRIVER_EXTRAS.get(backend)
    if extra is None:
        return f"{what}: install the package that provides this SQLAlchemy dialect and its driver"
    advice = f"{what}: pip install 'contentstack_assets[{extra}]'"
    driver = _EXTRA_DRIVERS.get(backend)
    if driver and url.drivername.partition("+")[2] != driver:
        advice += f", and name its driver in the URL: {backend}+{driver}://..."
    return advice


def _reason(source: SourceSpec, error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    reason = scrub(lines[0] if lines else type(original).__name__, source.url.get_secret_value())
    if "Out of Memory" in reason and _backend(source) == "duckdb":
        reason += (
            " (the sync bounds DuckDB's memory on its own connections: give the source URL a larger one, "
            "e.g. duckdb:///file.duckdb?memory_limit=2GB)"
        )
    return reason


def _backend(source: SourceSpec) -> str:
    return sa.engine.make_url(source.url.get_secret_value()).get_backend_name()
