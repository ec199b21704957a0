"""URLs as they may be shown: every credential in them masked as `***`.

A URL carries a password in its user part (`user:password@`) or in a query parameter: libpq takes
`?password=` and `?sslpassword=`, Snowflake `?private_key_passphrase=`, pyodbc a whole connection string in
`?odbc_connect=` (its `PWD=` inside), an HTTP API `?token=`. A query parameter counts as a credential when its
name (any case) contains pass, pwd, secret, token, key, credential or signature, or is `sig` or
`odbc_connect`. `mask_url` is the only form of a URL that may reach a log, metadata, an error or an alert;
`scrub` takes the same secrets out of a driver's error text. Nothing here imports from the rest of the package.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

import sqlalchemy as sa

MASK = "***"
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|key|credential|signature|^sig$|^odbc_connect$", re.IGNORECASE
)
# name=value pairs of an ODBC connection string; a braced value may hold ';'
_CONNECTION_STRING_PAIR = re.compile(r"([^=;]+)=(\{(?:[^}]|\}\})*\}|[^;]*)")


def is_secret_parameter(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _query_pairs(url: sa.URL) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, values in url.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    ]


def mask_url(url: str | sa.URL) -> str:
    """The URL with its password and every credential-looking query parameter shown as `***`."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception:
        return MASK  # an unparseable URL is not shown at all: any part of it may be the secret
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    pairs = _query_pairs(parsed)
    if not pairs:
        return shown
    return (
        shown
        + "?"
        + "&".join(
            f"{quote_plus(name)}={MASK if is_secret_parameter(name) else quote_plus(value)}"
            for name, value in pairs
        )
    )


def url_secrets(url: str | sa.URL) -> list[str]:
    """The secrets a URL holds: its password, its credential parameters' values, and the credentials inside
    a connection-string value (`PWD={...}` of `odbc_connect`)."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception:
        return [str(url)]
    found = [parsed.password] if parsed.password else []
    for name, value in _query_pairs(parsed):
        if is_secret_parameter(name):
            found.append(value)
        for inner_name, inner in _CONNECTION_STRING_PAIR.findall(value):
            if is_secret_parameter(inner_name.strip()):
                found += [inner, inner.removeprefix("{").removesuffix("}").replace("}}", "}")]
    return [secret for secret in found if secret]


def scrub(text: str, url: str) -> str:
    """A driver's text with the URL in it masked and every secret of it, raw or URL-escaped, as `***`."""
    text = text.replace(url, mask_url(url))
    for secret in sorted(set(url_secrets(url)), key=len, reverse=True):
        for form in (
            secret,
            quote(secret, safe=""),
            quote(secret, safe=" +"),
            quote(secret),
            quote_plus(secret),
        ):
            text = text.replace(form, MASK)
    return text
