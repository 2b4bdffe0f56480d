"""Hubbub: a self-hosted realtime server (Metered-compatible pub/sub and live AI conversations)."""

__version__ = "0.1.0"


def version() -> str:
    """The installed distribution's version (the source tree's when it was never installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("hubbub")
    except PackageNotFoundError:
        return __version__
