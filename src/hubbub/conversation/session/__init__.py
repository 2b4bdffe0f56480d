"""Client sessions: the transport seam, the commands of one session, the conversation service."""
