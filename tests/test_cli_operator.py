"""What an operator runs: ``--version``, ``config init`` -> ``config check`` -> ``serve``,
``--log-level`` and the precedence file < environment < flags."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import aiohttp
import pytest

from hubbub import __version__
from hubbub.cli import main
from hubbub.config import DEMO_CONFIG_TOML
from tests.support.server import running_server


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own exits (--version, usage errors)
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"hubbub {__version__}")


@pytest.mark.parametrize("level", ["LOUD", "info2", ""])
def test_unknown_log_levels_are_refused(capsys: pytest.CaptureFixture[str], level: str) -> None:
    code, _, err = run(capsys, "--log-level", level, "serve")
    assert code == 2
    assert "--log-level: invalid choice" in err
    assert "DEBUG" in err


def test_log_levels_are_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--log-level", "warning", "keys", "new", "--kind", "secret")
    assert code == 0 and "sk_id_" in out


def test_config_init_writes_fresh_keys_readable_by_the_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    assert run(capsys, "config", "init", "--out", str(first))[0] == 0
    assert run(capsys, "config", "init", "--out", str(second))[0] == 0
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    keys = [tomllib.loads(p.read_text())["apps"][0]["keys"] for p in (first, second)]
    demo = tomllib.loads(DEMO_CONFIG_TOML)["apps"][0]["keys"]
    demo_values = {value for key in demo for value in (key["id"], key.get("secret"))}
    for generated in keys:
        assert {key["kind"] for key in generated} == {"publishable", "secret"}
        assert (
            not {value for key in generated for value in key.values() if isinstance(value, str)}
            & demo_values
        )
    assert keys[0][0]["id"] != keys[1][0]["id"]
    assert keys[0][1]["secret"] != keys[1][1]["secret"]
    # an existing file is not overwritten without --force
    code, _, err = run(capsys, "config", "init", "--out", str(first))
    assert code == 1 and "exists" in err
    assert run(capsys, "config", "init", "--out", str(first), "--force")[0] == 0


def test_config_init_without_out_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "init")
    assert code == 0
    assert tomllib.loads(out)["apps"][0]["keys"][1]["kind"] == "secret"


def test_config_check_reports_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[server]\nprot = 1\nport = -1\n[[apps]]\nid = "a"\n[[apps.keys]]\nid = "k"\n'
        'kind = "secret"\nsecret_env = "HUBBUB_TEST_UNSET_SECRET"\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "config", "check", str(path))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"hubbub: configuration error in {path}: server: Object contains unknown field `prot` "
        "(did you mean `port`?)",
        f"hubbub: configuration error in {path}: apps[0].keys[0].secret_env: environment "
        "variable HUBBUB_TEST_UNSET_SECRET is not set",
        f"hubbub: configuration error in {path}: server.port: must be between 0 and 65535",
    ]


def test_config_check_names_a_bad_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hubbub.toml"
    path.write_text("", encoding="utf-8")
    monkeypatch.setenv("HUBBUB_LIMITS_RATE_PER_SECOND", "fast")
    code, _, err = run(capsys, "config", "check", str(path))
    assert code == 2
    assert err.strip() == (
        "hubbub: configuration error in <environment>: HUBBUB_LIMITS_RATE_PER_SECOND: "
        "Expected `float`, got `str`"
    )


@pytest.mark.integration
async def test_config_init_check_serve_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hubbub.toml"
    assert run(capsys, "config", "init", "--out", str(path))[0] == 0
    code, out, _ = run(capsys, "config", "check", str(path))
    assert (code, out.strip()) == (0, f"{path}: the configuration is valid")
    text = path.read_text(encoding="utf-8")
    publishable, secret = tomllib.loads(text)["apps"][0]["keys"]
    async with running_server(text) as server, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.http_url}/v1?key={publishable['id']}") as ws:
            welcome = json.loads((await ws.receive(timeout=5)).data)
            assert welcome["type"] == "welcome"
        auth = {"Authorization": f"Bearer {secret['id']}:{secret['secret']}"}
        async with session.get(f"{server.http_url}/v1/usage", headers=auth) as response:
            assert response.status == 200
        async with session.ws_connect(f"{server.http_url}/v1?key=pk_live_demo") as ws:
            refused = await ws.receive(timeout=5)
            assert ws.close_code == 4001, refused  # the demo key is not in a generated config


@pytest.mark.integration
async def test_precedence_file_then_environment_then_flags() -> None:
    text = '[server]\nhost = "127.0.0.3"\n'
    async with running_server(text, host=None) as server:
        assert server.host == "127.0.0.3"
    env = {"HUBBUB_SERVER_HOST": "127.0.0.2"}
    async with running_server(text, host=None, env=env) as server:
        assert server.host == "127.0.0.2"
    async with running_server(text, host="127.0.0.1", env=env) as server:
        assert server.host == "127.0.0.1"
