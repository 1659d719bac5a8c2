"""Keeping secrets out of logs, errors and printed config."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "is_secret_key", "redact_url"]

MASK = "***"
_SECRET = re.compile(r"token|secret|password|passwd|auth|key|signature|sig|credential", re.I)


def is_secret_key(name: str) -> bool:
    """Whether a key or header name usually holds a secret (``api_key``, ``X-Auth-Token``...)."""
    return bool(_SECRET.search(name))


def redact_url(url: str) -> str:
    """``url`` with the userinfo password and secret-looking query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        # A lone user part is often a token itself (https://<token>@host): mask it too.
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_secret_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
