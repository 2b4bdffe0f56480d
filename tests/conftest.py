"""Suite-wide settings. Each test package keeps its own fixtures in its own conftest.py."""
