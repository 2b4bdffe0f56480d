"""The [conversations] section of the TOML configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubbub.config import ConfigError, demo_config, load_config, parse_config


def test_defaults_and_demo_mode() -> None:
    config = parse_config("")
    assert config.conversations.projects_dir is None
    assert config.conversations.auth_attempts_per_ip == 10
    assert config.conversations.auth_window_s == 900.0
    bounds = config.conversations
    assert (bounds.rate_per_second, bounds.rate_burst) == (100.0, 200)
    assert (bounds.max_text_input_chars, bounds.auth_timeout_s) == (10_000, 10.0)
    assert (bounds.connect_attempts_per_ip, bounds.connect_window_s) == (60, 60.0)
    demo = demo_config()
    assert demo.conversations.projects_dir is not None
    assert Path(demo.conversations.projects_dir, "support-desk.yaml").is_file()
    assert demo.conversations.demo_api is True


def test_a_full_section() -> None:
    config = parse_config(
        """
[conversations]
projects_dir = "/srv/projects"
database_url = "postgresql+asyncpg://hubbub@db/hubbub"
auth_attempts_per_ip = 0
python_tools = ["pkg.mod:fn"]

[conversations.llm]
base_url = "http://127.0.0.1:11434/v1"
model = "llama3.1"
api_key_env = "OPENAI_API_KEY"
""",
        environ={"OPENAI_API_KEY": "sk-from-env"},
    )
    assert config.conversations.llm is not None
    assert config.conversations.llm.model == "llama3.1"
    assert config.conversations.llm.api_key == "sk-from-env"
    assert config.conversations.python_tools == ["pkg.mod:fn"]


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ("auth_attempts_per_ip = -1", "conversations.auth_attempts_per_ip", "must not be negative"),
        ("auth_window_s = 0", "conversations.auth_window_s", "must be positive"),
        ("rate_per_second = -1", "conversations.rate_per_second", "must not be negative"),
        ("rate_burst = -5", "conversations.rate_burst", "must not be negative"),
        ("max_text_input_chars = -1", "conversations.max_text_input_chars", "must not be"),
        ("max_variables_bytes = -1", "conversations.max_variables_bytes", "must not be"),
        ("auth_timeout_s = -0.5", "conversations.auth_timeout_s", "must not be negative"),
        ("connect_attempts_per_ip = -1", "conversations.connect_attempts_per_ip", "must not"),
        ("connect_window_s = 0", "conversations.connect_window_s", "must be positive"),
        ('python_tools = ["nocolon"]', "conversations.python_tools[0]", "module:function"),
        ("surprise = 1", "conversations", "unknown field `surprise`"),
        ("[conversations.llm]\nmodel = 'm'", "conversations.llm", "base_url"),
    ],
)
def test_bad_values_are_refused(body: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[conversations]\n{body}\n", "hubbub.toml")
    assert caught.value.field.startswith(field)
    assert problem in caught.value.problem


def test_a_relative_projects_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    config_file = tmp_path / "etc" / "hubbub.toml"
    config_file.write_text('[conversations]\nprojects_dir = "projects"\n')
    config = load_config(config_file)
    assert config.conversations.projects_dir == str(tmp_path / "etc" / "projects")
    config_file.write_text('[conversations]\nprojects_dir = "/srv/projects"\n')
    assert load_config(config_file).conversations.projects_dir == "/srv/projects"
