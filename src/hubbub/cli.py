"""``hubbub`` command line: ``serve``, ``config init|check``, ``token``, ``keys new``,
``projects check``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hubbub import logs
from hubbub.config import Config, ConfigError, demo_config, key_ring_of, load_config

EXIT_CONFIG_ERROR = 2
EXIT_USAGE_ERROR = 1


def _version() -> str:
    from hubbub import version

    return version()


def _load(path: str | None) -> Config:
    """The file at ``path`` (or demo mode), with the environment's overrides and secrets."""
    return load_config(path, os.environ) if path else demo_config(os.environ)


def _print_config_error(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(f"hubbub: configuration error in {problem}", file=sys.stderr)


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
        config = _load(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
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
            for line in _demo_banner(config, where.host, where.port).splitlines():
                logs.announce(line)
            if config.conversations.projects_dir is not None:
                logs.announce(
                    f"Live conversations: ws://{where.host}:{where.port}/ws "
                    '(project support-desk, API key "demo-conversation-key")'
                )
                logs.announce(f"Voice demo (WebRTC): http://{where.host}:{where.port}/demo/voice")
            logs.announce(
                f"Landing page, console and demos: http://{where.host}:{where.port}/ "
                "(sign in to /console with sk_id_demo:sk_secret_demo)"
            )
        logs.announce(
            f"Hubbub listening on http://{where.host}:{where.port}",
            event="listening",
            host=where.host,
            port=where.port,
            version=_version(),
        )

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
        config = _load(args.config)
        print(
            token_for(
                key_ring_of(config), args.app, args.peer, args.channels, args.ttl, time.time()
            )
        )
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG_ERROR
    except TokenRequestError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from hubbub.auth.cli_tools import new_key_toml

    print(new_key_toml(args.kind), end="")
    return 0


def _config_init(args: argparse.Namespace) -> int:
    from hubbub.config_template import new_config_toml

    if args.out is None:
        print(new_config_toml(), end="")
        return 0
    out = Path(args.out)
    text = new_config_toml(str(out))
    try:
        # Created readable by its owner only: it holds the secret key's secret.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
        with os.fdopen(os.open(out, flags, 0o600), "w", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        print(f"hubbub: {out} exists (use --force to overwrite it)", file=sys.stderr)
        return EXIT_USAGE_ERROR
    except OSError as exc:
        print(f"hubbub: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    print(f"wrote {out}; run it with: hubbub serve --config {out}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path, os.environ)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG_ERROR
    if config.conversations.projects_dir is not None:
        problem = _check_projects(config.conversations.projects_dir)
        if problem is not None:
            print(f"hubbub: project error in {problem}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
    print(f"{args.path}: the configuration is valid")
    return 0


def _check_projects(directory: str) -> str | None:
    """Load every project file in ``directory``; the first problem, or None."""
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
    parser.add_argument("--version", action="version", version=f"hubbub {_version()}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=logs.LEVELS,
        help="logging level (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="text (default) or json: one JSON object per line",
    )
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

    config = commands.add_parser("config", help="configuration files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    init = config_commands.add_parser(
        "init", help="write a commented configuration with fresh keys and secrets"
    )
    init.add_argument("--out", help="file to write (mode 600; default: print it)")
    init.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    init.set_defaults(handler=_config_init)
    config_check = config_commands.add_parser(
        "check", help="validate a configuration file (and its projects) without serving"
    )
    config_check.add_argument("path", help="TOML configuration file")
    config_check.set_defaults(handler=_config_check)

    projects = commands.add_parser("projects", help="conversation project files")
    project_commands = projects.add_subparsers(dest="projects_command", required=True)
    check = project_commands.add_parser("check", help="validate project files without serving")
    check.add_argument("directory", help="directory of project files (*.yaml, *.yml)")
    check.set_defaults(handler=_projects_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    result: int = args.handler(args)
    return result
