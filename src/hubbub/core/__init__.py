"""The hub: connections, subscriptions, presence, direct routing, limits, and the interfaces
that backends implement (:mod:`hubbub.core.broker`). Imports :mod:`hubbub.protocol` only."""
