"""Hubbub: a self-hosted realtime server (Metered-compatible pub/sub and live AI conversations)."""

__version__ = "0.1.0"
