"""What ``hubbub config init`` writes: a commented configuration that runs as it is, with
fresh key ids and secrets (never the demo ones)."""

from __future__ import annotations

import secrets

TEMPLATE = """\
# Hubbub configuration (TOML), written by `hubbub config init`.
# Check it with `hubbub config check {path}`, run it with `hubbub serve --config {path}`.
# Every scalar field can also be set from the environment as HUBBUB_<TABLE>_<FIELD>
# (HUBBUB_SERVER_PORT=9000, HUBBUB_BROKER_URL=redis://...): file < environment < flags.
# This file holds secrets: keep it readable by the server's user only (chmod 600).

[server]
host = "127.0.0.1"            # behind a reverse proxy on the same machine; "0.0.0.0" for all
port = 8080
trusted_proxies = []          # e.g. ["127.0.0.1"]: these may name the client in X-Forwarded-For
connect_attempts_per_ip = 60  # WebSocket upgrades per connect_window_s per client IP; 0 = off
connect_window_s = 60
shutdown_drain_s = 1.0        # on SIGTERM: going_away, this long, then close 1001
shutdown_reconnects_per_s = 1000 # going_away spreads reconnects to about this rate
backlog = 1024                # listen queue for pending TCP connects (reconnect storms)
keepalive_interval_s = 30
keepalive_timeout_s = 10
slow_consumer_bytes = 1048576 # unsent bytes before a connection is dropped (1008 slow consumer)

[limits]                      # per connection; 0 disables a limit
rate_per_second = 100
rate_burst = 200
ping_rate_per_second = 2      # pings have a bucket of their own (spec decision 8)
ping_burst = 20
max_message_bytes = 65536
max_channels = 100

[api]                         # REST control plane request limits; 0 and 0 disable one
requests_per_second_per_key = 50
request_burst_per_key = 100
requests_per_second_per_ip = 50
request_burst_per_ip = 100

[broker]
kind = "memory"               # "redis" to run several nodes as one server
# url = "redis://127.0.0.1:6379/0"
# max_connections = 64        # pooled Redis connections per server; bursts queue for one

[[apps]]
id = "{app_id}"
# max_concurrent_connections = 1000    # close 4010 above it
# max_messages_per_period = 5000000
# conversation_projects = ["*"]        # projects whose conversations its secret keys may read

# Browsers connect with the publishable key: new MeteredPeer({{ apiKey: "{pk_id}", url }}).
[[apps.keys]]
id = "{pk_id}"
kind = "publishable"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence"]
allowed_origins = []          # e.g. ["https://app.example.com"]; empty allows every Origin

# Your backend mints JWTs and calls the REST API with the secret key:
#   Authorization: Bearer {sk_id}:<secret>
# Instead of the secret inline, give `secret_env = "VARIABLE"` or `secret_file = "path"`.
[[apps.keys]]
id = "{sk_id}"
kind = "secret"
secret = "{sk_secret}"
channel_patterns = ["**"]
actions = ["publish", "subscribe", "presence", "send"]

# Live AI conversations: a directory of project files (relative to this file).
# [conversations]
# projects_dir = "projects"
# database_url = "sqlite+aiosqlite:///hubbub-conversations.db"
# events_app = "{app_id}"   # the conversation bus: watch conversations/{{projectId}}/{{id}}

# The demo pages (/demo/chat, /demo/call, ...) and their token helper: off outside demo mode,
# because they hand out tokens of this app to anyone who can reach the server.
# [demo]
# enabled = true
# app = "{app_id}"

[webrtc]
max_peer_connections = 100
max_peer_connections_per_ip = 10
"""


def new_config_toml(path: str = "hubbub.toml") -> str:
    return TEMPLATE.format(
        path=path,
        app_id="app-" + secrets.token_hex(4),
        pk_id="pk_live_" + secrets.token_urlsafe(18),
        sk_id="sk_id_" + secrets.token_urlsafe(12),
        sk_secret="sk_secret_" + secrets.token_urlsafe(32),
    )
