"""The per-sync labels hook: subclass `PersonalizeTranslator` to set asset key prefixes, groups, owners and
tags in Python, as a dagster-sling translator does; by default each sync keeps its spec's own keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from contentstack_assets.spec import SpecError, Sync, SyncsSpec


class PersonalizeTranslator:
    """How the assets of each sync are keyed and labelled.

    Every method receives the sync (its spec model) and returns one label; the result is checked as the
    spec's own keys are. Keys of a sync's assets are `[*prefix, sync name, asset]`, e.g.
    `["crm", "users", "source_users"]`, everywhere (jobs, checks, sensors, `depends_on`).
    """

    def get_key_prefix(self, sync: Sync) -> Sequence[str]:
        """Asset key parts before the sync's name (spec key `key_prefix`)."""
        return sync.key_prefix

    def get_group(self, sync: Sync) -> str | None:
        """The assets' group (spec key `group`; None: the sync's name)."""
        return sync.group

    def get_owners(self, sync: Sync) -> Sequence[str]:
        """Owners of the assets: emails or `team:NAME` (spec key `owners`)."""
        return sync.owners

    def get_tags(self, sync: Sync) -> Mapping[str, str]:
        """Tags of the assets (spec key `tags`)."""
        return sync.tags

    def apply(self, spec: SyncsSpec) -> SyncsSpec:
        """The spec with every sync's labels as this translator gives them.

        Raises:
            SpecError: a label Dagster would refuse, naming the sync and the key.
        """
        syncs = []
        for sync in spec.syncs:
            labels = {
                "key_prefix": tuple(self.get_key_prefix(sync)),
                "group": self.get_group(sync),
                "owners": tuple(self.get_owners(sync)),
                "tags": dict(self.get_tags(sync)),
            }
            try:
                syncs.append(type(sync).model_validate({**dict(sync), **labels}))
            except ValidationError as error:
                problem = error.errors(include_url=False)[0]
                raise SpecError(
                    f"{spec.path}: sync {sync.name!r}: key '{'.'.join(map(str, problem['loc']))}' from "
                    f"{type(self).__name__}: {problem['msg'].removeprefix('Value error, ')}"
                ) from None
        return spec.model_copy(update={"syncs": tuple(syncs)})
