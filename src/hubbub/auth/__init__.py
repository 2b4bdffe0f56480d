"""Apps and keys, JWT verification and minting, connect-time authentication."""
