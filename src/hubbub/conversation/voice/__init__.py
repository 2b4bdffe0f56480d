"""Speech: audio formats, the speech providers, voice input (ASR, VAD) and output (TTS)."""
