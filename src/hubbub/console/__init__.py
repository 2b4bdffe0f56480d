"""Static web pages the server serves (no build step): plain HTML and JavaScript files."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
