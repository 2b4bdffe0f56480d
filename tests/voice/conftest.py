"""Voice tests need the `voice` extra (make test installs it) and the espeak-ng program."""
