"""Personalize hosts per region, and the rule that only loopback hosts may use plain http."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from contentstack_assets.urls import mask_url

Region = Literal["aws-na", "aws-eu", "aws-au", "azure-na", "azure-eu", "gcp-na", "gcp-eu"]

# region -> (Edge API, Management API); neither takes a /v1 prefix.
HOSTS: dict[str, tuple[str, str]] = {
    "aws-na": ("https://personalize-edge.contentstack.com", "https://personalize-api.contentstack.com"),
    "aws-eu": ("https://eu-personalize-edge.contentstack.com", "https://eu-personalize-api.contentstack.com"),
    "aws-au": ("https://au-personalize-edge.contentstack.com", "https://au-personalize-api.contentstack.com"),
    "azure-na": (
        "https://azure-na-personalize-edge.contentstack.com",
        "https://azure-na-personalize-api.contentstack.com",
    ),
    "azure-eu": (
        "https://azure-eu-personalize-edge.contentstack.com",
        "https://azure-eu-personalize-api.contentstack.com",
    ),
    "gcp-na": (
        "https://gcp-na-personalize-edge.contentstack.com",
        "https://gcp-na-personalize-api.contentstack.com",
    ),
    "gcp-eu": (
        "https://gcp-eu-personalize-edge.contentstack.com",
        "https://gcp-eu-personalize-api.contentstack.com",
    ),
}


def edge_url(region: str) -> str:
    return HOSTS[region][0]


def management_url(region: str) -> str:
    return HOSTS[region][1]


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_api_url(url: str) -> str:
    """Return the url without a trailing slash, or raise ValueError saying what is wrong.

    Requests carry user data (and, for the Management API, a token), so plain http is only
    allowed to this machine: the bundled emulator or a local proxy.
    """
    parts = urlsplit(url)
    if parts.username or parts.password:
        # never echo the URL: its user part may be a password
        raise ValueError("the API URL must not carry credentials (user:password@); remove them from the URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{mask_url(url)!r} is not an http(s) URL (e.g. https://personalize-edge.contentstack.com)"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{mask_url(url)!r} uses plain http to a remote host; use https:// (http is allowed only for "
            "127.0.0.1, localhost or ::1)"
        )
    return url.rstrip("/")
