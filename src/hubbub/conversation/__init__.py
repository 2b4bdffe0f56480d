"""Live conversations: an AI agent runtime reached over WebSocket (``/ws``) or WebRTC.

The code lives in five subpackages, lowest first; each imports only those above it in this
list (``tests/test_architecture.py`` checks it, and that no module imports in a cycle):

``protocol``
    The conversation protocol as data (spec/conversation-protocol.md): client commands and
    their decoding, every server message as a typed struct with the one encoder, the error
    texts a client can see, the prefixed ids.
``project``
    Agent definitions: the project file schema, the loader and its checks, the template
    sandbox (Jinja2).
``voice``
    Audio formats, the speech stack shared by a server, voice input (ASR and VAD to
    transcripts) and voice output (answer text to speech); ``providers`` holds the interfaces
    every ASR, TTS, VAD and LLM provider implements, and one module per implementation.
``runtime``
    Running conversations: the state machine (``states``), the engine's ``Conversation``
    (the one owner of a conversation's state), actions and effects, responders, tools, the
    AI turns, the event journal and the store; ``functions`` offers tools and actions to an
    LLM that calls functions.
``session``
    What a connected client talks to: the channel seam that transports implement, one
    session's commands and output, the conversation service that opens sessions; and what a
    backend sees: the conversation bus (``bus``, pushes on realtime channels) and ``steering``
    (the bus's REST commands, relayed to the node a conversation runs on).

The conversation transports (``hubbub.transports``: ``/ws``, WebRTC) see only ``session.channel``
and ``protocol.pushes``.
"""
