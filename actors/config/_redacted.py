"""How config objects are shown: a repr and a plain (YAML-shaped) copy with every secret masked,
and values that came from the environment shown as the ``${VAR}`` text they were written as.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from ..redaction import MASK, is_secret_key, redact_text
from ._fields import _join

_BARE_REF = re.compile(r"\$\{[A-Za-z_]\w*\}")  # one reference, no default, nothing else


def _redact_text(text: str) -> str:
    return redact_text(text)


def _plain(value: Any, key: str, path: str, templates: Mapping[str, str]) -> Any:
    """``value`` as plain dicts/lists/scalars (the YAML shape), with secrets masked and values
    that came from the environment shown as the ``${VAR}`` template they were written as.

    The value of a secret-bearing key is masked whole, also when written as a template: its
    literal text (``prefix-${X}``) and its ``${X:-default}`` default are as secret as the
    expansion; only a bare ``${NAME}`` is shown as written. A template elsewhere is shown
    with URL credentials and secret query values masked (``wss://user:***@host/?token=***``).
    """
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), f.name, _join(path, f.name), templates)
            for f in fields(value)
            if f.metadata.get("yaml", True)
        }
    if key == "headers":
        return dict.fromkeys(value, MASK)
    if value is not None and is_secret_key(key):
        # Only a bare `${NAME}` says where the secret comes from without any part of it.
        template = templates.get(path, "")
        return template if _BARE_REF.fullmatch(template) else MASK
    if path in templates:
        return _redact_text(templates[path])
    if isinstance(value, Mapping):
        return {k: _plain(v, k, _join(path, k), templates) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v, "", f"{path}[{i}]", templates) for i, v in enumerate(value)]
    return _redact_text(value) if isinstance(value, str) else value


def _safe_repr(self: Any) -> str:
    """A dataclass ``__repr__`` that masks secret-looking fields and URL credentials."""

    def show(name: str, value: object) -> str:
        if value is not None and is_secret_key(name):
            return repr(MASK)
        return repr(_redact_text(value) if isinstance(value, str) else value)

    shown = (f"{f.name}={show(f.name, getattr(self, f.name))}" for f in fields(self) if f.repr)
    return f"{type(self).__name__}({', '.join(shown)})"
