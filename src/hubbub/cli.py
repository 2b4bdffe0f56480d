"""``hubbub`` command line: ``serve``, ``token``, ``keys new`` (and helpers added later)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from hubbub.config import Config, ConfigError, demo_config, load_config

EXIT_CONFIG_ERROR = 2
EXIT_USAGE_ERROR = 1


def _demo_banner(config: Config, host: str, port: int) -> str:
    url = f"ws://{host}:{port}"
    lines = [
        "Hubbub demo mode (no --config): app 'demo' with these keys:",
    ]
    for app in config.apps:
        for key in app.keys:
            actions = ", ".join(sorted(key.effective_actions()))
            secret = f", secret {key.secret}" if key.secret else ""
            lines.append(f"  {key.kind:<11} {key.id}{secret} (channels ** ; {actions})")
    lines.append(
        f'Connect with the SDK: new MeteredPeer({{ apiKey: "pk_live_demo", url: "{url}" }})'
    )
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    from hubbub.server import Listening, serve

    try:
        config = load_config(args.config) if args.config else demo_config()
    except ConfigError as exc:
        print(f"hubbub: configuration error in {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if config.conversations.projects_dir is not None:
        problem = _check_projects(config.conversations.projects_dir)
        if problem is not None:
            print(f"hubbub: project error in {problem}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
    if args.host is not None:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port

    def on_listening(where: Listening) -> None:
        if not args.config:
            print(_demo_banner(config, where.host, where.port), flush=True)
            if config.conversations.projects_dir is not None:
                print(
                    f"Live conversations: ws://{where.host}:{where.port}/ws "
                    '(project support-desk, API key "demo-conversation-key")',
                    flush=True,
                )
                print(
                    f"Voice demo (WebRTC): http://{where.host}:{where.port}/demo/voice",
                    flush=True,
                )
        print(f"Hubbub listening on http://{where.host}:{where.port}", flush=True)

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; this is belt and braces
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(config, on_listening))
    return 0


def _token(args: argparse.Namespace) -> int:
    from hubbub.auth.cli_tools import TokenRequestError, token_for

    try:
        config = load_config(args.config) if args.config else demo_config()
        print(token_for(config, args.app, args.peer, args.channels, args.ttl, time.time()))
    except ConfigError as exc:
        print(f"hubbub: configuration error in {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except TokenRequestError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from hubbub.auth.cli_tools import new_key_toml

    print(new_key_toml(args.kind), end="")
    return 0


def _check_projects(directory: str) -> str | None:
    """Load every project file in ``directory``; the first problem, or None."""
    from pathlib import Path

    from hubbub.conversation.project.loader import ProjectError, load_projects_dir
    from hubbub.conversation.project.templates import TemplateRenderer

    try:
        load_projects_dir(Path(directory), TemplateRenderer())
    except ProjectError as exc:
        return str(exc)
    return None


def _projects_check(args: argparse.Namespace) -> int:
    problem = _check_projects(args.directory)
    if problem is not None:
        print(f"hubbub: project error in {problem}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(f"{args.directory}: all project files are valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbub", description="Hubbub realtime server")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML configuration file (default: demo mode)")
    serve.add_argument("--host", help="listen address (overrides [server] host)")
    serve.add_argument("--port", type=int, help="listen port (overrides [server] port; 0 = any)")
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("token", help="print a JWT signed with an app's secret key")
    token.add_argument("--app", required=True, help="app id")
    token.add_argument("--peer", required=True, help="peer id (the token's sub)")
    token.add_argument("--channels", nargs="+", help="channels or patterns (default: the key's)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--config", help="TOML configuration file (default: demo mode)")
    token.set_defaults(handler=_token)

    keys = commands.add_parser("keys", help="API key helpers")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new_key = key_commands.add_parser("new", help="print a TOML snippet for a fresh key")
    new_key.add_argument("--kind", choices=["publishable", "secret"], required=True)
    new_key.set_defaults(handler=_new_key)

    projects = commands.add_parser("projects", help="conversation project files")
    project_commands = projects.add_subparsers(dest="projects_command", required=True)
    check = project_commands.add_parser("check", help="validate project files without serving")
    check.add_argument("directory", help="directory of project files (*.yaml, *.yml)")
    check.set_defaults(handler=_projects_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.handler(args)
    return result
