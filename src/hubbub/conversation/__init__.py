"""Live conversations: an AI agent runtime reached over WebSocket (``/ws``) or WebRTC."""
