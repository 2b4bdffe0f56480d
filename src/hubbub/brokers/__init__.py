"""Backends implementing :mod:`hubbub.core.broker`: ``memory`` (single node) and ``redis``."""
