"""The conversation protocol's vocabulary: client commands, server messages, error texts, ids."""
