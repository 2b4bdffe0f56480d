"""The [broker] section: defaults, and each bad value named with its field."""

from __future__ import annotations

import pytest

from hubbub.config import ConfigError, parse_config
from hubbub.server import build_node


def test_defaults_are_a_single_memory_node() -> None:
    broker = parse_config("").broker
    assert (broker.kind, broker.presence_ttl_s, broker.node_id, broker.cluster) == (
        "memory",
        30.0,
        "",
        False,
    )


def test_a_redis_section_is_accepted_and_wired() -> None:
    config = parse_config(
        '[broker]\nkind = "redis"\nurl = ["redis://127.0.0.1:6379/3"]\nnode_id = "n-1"\n'
        "presence_ttl_s = 3\n"
    )
    node = build_node(config)  # builds the Redis backends without connecting
    assert node.node_id == "n-1"


@pytest.mark.parametrize(
    ("toml", "field", "problem"),
    [
        ('kind = "etcd"', "broker.kind", "Invalid enum value"),
        ('url = "http://x"', "broker.url", "redis://"),
        ('url = ["redis://a", "ftp://b"]', "broker.url[1]", "redis://"),
        ("url = []", "broker.url", "at least one URL"),
        ("presence_ttl_s = 0", "broker.presence_ttl_s", "positive"),
        ('node_id = "a b"', "broker.node_id", "1-64 characters"),
        ('key_prefix = ""', "broker.key_prefix", "1-64 characters"),
        ("cluster = 1", "broker.cluster", "Expected `bool`"),
        ("colour = 1", "broker", "unknown field"),
    ],
)
def test_bad_broker_values_name_their_field(toml: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"[broker]\n{toml}\n", "hubbub.toml")
    assert refused.value.field == field
    assert problem.lower() in refused.value.problem.lower()
