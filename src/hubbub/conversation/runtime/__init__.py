"""Running conversations: the state machine, the engine, actions, responders, tools, the store."""
