"""Node-to-node requests: a question every node answers for its own part (the conversation
bus's steering finds the node that holds a conversation this way).

A request travels like a listing question (``Broker.query_nodes``): every node, this one first,
answers within the broker's wait; a node without a handler for the topic, or whose handler
says the request is not for it, answers None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hubbub.core.broker import Broker, NodeQuery

log = logging.getLogger(__name__)

# A node's part of a relay request: the payload in, its answer out (None: not for this node).
RelayHandler = Callable[[bytes], bytes | None]


class Relays:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._handlers: dict[str, RelayHandler] = {}

    def handle(self, topic: str, handler: RelayHandler) -> None:
        """``handler`` answers this node's part of requests on ``topic``: it gets the payload
        and returns its answer, or None when the request is not for this node. It runs on the
        event loop and must not block."""
        self._handlers[topic] = handler

    def answer(self, topic: str, payload: bytes) -> bytes | None:
        handler = self._handlers.get(topic)
        if handler is None:
            return None
        try:
            return handler(payload)
        except Exception:  # a handler's bug must not cost the asker its other answers
            log.exception("relay handler for %r failed", topic)
            return None

    async def ask(self, app_id: str, topic: str, payload: bytes) -> list[bytes]:
        """Ask every node (this one first); returns the answers that were not None, from the
        nodes that answered within the broker's wait."""
        query = NodeQuery(app_id, "relay", topic=topic, payload=payload)
        answers = await self._broker.query_nodes(query)
        return [answer.relayed for answer in answers if answer.relayed is not None]
