"""Files the server reads at run time, shipped as package data (no build step): the static
web pages and the demo conversation projects.

They are found through :mod:`importlib.resources`, so an installed wheel serves them from
wherever it was installed; nothing here depends on a source checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _directory(name: str) -> Path:
    found = resources.files(__name__) / name
    # A regular (unzipped) install, editable or not, hands out real directories; a zipped
    # import would need the files extracted, which nothing here supports.
    if not isinstance(found, Path) or not found.is_dir():
        raise RuntimeError(f"hubbub package data {name!r} is missing from {found}")
    return found


def static_dir() -> Path:
    """The web pages: ``index.html`` (landing), ``console/``, ``demo/``, ``client/hubbub.js``,
    ``assets/`` (what the pages share)."""
    return _directory("static")


def docs_dir() -> Path | None:
    """The documentation (``docs/*.md``) when running from a source checkout, else None: the
    docs ship with the source, not inside the package."""
    root = Path(__file__).resolve().parents[3]
    docs = root / "docs"
    if (root / "pyproject.toml").is_file() and (docs / "realtime-protocol.md").is_file():
        return docs
    return None


def demo_projects_dir() -> Path:
    """The demo conversation projects (``support-desk.yaml``) that demo mode serves."""
    return _directory("projects")
