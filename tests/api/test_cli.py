"""``hubbub token`` and ``hubbub keys new``."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from hubbub.auth.tokens import TokenRejected, verify_token
from hubbub.cli import main
from hubbub.config import demo_config, key_ring_of, parse_config
from tests.api.conftest import API_TOML, TURN_SECRET


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_token_with_the_demo_config_verifies_against_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "token", "--app", "demo", "--peer", "alice", "--ttl", "120")
    assert code == 0
    principal = verify_token(out.strip(), key_ring_of(demo_config()), time.time())
    assert not isinstance(principal, TokenRejected)
    assert principal.peer_id == "alice"
    assert principal.expires_at is not None and principal.expires_at - time.time() <= 120


def test_token_with_a_config_file_narrows_channels_and_adds_turn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text(API_TOML, encoding="utf-8")
    code, out, _ = _run(
        capsys, "token", "--app", "acme", "--peer", "bob", "--channels", "room/1", "lobby/*",
        "--config", str(path),
    )  # fmt: skip
    assert code == 0
    principal = verify_token(out.strip(), key_ring_of(parse_config(API_TOML)), time.time())
    assert not isinstance(principal, TokenRejected)
    assert principal.scope.allows_channel("lobby/x") and not principal.scope.allows_channel("x")
    # The signing key (sk_id_acme, the app's first secret key) has a TURN block.
    assert principal.welcome_metadata is not None
    assert b'"username"' in principal.welcome_metadata and TURN_SECRET not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "nope", "--peer", "a"], "no app 'nope'"),
        (["--app", "demo", "--peer", "é"], "--peer"),
        (["--app", "demo", "--peer", "a", "--ttl", "0"], "--ttl"),
        (["--app", "demo", "--peer", "a", "--ttl", "86401"], "--ttl"),
        (["--app", "demo", "--peer", "a", "--channels", "bad\\"], "backslash"),
    ],
)
def test_token_refuses_what_it_cannot_sign(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "token", *args)
    assert code == 1 and out == "" and message in err


def test_token_outside_the_keys_patterns_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text(
        '[[apps]]\nid = "a"\n[[apps.keys]]\nid = "sk_id_a"\nkind = "secret"\n'
        'secret = "sk_secret_a_0123456789abcdefghijklmnopq"\nchannel_patterns = ["room/*"]\n',
        encoding="utf-8",
    )
    code, _, err = _run(
        capsys, "token", "--app", "a", "--peer", "p", "--channels", "x", "--config", str(path)
    )
    assert code == 1 and "outside" in err
    path.write_text('[[apps]]\nid = "a"\n', encoding="utf-8")
    code, _, err = _run(capsys, "token", "--app", "a", "--peer", "p", "--config", str(path))
    assert code == 1 and "no secret key" in err


def test_token_with_a_broken_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[apps]\n", encoding="utf-8")
    code, _, err = _run(capsys, "token", "--app", "a", "--peer", "p", "--config", str(path))
    assert code == 2 and "configuration error" in err


@pytest.mark.parametrize("kind", ["publishable", "secret"])
def test_keys_new_prints_fresh_toml_that_a_config_accepts(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    snippets = []
    for _ in range(2):
        code, out, _ = _run(capsys, "keys", "new", "--kind", kind)
        assert code == 0
        snippets.append(out)
    assert snippets[0] != snippets[1]
    [key] = tomllib.loads(snippets[0])["apps"]["keys"]
    assert key["kind"] == kind
    prefix = "pk_live_" if kind == "publishable" else "sk_id_"
    assert key["id"].startswith(prefix) and len(key["id"]) >= len(prefix) + 16
    if kind == "secret":
        assert key["secret"].startswith("sk_secret_") and len(key["secret"]) >= 40
    config = parse_config('[[apps]]\nid = "x"\n' + snippets[0] + snippets[1])
    assert len(config.apps[0].keys) == 2


def test_the_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hubbub", "keys", "new", "--kind", "secret"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and "sk_secret_" in result.stdout
