"""The configuration this feature adds: [api] limits, app quotas, legacy sk_live_ secrets."""

from __future__ import annotations

import pytest

from hubbub.config import ConfigError, parse_config
from hubbub.server import build_node

APP = '[[apps]]\nid = "a"\n'


def test_defaults_leave_apps_unlimited_and_rest_limited() -> None:
    config = parse_config(APP)
    assert config.api.request_burst_per_key > 0 and config.api.request_burst_per_ip > 0
    quota = build_node(config).quota("a")
    assert quota.max_concurrent_connections is None
    assert quota.max_messages_per_period is None
    assert quota.period_s == 30 * 24 * 3600


def test_app_quotas_reach_the_node() -> None:
    config = parse_config(
        APP + "max_concurrent_connections = 5\nmax_messages_per_period = 7\n"
        'message_period_s = 60\nplan_name = "P"\n'
    )
    quota = build_node(config).quota("a")
    assert (quota.max_concurrent_connections, quota.max_messages_per_period) == (5, 7)
    assert quota.period_bounds(125.0) == (120, 180)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (APP + "max_concurrent_connections = -1\n", "apps[0].max_concurrent_connections"),
        (APP + "max_messages_per_period = -5\n", "apps[0].max_messages_per_period"),
        (APP + "message_period_s = 0\n", "apps[0].message_period_s"),
        (APP + 'max_messages_per_period = "lots"\n', "apps[0].max_messages_per_period"),
        ("[api]\nrequest_burst_per_key = -1\n", "api.request_burst_per_key"),
        ("[api]\nrequests_per_second_per_ip = 0\n", "api.request_burst_per_ip"),
        ("[api]\nrequest_burst_per_key = 0\n", "api.request_burst_per_key"),
        ("[api]\nper_key = 1\n", "api"),
        (
            APP
            + '[[apps.keys]]\nid = "sk_id_1"\nkind = "secret"\nsecret = "sk_live_same"\n'
            + '[[apps.keys]]\nid = "sk_id_2"\nkind = "secret"\nsecret = "sk_live_same"\n',
            "apps[0].keys[1].secret",
        ),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.field == field, caught.value


def test_both_rest_limits_may_be_disabled() -> None:
    config = parse_config(
        "[api]\nrequests_per_second_per_key = 0\nrequest_burst_per_key = 0\n"
        "requests_per_second_per_ip = 0\nrequest_burst_per_ip = 0\n"
    )
    assert config.api.request_burst_per_key == 0
