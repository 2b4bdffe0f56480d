"""Python clients for Hubbub: :class:`ConversationClient` for live conversations (``/ws``)."""

from hubbub.client.conversation import ConversationClient, ConversationError

__all__ = ["ConversationClient", "ConversationError"]
