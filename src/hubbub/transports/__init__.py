"""Transports turn bytes on a socket into calls on the hub (and back)."""
