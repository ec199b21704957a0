"""Dagster resources: the Personalize APIs (Edge and Management clients per destination) and the sync state
store. The frames between steps have their IO manager in io_manager.py.
"""

import functools

import dagster as dg

from contentstack_assets.engine.state import StateStore, default_state_url
from contentstack_assets.personalize.client import EdgeClient, ManagementClient, PersonalizeError
from contentstack_assets.spec import DestinationSpec


class PersonalizeResource(dg.ConfigurableResource):
    """Speaks to Contentstack Personalize for any destination of the spec.

    Timeouts and retries are set here, once for every sync; the destination (project, region or URL,
    management token) comes from each sync's spec.
    """

    timeout_s: float = 10.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_max_s: float = 30.0

    def edge(self, destination: DestinationSpec, concurrency: int) -> EdgeClient:
        """An Edge API client whose connection pool holds `concurrency` connections."""
        return EdgeClient(
            destination.resolved_edge_url,
            destination.project_uid,
            pool_size=concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_factor=self.backoff_factor,
            backoff_max_s=self.backoff_max_s,
        )

    def management(self, destination: DestinationSpec) -> ManagementClient | None:
        """A Management API client, or None when no management token is configured."""
        if destination.management_token is None or not destination.management_token.get_secret_value():
            return None
        return ManagementClient(
            destination.resolved_management_url,
            destination.project_uid,
            destination.management_token.get_secret_value(),
            timeout_s=self.timeout_s,
        )

    def list_attributes(self, destination: DestinationSpec) -> list[dict] | None:
        client = self.management(destination)
        return None if client is None else client.list_attributes()

    def list_events(self, destination: DestinationSpec) -> list[dict] | None:
        client = self.management(destination)
        return None if client is None else client.list_events()

    def create_attribute(self, destination: DestinationSpec, key: str, name: str, description: str) -> bool:
        """Create the custom attribute `key` in the destination's project (the `personalize:manage` scope);
        False when the project holds it already."""
        return self._manager(destination).create_attribute(key, name, description)

    def create_event(self, destination: DestinationSpec, key: str, description: str) -> bool:
        """Create the event `key` in the destination's project; False when the project holds it already."""
        return self._manager(destination).create_event(key, description)

    def _manager(self, destination: DestinationSpec) -> ManagementClient:
        client = self.management(destination)
        if client is None:
            raise PersonalizeError(
                f"creating keys in project {destination.project_uid} needs a management token: set "
                "destination.management_token (PERSONALIZE_MANAGEMENT_TOKEN) to a token with the "
                "personalize:manage scope"
            )
        return client


@functools.lru_cache(maxsize=8)
def _store(url: str) -> StateStore:
    return StateStore(url)


class SyncStateResource(dg.ConfigurableResource):
    """The sync state store (`CONTENTSTACK_STATE_URL`; SQLite under DAGSTER_HOME by default)."""

    url: str | None = None

    def store(self) -> StateStore:
        return _store(self.url or default_state_url())
