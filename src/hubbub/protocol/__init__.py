"""Sans-I/O protocol layer: message types, decoding and validation, codes, channel patterns.

Nothing here touches sockets, asyncio or clocks; time is passed in by callers. Decoding never
raises into the caller: bad input becomes a :class:`~hubbub.protocol.frames.FrameError` value
carrying the documented error code.
"""
