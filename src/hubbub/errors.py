"""The one exception tree: every error Hubbub raises derives from :class:`HubbubError`.

A branch per layer, so ``except CoreError`` means "the hub failed" and never catches a
configuration problem. Errors of the standard kind they refine (``ValueError``) keep it as a
second base, so existing ``except ValueError`` callers still catch them. This module imports
nothing: every layer, the sans-I/O ones included, may derive from it.

* :exc:`HubbubError`

  * :exc:`ConfigError` (``hubbub.config``): the file or the environment is wrong; ``hubbub``
    stops with exit code 2 (mapped in ``hubbub.cli``).
  * :exc:`ProtocolError`: the sans-I/O protocol's errors.

    * :exc:`~hubbub.protocol.patterns.PatternError` (also ``ValueError``)

  * :exc:`CoreError`: the hub's.

    * :exc:`~hubbub.core.broker.BrokerUnavailable`: the shared backend does not answer;
      REST answers 503 ``internal_error`` (mapped once, in ``hubbub.api.errors.guarded``).

  * :exc:`AuthError`: apps, keys and tokens.

    * :exc:`~hubbub.auth.cli_tools.TokenRequestError`: ``hubbub token`` asked for a token the
      configuration cannot sign (mapped in ``hubbub.cli``: exit code 1).

  * :exc:`BrokerError`: the backends'.

    * :exc:`~hubbub.brokers.redis_codec.EnvelopeError` (also ``ValueError``): a message
      from Redis that no node of this version wrote.

  * :exc:`HookError`: calls to the user's backend.

    * :exc:`~hubbub.hooks.http.HookFailure`

  * :exc:`TransportLayerError`: the transports'.

    * :exc:`~hubbub.transports.webrtc_gathering.GatheringTimeout`

  * :exc:`~hubbub.api.errors.ApiError`: a REST answer other than 2xx, as data
    (``{"error": code, "message": text}``; mapped in ``hubbub.api.errors.guarded``).
  * :exc:`ConversationLayerError`: the conversation runtime's.

    * :exc:`~hubbub.conversation.protocol.errors.CommandError`: a client command refused
      with a documented code (mapped to an ``error`` push in the session).
    * :exc:`~hubbub.conversation.protocol.commands.DecodeFailure`
    * :exc:`~hubbub.conversation.project.loader.ProjectError`: a project file is wrong
      (mapped to :exc:`ConfigError` when the server loads projects).
    * :exc:`~hubbub.conversation.project.templates.TemplateError`
    * :exc:`~hubbub.conversation.voice.audio.AudioFormatError` (also ``ValueError``)
    * :exc:`~hubbub.conversation.voice.providers.base.ProviderError`
    * :exc:`~hubbub.conversation.runtime.states.TransitionError`
    * :exc:`~hubbub.conversation.runtime.variables.VariableTypeError`
    * :exc:`~hubbub.conversation.runtime.tools.ToolError`
    * :exc:`~hubbub.conversation.runtime.tools.WebhookError`
    * :exc:`~hubbub.conversation.session.inspect.UnknownCursor` (also ``ValueError``)

  * :exc:`ClientLibraryError`: the Python clients' (``hubbub.client``).

    * :exc:`~hubbub.client.realtime_events.RealtimeError`
    * :exc:`~hubbub.client.realtime_events.DisconnectedError`
    * :exc:`~hubbub.client.conversation.ConversationError`

``ConfigError`` and ``ApiError`` sit right under the root: each is its layer's only error.
"""

from __future__ import annotations


class HubbubError(Exception):
    """The root: anything Hubbub raises on purpose."""


class ProtocolError(HubbubError):
    """Raised by the sans-I/O protocol layer (``hubbub.protocol``)."""


class CoreError(HubbubError):
    """Raised by the hub (``hubbub.core``)."""


class AuthError(HubbubError):
    """Raised by apps, keys and tokens (``hubbub.auth``)."""


class BrokerError(HubbubError):
    """Raised by a backend (``hubbub.brokers``)."""


class HookError(HubbubError):
    """Raised by the calls to the user's backend (``hubbub.hooks``)."""


class TransportLayerError(HubbubError):
    """Raised by a transport (``hubbub.transports``)."""


class ConversationLayerError(HubbubError):
    """Raised by the conversation runtime (``hubbub.conversation``)."""


class ClientLibraryError(HubbubError):
    """Raised by the Python clients (``hubbub.client``)."""
