"""What the Launchpad shows: every run-config field of every push has a description."""

from __future__ import annotations

import pytest

from contentstack_assets.syncs.events import EventsPushConfig
from contentstack_assets.syncs.merges import MergesPushConfig
from contentstack_assets.syncs.push import PushConfig


@pytest.mark.parametrize("config", [PushConfig, EventsPushConfig, MergesPushConfig])
def test_every_config_field_says_what_it_does(config):
    fields = config.to_config_schema().as_field().config_type.fields
    assert fields and all(field.description for field in fields.values()), {
        name: field.description for name, field in fields.items()
    }
