"""The blocks every sync is made of: its source (a table or query), its destination (a Personalize project),
the match column, the attributes (a column's, or a constant) and the automation condition. Each checks its
own keys; a cron or an owner is judged by Dagster's public API, which runs them, and a constant by the type
table the mapping converts every value with.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contentstack_assets.personalize import regions
from contentstack_assets.urls import mask_url
from contentstack_assets.wire import AttributeType

KEY_PART = re.compile(r"^[A-Za-z0-9_]+$")  # what Dagster accepts in an asset key part or a group name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceSpec(_Model):
    url: SecretStr = Field(description="any SQLAlchemy URL; a password in it is never shown")
    table: str | None = None
    query: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    updated_at: str | None = None
    occurred_at: str | None = None
    start_date: dt.date | None = None
    probe_query: str | None = Field(
        None, description="optional SQL returning one row whose change means the source changed"
    )
    chunk_size: int = Field(50_000, ge=100, le=5_000_000)
    deps: tuple[str, ...] = Field(
        (), description="asset keys (slash form, e.g. analytics/dim_users) the source asset depends on"
    )

    @field_validator("deps")
    @classmethod
    def _check_deps(cls, deps: tuple[str, ...]) -> tuple[str, ...]:
        for dep in deps:
            if not all(KEY_PART.match(part) for part in dep.split("/")):
                raise ValueError(
                    f"{dep!r} is not an asset key: give it in slash form, parts of letters, digits and _ "
                    "(e.g. analytics/dim_users)"
                )
        return deps

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> SourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.query is not None and self.db_schema is not None:
            raise ValueError("`schema` goes with `table`, not with `query`")
        if self.updated_at and self.occurred_at:
            raise ValueError("give `updated_at` (users) or `occurred_at` (events), not both")
        if (self.updated_at or self.occurred_at) and self.start_date is None:
            raise ValueError(
                "`start_date` is required with `updated_at`/`occurred_at` (the first daily partition)"
            )
        return self

    @field_validator("url")
    @classmethod
    def _parse_url(cls, url: SecretStr) -> SecretStr:
        try:
            sa.engine.make_url(url.get_secret_value())
        except Exception:
            raise ValueError(
                "not a SQLAlchemy URL (e.g. sqlite:///demo/users.db or postgresql+psycopg://...)"
            ) from None
        return url

    @property
    def partition_column(self) -> str | None:
        return self.updated_at or self.occurred_at

    @property
    def display_url(self) -> str:
        """The URL with its password and credential parameters masked: the only form that may be shown."""
        return mask_url(self.url.get_secret_value())

    @property
    def relation(self) -> str:
        if self.table:
            return f"{self.db_schema}.{self.table}" if self.db_schema else self.table
        return "query"


class DestinationSpec(_Model):
    project_uid: str = Field(min_length=1)
    region: regions.Region = "aws-na"
    edge_url: str | None = None
    management_url: str | None = None
    management_token: SecretStr | None = None
    create_missing: bool = Field(
        False,
        description="create the missing custom attributes (users syncs) and the fixed event key (events syncs) "
        "through the Management API before anything is sent",
    )

    @model_validator(mode="after")
    def _create_missing_needs_a_token(self) -> DestinationSpec:
        if self.create_missing and (
            self.management_token is None or not self.management_token.get_secret_value().strip()
        ):
            raise ValueError(
                "`create_missing: true` creates keys through the Management API, which needs a management "
                "token: set `management_token` (e.g. ${PERSONALIZE_MANAGEMENT_TOKEN}) and PERSONALIZE_MANAGEMENT_TOKEN "
                "to a token with the personalize:manage scope, or remove `create_missing`"
            )
        return self

    @field_validator("edge_url", "management_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        url = regions.check_api_url(url)
        if urlsplit(url).query:
            # every request appends its path to this URL, and a query may hold a token: never echo it
            raise ValueError(
                "the API URL must not carry a query (?...): give the bare host; a Management API token "
                "goes into `management_token`"
            )
        return url

    @property
    def resolved_edge_url(self) -> str:
        return self.edge_url or regions.edge_url(self.region)

    @property
    def resolved_management_url(self) -> str:
        return self.management_url or regions.management_url(self.region)

    @property
    def identity(self) -> str:
        """The destination as the sync state tells destinations apart: project and Edge URL (no user info,
        query or fragment, which may hold a secret)."""
        parts = urllib.parse.urlsplit(self.resolved_edge_url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{self.project_uid} {parts.scheme}://{netloc}{parts.path.rstrip('/')}"

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool shared by every push to this project."""
        return f"personalize_{re.sub(r'[^A-Za-z0-9_]', '_', self.project_uid)}"


class MatchSpec(_Model):
    column: str = Field(min_length=1)


#: What YAML gives a constant attribute's `value`: a scalar (unquoted dates and times come as such).
ConstantValue = bool | int | float | str | dt.datetime | dt.date


class AttributeSpec(_Model):
    """`{column: C, type: T}`: the column's value of each row; `{value: LITERAL, type: T}`: the same value for
    every user, converted by the same rules."""

    # `type` comes first, so that the check of `value` sees it.
    type: AttributeType
    column: str | None = Field(None, min_length=1)
    value: ConstantValue | None = Field(
        None, description="a constant sent to every user, instead of a column"
    )
    name: str | None = Field(
        None,
        min_length=1,
        description="the custom attribute's name when `destination.create_missing` creates it (default: the key)",
    )
    description: str | None = Field(
        None,
        description="its description when `destination.create_missing` creates it (default: the sync and column)",
    )

    @field_validator("value", mode="before")
    @classmethod
    def _one_scalar(cls, value: Any) -> Any:
        # One line for a list or a mapping, not one per kind of scalar it is not.
        if isinstance(value, list | dict):
            raise ValueError(
                "a constant is one string, number, boolean, date or time, not a list or a mapping"
            )
        return value

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: ConstantValue | None, info: ValidationInfo) -> ConstantValue | None:
        type_ = info.data.get("type")
        if value is None or type_ is None:
            return value  # a null is refused below; a wrong type is reported on `type`
        reason = _constant_rejection(value, type_)
        if reason is not None:
            raise ValueError(f"the constant does not convert to {type_}: {reason}")
        return value

    @model_validator(mode="after")
    def _column_or_value(self) -> AttributeSpec:
        if "value" in self.model_fields_set and self.value is None:
            raise ValueError("a constant `value` cannot be null (it would send nothing): give a value")
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of `column` or `value` (a source column, or a constant)")
        return self


def _constant_rejection(value: ConstantValue, type_: str) -> str | None:
    """Why the type table rejects `value` for `type_`, or None: the rules every source value goes through
    (the mapping converts the constant with them again; this only judges it)."""
    import pandas as pd

    from contentstack_assets.engine.convert import convert_column

    return convert_column(pd.Series([value], dtype=object), type_).errors.iat[0]


class AutomationSpec(_Model):
    """`automation: eager` (read as `{eager: true}`) or `automation: {on_cron: CRON}`."""

    eager: bool = False
    on_cron: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_eager(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value != "eager":
                raise ValueError(f"use `eager` or `{{on_cron: CRON}}` (got {value!r})")
            return {"eager": True}
        return value

    @field_validator("on_cron")
    @classmethod
    def _check_cron(cls, cron: str | None) -> str | None:
        return _valid_cron(cron) if cron is not None else None

    @model_validator(mode="after")
    def _one_condition(self) -> AutomationSpec:
        if self.eager == (self.on_cron is not None):
            raise ValueError("use `eager` or `{on_cron: CRON}`, one of the two")
        return self


def _valid_cron(cron: str) -> str:
    # Dagster runs the schedule, so its public ScheduleDefinition judges the expression (five fields, no
    # 30 February)
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="cron_check", cron_schedule=cron, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(f"{cron!r} is not a cron expression (e.g. '0 * * * *')") from None
    return cron
