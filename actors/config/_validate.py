"""The validator: a YAML value -> a config dataclass, one parser per field type (``_PARSERS``),
``${VAR}`` references expanded as each string is read, every problem a
:class:`~actors.errors.ConfigError` naming the file and the dotted key path."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from types import MappingProxyType
from typing import Any, get_type_hints

from ..checks import QUOTE_LIMIT, short_repr
from ..errors import ConfigError
from ..redaction import is_secret_key
from ._fields import _join
from ._redacted import _redact_text
from .cluster import ClusterConfig
from .providers import _PROVIDER_TYPES, ProviderConfig
from .runtime import SupervisorConfig

# `$${` (escape), `${NAME}` / `${NAME:-default}`, or a bare `${` (malformed: no name matched).
_REF = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\})?")
_WHOLE_REF = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?::-[^}]*)?\}")
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class _Ctx:
    file: str | None
    environ: Mapping[str, str]
    templates: dict[str, str]  # filled in by expand(): key path -> text as written

    def error(self, path: str, why: str) -> ConfigError:
        # A key comes from the file: bounded like any quoted value.
        shown = path if len(path) <= 3 * QUOTE_LIMIT else path[: 3 * QUOTE_LIMIT - 3] + "..."
        return ConfigError(why, file=self.file, key_path=shown)

    def expand(self, raw: str, path: str) -> str:
        def substitute(m: re.Match[str]) -> str:
            if m[0] == "$${":
                return "${"
            name, default = m["name"], m["default"]
            if name is None:
                why = "malformed reference: use ${NAME} or ${NAME:-default}, or $${ for a literal"
                raise self.error(path, why)
            value = self.environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                raise self.error(path, f"environment variable {short_repr(name)} is not set")
            return value

        expanded = _REF.sub(substitute, raw)
        if any(m[0] != "$${" for m in _REF.finditer(raw)):
            self.templates[path] = raw
        return expanded


def _is_secret_path(path: str) -> bool:
    segments = re.split(r"[.\[]", path)
    return "headers" in segments or bool(is_secret_key(segments[-1]))


def _show(raw: object, path: str) -> str:
    """How a bad YAML value appears in a message: never a secret, never an expanded value."""
    kind = "null" if raw is None else type(raw).__name__
    if _is_secret_path(path):
        return f"{kind} (value hidden)"
    if not isinstance(raw, str):
        return f"{short_repr(raw)} ({kind})"  # bounded: `raw` may be an expanded alias bomb
    text = short_repr(_redact_text(raw))  # masked first: a cut could split a URL's password
    return f"{text} (from the environment)" if _WHOLE_REF.search(raw) else f"{text} ({kind})"


def _unknown(key: object, valid: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(valid)}"
    return f"unknown {what} {short_repr(key)}; {hint}"


def _mapping(raw: object, path: str, ctx: _Ctx) -> Mapping[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        where = "" if path else " at the top level"
        raise ctx.error(path, f"expected a mapping{where}, got {_show(raw, path)}")
    return raw


def _number(kind: type[int] | type[float], raw: object, path: str, ctx: _Ctx) -> float:
    if kind is float:
        expected = "a number of seconds (float)" if path.endswith("_s") else "a number (float)"
    else:
        expected = "a number of bytes (int)" if path.endswith("_bytes") else "a whole number (int)"
    value = raw
    if isinstance(raw, str) and (ref := _WHOLE_REF.fullmatch(raw)):
        try:
            value = kind(ctx.expand(raw, path))
        except ValueError:
            why = f"environment variable {ref['name']!r} does not hold {expected}"
            raise ctx.error(path, why) from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
    ):
        raise ctx.error(path, f"expected {expected}, got {_show(raw, path)}")
    if not math.isfinite(value):
        raise ctx.error(path, f"expected a finite number, got {_show(raw, path)}")
    return kind(value)


def _string(raw: object, path: str, ctx: _Ctx) -> str:
    if not isinstance(raw, str):
        quote = "; quote it" if isinstance(raw, int | float) else ""
        raise ctx.error(path, f"expected a string (str), got {_show(raw, path)}{quote}")
    return ctx.expand(raw, path)


def _boolean(raw: object, path: str, ctx: _Ctx) -> bool:
    if isinstance(raw, str) and _WHOLE_REF.fullmatch(raw):
        text = ctx.expand(raw, path).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ctx.error(path, "the environment variable does not hold true or false")
    if not isinstance(raw, bool):
        raise ctx.error(path, f"expected true or false, got {_show(raw, path)}")
    return raw


def _optional_string(raw: object, path: str, ctx: _Ctx) -> str | None:
    return None if raw is None else (_string(raw, path, ctx) or None)


def _string_list(raw: object, path: str, ctx: _Ctx) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.error(path, f"expected a list of strings, got {_show(raw, path)}")
    return tuple(_string(item, f"{path}[{i}]", ctx) for i, item in enumerate(raw))


def _string_map(raw: object, path: str, ctx: _Ctx) -> Mapping[str, str]:
    result: dict[str, str] = {}
    for key, value in _mapping(raw, path, ctx).items():
        if not isinstance(key, str) or not key:
            raise ctx.error(_join(path, key), "keys must be non-empty strings")
        result[key] = _string(value, _join(path, key), ctx)
    return MappingProxyType(result)


def _providers(raw: object, path: str, ctx: _Ctx) -> Mapping[str, ProviderConfig]:
    result: dict[str, ProviderConfig] = {}
    for name, body in _mapping(raw, path, ctx).items():
        where = _join(path, name)
        if not isinstance(name, str) or not _PROVIDER_NAME.fullmatch(name):
            raise ctx.error(where, "a provider name uses only letters, digits, '_' and '-'")
        data = _mapping(body, where, ctx)
        types = list(_PROVIDER_TYPES)
        if "type" in data:
            kind = _string(data["type"], f"{where}.type", ctx)
        elif name in _PROVIDER_TYPES:
            kind = name
        else:
            why = f"missing (the name {name!r} is no provider type); expected one of: "
            raise ctx.error(f"{where}.type", why + ", ".join(types))
        if kind not in _PROVIDER_TYPES:
            why = _unknown(data["type"], types, "provider type")
            raise ctx.error(f"{where}.type", why)
        result[name] = _build(_PROVIDER_TYPES[kind], data, where, ctx, name=name)
    return MappingProxyType(result)


def _build(cls: type[Any], raw: object, path: str, ctx: _Ctx, **fixed: Any) -> Any:
    """Build dataclass ``cls`` from a YAML mapping, one field spec (type hint) per key."""
    data = _mapping(raw, path, ctx)
    hints = get_type_hints(cls)
    specs = {f.name: f for f in fields(cls) if f.metadata.get("yaml", True)}
    for key in data:
        if key not in specs:
            raise ctx.error(_join(path, key), _unknown(key, list(specs)))
    kwargs = dict(fixed)
    for key, value in data.items():
        where, hint = _join(path, key), hints[key]
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[key] = _build(hint, value, where, ctx)
        else:
            kwargs[key] = _PARSERS[hint](value, where, ctx)
        check = specs[key].metadata.get("check")
        if check is not None and (problem := check(kwargs[key])) is not None:
            raise ctx.error(where, f"{problem}, got {_show(value, where)}")
        _check_each(specs[key].metadata.get("check_each"), kwargs[key], where, ctx)
    return cls(**kwargs)


def _check_each(
    check: Callable[[Any], str | None] | None, value: Any, path: str, ctx: _Ctx
) -> None:
    """Field metadata ``check_each``: each item of a mapping (``(key, value)``, named by its
    key) or of a list (named by its index); the problem names what is wrong, never the value."""
    if check is None:
        return
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for index, item in items:
        problem = check((index, item) if isinstance(value, Mapping) else item)
        if problem is not None:
            where = _join(path, index) if isinstance(value, Mapping) else f"{path}[{index}]"
            raise ctx.error(where, problem)


_Parser = Callable[[object, str, _Ctx], Any]
_PARSERS: dict[object, _Parser] = {
    float: lambda raw, path, ctx: _number(float, raw, path, ctx),
    int: lambda raw, path, ctx: _number(int, raw, path, ctx),
    str: _string,
    bool: _boolean,
    str | None: _optional_string,
    float | None: lambda raw, path, ctx: None if raw is None else _number(float, raw, path, ctx),
    tuple[str, ...]: _string_list,
    Mapping[str, str]: _string_map,
    Mapping[str, ProviderConfig]: _providers,
    SupervisorConfig | None: lambda raw, path, ctx: (
        None if raw is None else _build(SupervisorConfig, raw, path, ctx)
    ),
    ClusterConfig | None: lambda raw, path, ctx: (
        None if raw is None else _build(ClusterConfig, raw, path, ctx)
    ),
}
