"""Reading a config file: bounded in size, YAML parsed safely with its aliases' expansion
bounded before anything is built from it, then validated (:mod:`._validate`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

import yaml

from ..errors import ConfigError
from ._validate import _build, _Ctx
from .transport import TransportConfig

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_NODES",
    "load_config",
    "parse_config",
]


#: A config file larger than this is refused before it is parsed (a full config is ~8 KB).
MAX_CONFIG_BYTES = 1 << 20
#: A YAML document whose nodes, aliases expanded, outnumber this is refused before it is built
#: (``config/transport.yaml``, every key spelled out, has under 200): a few hundred bytes of nested
#: aliases (a "billion laughs") expand to millions, which would cost seconds and gigabytes
#: wherever the value is walked.
MAX_YAML_NODES = 10_000


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> TransportConfig:
    """Read, expand and validate the YAML file at ``path`` (``environ`` defaults to os.environ)."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=source) from None
    if len(raw) > MAX_CONFIG_BYTES:
        why = f"the file is larger than {MAX_CONFIG_BYTES} bytes (a whole config is a few KB)"
        raise ConfigError(why, file=source)
    try:
        data = _safe_load(raw.decode("utf-8"), source)
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", file=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc), file=source) from None
    return parse_config(data, source=source, environ=environ)


def _safe_load(text: str, source: str) -> object:
    """``yaml.safe_load(text)``, refusing a document that expands past :data:`MAX_YAML_NODES`
    (or refers to itself) before anything is built from it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except RecursionError:  # composing and building recurse once per level of nesting
        raise ConfigError("the document is nested too deeply", file=source) from None
    except ValueError:  # int() past Python's digit limit (sys.get_int_max_str_digits)
        raise ConfigError("invalid YAML: a number too long to read", file=source) from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the nodes of the document as if every alias were replaced by a copy of what it
    names; past :data:`MAX_YAML_NODES`, refuse it. Linear in the distinct nodes (each one's
    expanded size is computed once), so a bomb is refused in microseconds."""
    sizes: dict[int, int] = {}  # id(node) -> its expanded size, once known
    entered: set[int] = set()  # the nodes on the current path: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            entered.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children(node))
            if size > MAX_YAML_NODES:
                why = (
                    f"the document expands to more than {MAX_YAML_NODES} nodes through its "
                    "aliases (&anchor/*alias); a config needs a few hundred"
                )
                raise ConfigError(why, file=source)
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in entered:
            raise ConfigError("an alias refers to a node that contains it (a cycle)", file=source)
        entered.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children(node) if id(child) not in sizes)


def parse_config(
    data: object, *, source: str | None = None, environ: Mapping[str, str] | None = None
) -> TransportConfig:
    """Validate what ``yaml.safe_load`` returned; ``source`` names the file in errors."""
    ctx = _Ctx(source, os.environ if environ is None else environ, {})
    config: TransportConfig = _build(TransportConfig, data, "", ctx, source=source)
    return replace(config, templates=ctx.templates)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # Only the mark and the problem text: str(exc) would quote the offending line.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return f"invalid YAML: {problem}"
    return f"invalid YAML ({type(exc).__name__})"
