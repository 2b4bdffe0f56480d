"""REST control plane: tokens, channel peers, server publish, kick, usage, OpenAPI."""
