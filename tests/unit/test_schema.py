"""The derived pandera schema of valid rows: every row's shape, and values one by one (a sample when big)."""

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from contentstack_assets.engine import schema
from contentstack_assets.spec import load_spec
from tests.helpers import users_sync, write_spec


@pytest.fixture
def sync(tmp_path):
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///unused.db", "http://127.0.0.1:9")])
    return load_spec(spec).get("users")


def _valid(sync, rows: int) -> pd.DataFrame:
    data = {"user_uid": pd.Series(np.array([f"u{i}" for i in range(rows)], dtype=object), dtype=object)}
    for key, attribute in sync.attributes.items():
        value = {"string": "x", "number": 1.5, "integer": 3, "boolean": True,
                 "datetime": "2024-01-02T03:04:05Z", "date": "2024-01-02"}[attribute.type]  # fmt: skip
        data[key] = pd.Series([value] * rows, dtype=schema.WIRE_DTYPES[attribute.type])
    return pd.DataFrame(data)


def test_small_frames_have_every_value_checked(sync):
    valid = _valid(sync, 50)
    assert schema.validate_valid_rows(valid, sync) == 50
    key = next(k for k, a in sync.attributes.items() if a.type == "datetime")
    valid.loc[49, key] = "2024-01-02 03:04:05"  # not the wire format
    with pytest.raises(pa.errors.SchemaErrors, match=key):
        schema.validate_valid_rows(valid, sync)


def test_big_frames_check_every_row_shape_and_a_sample_of_values(sync, monkeypatch):
    monkeypatch.setattr(schema, "FULL_CHECK_ROWS", 100)
    monkeypatch.setattr(schema, "SAMPLE_ROWS", 50)
    valid = _valid(sync, 1000)
    assert schema.validate_valid_rows(valid, sync) == 50
    duplicated = valid.copy()
    duplicated.loc[999, "user_uid"] = "u0"  # uniqueness is checked on every row
    with pytest.raises(pa.errors.SchemaErrors, match="user_uid"):
        schema.validate_valid_rows(duplicated, sync)
    wrong_type = valid.copy()
    key = next(k for k, a in sync.attributes.items() if a.type == "number")
    wrong_type[key] = wrong_type[key].astype(object)  # dtypes are checked on every row
    with pytest.raises(pa.errors.SchemaErrors, match=key):
        schema.validate_valid_rows(wrong_type, sync)
    all_bad = valid.copy()
    date_key = next(k for k, a in sync.attributes.items() if a.type == "date")
    all_bad[date_key] = "02/01/2024"  # every value wrong: the sample sees it
    with pytest.raises(pa.errors.SchemaErrors, match=date_key):
        schema.validate_valid_rows(all_bad, sync)


def test_a_chunk_of_a_big_read_checks_its_share_of_the_sample(sync, monkeypatch):
    monkeypatch.setattr(schema, "FULL_CHECK_ROWS", 100)
    monkeypatch.setattr(schema, "SAMPLE_ROWS", 50)
    chunk = _valid(sync, 100)  # one chunk of ten of a read of 1,000 rows: 5 of the 50
    assert schema.validate_valid_rows(chunk, sync, read_rows=1000) == 5
    assert schema.validate_valid_rows(chunk, sync, read_rows=100) == 100  # a small read: every value
    assert schema.validate_valid_rows(chunk.iloc[:0], sync, read_rows=1000) == 0
    bad = chunk.copy()
    date_key = next(k for k, a in sync.attributes.items() if a.type == "date")
    bad[date_key] = "02/01/2024"
    with pytest.raises(pa.errors.SchemaErrors, match=date_key):
        schema.validate_valid_rows(bad, sync, read_rows=1000)
