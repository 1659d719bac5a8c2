"""Keeping secrets out of logs, errors and printed config."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["MASK", "is_secret_key", "redact_text", "redact_url"]

MASK = "***"
_SECRET = re.compile(r"token|secret|password|passwd|auth|key|signature|sig|credential", re.I)
# In free text (a log line): URLs; HTTP credentials; `name=value` and `"name": "value"` where
# the name looks secret (narrower than _SECRET: "key" or "auth" alone are common words). The
# name pattern is no password, whatever the linter thinks.
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_CREDENTIALS = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.I)
_SECRET_NAME = r"[\w-]*(?:token|secret|password|passwd|api_?key|signature|credential)[\w-]*"  # noqa: S105
_SECRET_ASSIGNMENT = re.compile(rf"(?i)\b({_SECRET_NAME})(=)([^\s,;&'\"]+)")
_SECRET_JSON = re.compile(rf"(?i)(\"{_SECRET_NAME}\"\s*:\s*\")([^\"]*)(\")")


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
    query = _mask_pairs(parts.query)
    # A fragment may carry a token too (OAuth's implicit flow: #access_token=...).
    fragment = _mask_pairs(parts.fragment)
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _mask_pairs(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***``: every other pair kept exactly as written (no
    re-encoding, so a ``${VAR}`` template still reads as one)."""
    if not text:
        return text
    pairs = []
    for pair in text.split("&"):
        name, sep, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if sep and is_secret_key(unquote_plus(name)) else pair)
    return "&".join(pairs)


def redact_text(text: str) -> str:
    """``text`` (a log line, an error message) with secrets masked: passwords and secret query
    values in URLs, ``Bearer``/``Basic`` credentials, and the values of ``token=...``,
    ``"secret": "..."`` and the like. A safety net: secrets should not get there at all."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)
    text = _CREDENTIALS.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _SECRET_JSON.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
