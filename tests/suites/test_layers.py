"""The import floors, read from the source (ast): every third-party library enters through the
module that owns it, nothing above the WebSocket I/O imports it, the contract stands below both
connection implementations, and each wire constant is spelled once."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "actors"

# Each third-party library, and where it may be imported (a file, or a folder's files).
ENTRY = {
    "websocket": ("transport/dial.py",),  # websocket-client: the opening handshake only
    "websockets": ("gateway/_ws.py",),
    "uvloop": ("gateway/_ws.py",),
    "requests": ("providers/",),  # the REST providers
    "urllib3": ("providers/",),
    "yaml": ("config/_loader.py",),
    "prometheus_client": ("metrics.py",),
    "numpy": ("audio.py",),
    "soxr": ("audio.py",),
    "defusedxml": ("safexml.py",),  # XML from outside (TwiML), parsed safely
    "redis": ("cluster/redis.py",),  # the cluster engine
    "jwt": ("pubkey.py",),  # PyJWT: Vonage's application tokens and signed webhooks
    "cryptography": ("pubkey.py",),  # its RSA keys
    "pykka": ("connector.py", "service.py", "session.py", "supervisor.py"),
}

# The WebSocket I/O (see io_modules): only its own package imports it. The package itself
# (actors.transport: the connection factory) is imported by the providers that name it.
FACTORY = "actors.transport"
MAY_NAME_THE_FACTORY = ("providers/",)

# The contract: below the connections, the actors, the providers and the programs.
CONTRACT = "connection.py"
ABOVE_THE_CONTRACT = (
    "actors.cli",
    "actors.connector",
    "actors.dailycall",
    "actors.embedded",
    "actors.emulator",
    "actors.gateway",
    "actors.providers",
    "actors.service",
    "actors.session",
    "actors.supervisor",
    "actors.transport",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from x import y`` counts as x, and as x.y where y is
    a module of ours), relative imports resolved; imports under TYPE_CHECKING count too."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(
                f"{module}.{alias.name}"
                for alias in node.names
                if is_our_module(f"{module}.{alias.name}")
            )
    return found


def is_our_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def sources() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 40, "the package is not where the test looks"
    return found


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def allowed(path: Path, places: tuple[str, ...]) -> bool:
    name = relative(path)
    return any(name.startswith(place) if place.endswith("/") else name == place for place in places)


def test_every_third_party_library_enters_through_its_own_module() -> None:
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for path in sources():
        for module in imports(path):
            top = module.split(".")[0]
            if top in stdlib or top in ("actors", ""):
                continue
            places = ENTRY.get(top)
            if places is None:
                wrong.append(f"{relative(path)}: {top} (a new dependency: give it an entry)")
            elif not allowed(path, places):
                wrong.append(f"{relative(path)}: {top} (only in {', '.join(places)})")
    assert sorted(set(wrong)) == []


def io_modules() -> set[str]:
    """The WebSocket I/O: actors.transport's modules, and whatever imports websocket-client."""
    found = set()
    for path in sources():
        in_transport = relative(path).startswith("transport/") and path.name != "__init__.py"
        uses_the_client = any(module.split(".")[0] == "websocket" for module in imports(path))
        if in_transport or uses_the_client:
            found.add(module_name(path))
    assert found, "no I/O module found: wrong folder?"
    return found


def test_nothing_above_the_websocket_io_imports_its_modules() -> None:
    """The contract, the session, the actors, the service, Daily's connection: none of them
    import the I/O (nor websocket-client, above); providers name its factory, no more."""
    io = io_modules()
    wrong = []
    for path in sources():
        if relative(path).startswith("transport/"):
            continue
        for module in imports(path):
            if module in io:
                wrong.append(f"{relative(path)}: {module}")
            elif module == FACTORY and not allowed(path, MAY_NAME_THE_FACTORY):
                wrong.append(f"{relative(path)}: {module} (only providers name the factory)")
    assert wrong == []


@pytest.mark.parametrize(
    "name", ["session.py", "connector.py", "supervisor.py", "service.py", "dailycall.py"]
)
def test_the_runtime_does_not_import_the_io(name: str) -> None:
    found = imports(PACKAGE / name)
    assert found & (io_modules() | {FACTORY, "websocket"}) == set()


def test_the_contract_stands_below_its_implementations() -> None:
    found = imports(PACKAGE / CONTRACT)
    assert {m for m in found if m.startswith(ABOVE_THE_CONTRACT)} == set()
    assert found & io_modules() == set()


# -- one spelling of each wire constant ------------------------------------------------------

SPELLINGS = (
    "X-Resume-From",
    "X-Gateway-Received",
    "X-Session-Epoch",
    "X-Session-Sent",
    "AC[0-9a-fA-F]{32}",
    "CA[0-9a-fA-F]{32}",
)
MAY_SPELL = ("wire/constants.py",)


def test_each_wire_constant_is_spelled_once() -> None:
    wrong = []
    for path in sources():
        if allowed(path, MAY_SPELL):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            # String constants only: a docstring that names a header is no second definition.
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.Call | ast.Compare):
                for leaf in ast.walk(node):
                    if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                        wrong += [f"{relative(path)}: {s}" for s in SPELLINGS if s in leaf.value]
    assert wrong == []
