"""Templates and conditions: rendering, undefined handling, sandbox refusals, resource limits."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hubbub.conversation.project.templates import TemplateError, TemplateRenderer

CONTEXT: dict[str, Any] = {
    "vars": {"name": "Ann", "order_id": "A-17", "attempts": 1, "items": ["lamp", "desk"]},
    "stageVars": {"topic": "shipping"},
    "constants": {"company": "Acme"},
}


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hello {{ vars.name }} from {{ constants.company }}.", "Hello Ann from Acme."),
        ("{{ vars['order_id'] }}", "A-17"),
        (
            "{% for item in vars.items %}{{ loop.index }}. {{ item }} {% endfor %}",
            "1. lamp 2. desk ",
        ),
        ("{{ vars.items | join(', ') | upper }}", "LAMP, DESK"),
        ("{% if vars.attempts > 0 %}again{% else %}first{% endif %}", "again"),
        ("{{ '%d tries' % vars.attempts }}", "1 tries"),
        ("{{ '{} / {}'.format(vars.name, stageVars.topic) }}", "Ann / shipping"),
        ("<b>{{ '<i>' }}</b> & more\n", "<b><i></b> & more\n"),  # no HTML escaping, newline kept
        ("{{ 2 ** 10 }} {{ 'ab' * 3 }}", "1024 ababab"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "6",
        ),
    ],
)
def test_render(renderer: TemplateRenderer, source: str, expected: str) -> None:
    assert renderer.render(source, CONTEXT) == expected


def test_undefined_renders_empty_even_through_attribute_chains(renderer: TemplateRenderer) -> None:
    source = "[{{ vars.missing }}|{{ vars.missing.deeper.still }}|{{ nothing['x'].y }}]"
    assert renderer.render(source, CONTEXT) == "[||]"


def test_arithmetic_on_undefined_is_an_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="missing"):
        renderer.render("{{ vars.missing + 1 }}", CONTEXT)


def test_variable_named_like_a_dict_method_wins(renderer: TemplateRenderer) -> None:
    context = {"vars": {"items": [1, 2], "update": "soon", "keys": "k"}}
    assert renderer.render("{{ vars.items | sum }} {{ vars.update }} {{ vars.keys }}", context) == (
        "3 soon k"
    )
    assert renderer.render("{{ vars.values() | list | length }}", context) == "3"


def test_render_does_not_mutate_the_context(renderer: TemplateRenderer) -> None:
    context: dict[str, Any] = {"vars": {"items": [1]}}
    for source in ("{{ vars['items'].append(2) }}", "{{ vars.pop('items') }}"):
        with pytest.raises(TemplateError, match="unsafe"):
            renderer.render(source, context)
    assert context == {"vars": {"items": [1]}}


# --- conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("vars.order_id is defined and vars.attempts < 3", True),
        ("vars.order_id is defined and vars.attempts < 1", False),
        ("vars.nothing is defined", False),
        ("vars.nothing", False),  # undefined is falsy
        ("vars.nothing.deeper", False),
        ("(vars.nothing | default(0)) < 3", True),
        ("'lamp' in vars.items", True),
        ("stageVars.topic == 'billing'", False),
        ("vars.name | lower == 'ann'", True),
    ],
)
def test_evaluate(renderer: TemplateRenderer, expression: str, expected: bool) -> None:
    assert renderer.evaluate(expression, CONTEXT) is expected


def test_evaluate_accepts_any_context_keys(renderer: TemplateRenderer) -> None:
    assert renderer.evaluate("self is defined and kwargs == 1", {"self": 0, "kwargs": 1}) is True


def test_comparison_with_undefined_is_an_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="attempts_left"):
        renderer.evaluate("vars.attempts_left < 3", CONTEXT)


# --- load-time checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% if vars.x %}unterminated", "syntax error on line 1"),
        ("line one\n{{ vars.x ", "syntax error on line 2"),
        ("{{ vars.x | no_such_filter }}", "no_such_filter"),
        ("{% endfor %}", "syntax error"),
        (
            "{% for a in x %}{% for b in x %}{% for c in x %}{% for d in x %}"
            "{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
            "nested 4 deep",
        ),
        ("{% include 'secrets.txt' %}", "include %} is not available"),
        ("{% import 'os' as os %}", "import %} is not available"),
        ("a\n{% from 'm' import f %}", "line 2: {% from … import %} is not available"),
        ("{% extends 'base.html' %}", "extends %} is not available"),
    ],
)
def test_check_refuses_broken_templates(
    renderer: TemplateRenderer, source: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        renderer.check(source)
    with pytest.raises(TemplateError, match=message):
        renderer.render(source, CONTEXT)


def test_check_accepts_valid_template(renderer: TemplateRenderer) -> None:
    renderer.check("{% for i in vars.items %}{{ i }}{% endfor %} {{ vars.x.y | default('-') }}")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty condition"),
        ("vars.(", "syntax error"),
        ("a and", "syntax error"),
        ("x | nope", "nope"),
    ],
)
def test_check_expression_refuses_broken_conditions(
    renderer: TemplateRenderer, expression: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        renderer.check_expression(expression)


def test_check_expression_accepts_valid_condition(renderer: TemplateRenderer) -> None:
    renderer.check_expression("vars.order_id is defined and vars.attempts < 3")


# --- sandbox escapes ------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ vars | attr('__class__') }}",
    "{{ vars['__class__'] }}",
    "{{ vars.nothing.__class__ }}",
    "{{ '{0.__class__.__mro__}'.format(vars) }}",
    "{{ '{x.__class__}'.format_map({'x': 1}) }}",
    "{{ vars.items.pop() }}",
    "{% set f = cycler.__init__ %}{{ f.__globals__ }}",
    "{{ (lipsum or range).__globals__ }}",
    "{{ vars.get.__self__ }}",
    "{{ dict.mro()[-1].__subclasses__() }}",
    "{{ '{0[__class__]}'.format(vars) }}",
    "{{ cycler('a').next.__self__ }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ [vars]|map(attribute='__class__')|list }}",
    "{{ [1]|selectattr('__class__')|list }}",
    "{{ [vars]|sort(attribute='__class__') }}",
    "{{ [vars]|groupby('__class__') }}",
    "{{ [vars]|sum(attribute='__class__') }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escape_is_refused(renderer: TemplateRenderer, source: str) -> None:
    with pytest.raises(TemplateError, match=r"unsafe|refused"):
        renderer.render(source, CONTEXT)


@pytest.mark.parametrize(
    "expression",
    ["''.__class__", "cycler.__init__.__globals__", "self._TemplateReference__context"],
)
def test_sandbox_escape_in_condition_is_refused(
    renderer: TemplateRenderer, expression: str
) -> None:
    with pytest.raises(TemplateError, match=r"unsafe|refused"):
        renderer.evaluate(expression, CONTEXT)


def test_lipsum_is_not_available(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="lipsum"):
        renderer.render("{{ lipsum(n=1000000) }}", CONTEXT)


# --- resource limits ------------------------------------------------------------------------

ABUSE = [
    ("{{ range(10**9) | list }}", "range"),
    ("{% for i in range(99999) %}{% endfor %}{% for i in range(10) %}{% endfor %}", "range"),
    ("{{ 2 ** 100000 }}", "power"),
    ("{{ 10 ** 10 ** 10 ** 10 }}", "power"),
    ("{{ 'a' * 10**9 }}", "repetition"),
    ("{{ [1] * 1000000000 }}", "repetition"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ '{:{}}'.format(1, 999999999) }}", "nested"),
    ("{{ '%999999999d' % 1 }}", "format width"),
    ("{{ '%*d' % (999999999, 1) }}", "widths"),
    ("{{ '%0999999999d' | format(1) }}", "format width"),
    ("{{ 'x' | center(1000000000) }}", "center"),
    ("{{ 'x' | indent(1000000000, true) }}", "indent"),
    ("{{ [1] | batch(1000000000, 0) | list }}", "batch"),
    ("{{ 'x'.center(999999999) }}", "center"),
    ("{{ 'x'.ljust(999999999) }}", "ljust"),
    ("{{ 'x'.zfill(999999999) }}", "zfill"),
    ("{{ ('x' * 1000).replace('x', 'y' * 1000) }}", "replace"),
    ("{{ ('x' * 1000) | replace('x', 'y' * 1000) }}", "replace"),
    ("{{ ('x' * 1000).join('y' * 1000) }}", "join"),
    (
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        "longer than",
    ),
    ("{% for i in range(99999) %}{{ 'abcdefghij' }}{% endfor %}", "output longer"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
    ("{{ ['x' * 100000] * 100000 }}", "repetition"),
    ("{{ (['x' * 1000] * 99) | join('y' * 1000) }}", "join"),
    ("{{ ('x' * 1000) | list | join('y' * 1000) }}", "join"),
    ("{{ ('\n' * 10000) | indent('x' * 100) }}", "indent"),
    (
        "{% set ns = namespace(l=[]) %}{% for i in range(30) %}"
        "{% set ns.l = ns.l + ns.l + ['ab'] %}{% endfor %}{{ ns.l | length }}",
        "longer than",
    ),
]


@pytest.mark.parametrize(("source", "message"), ABUSE)
def test_resource_abuse_is_refused_quickly(
    renderer: TemplateRenderer, source: str, message: str
) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match=message):
        renderer.render(source, CONTEXT)
    assert time.monotonic() - started < 2.0


def test_output_cap_is_configurable() -> None:
    small = TemplateRenderer(max_output_chars=10)
    assert small.render("{{ 'x' * 10 }}", {}) == "x" * 10
    with pytest.raises(TemplateError, match="longer than 10"):
        small.render("{{ 'x' * 5 }}{{ 'y' * 6 }}", {})


def test_render_time_budget() -> None:
    hasty = TemplateRenderer(max_render_s=0.02)
    busy = (
        "{% for a in range(300) %}{% for b in range(300) %}{{ ''.upper() }}{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match="too long"):
        hasty.render(busy, {})
    assert time.monotonic() - started < 1.0


def test_render_time_budget_stops_empty_nested_loops() -> None:
    hasty = TemplateRenderer(max_render_s=0.05)
    busy = "{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateError, match="too long"):
        hasty.render(busy, {"s": "x" * 100_000})
    assert time.monotonic() - started < 1.0


def test_loops_keep_their_loop_variable(renderer: TemplateRenderer) -> None:
    source = (
        "{% for x in vars.basket if x != 'desk' %}{{ loop.index }}/{{ loop.length }}:{{ x }}"
        "{% if loop.last %}.{% endif %}{% else %}none{% endfor %}"
    )
    assert (
        renderer.render(source, {"vars": {"basket": ["lamp", "desk", "rug"]}}) == "1/2:lamp2/2:rug."
    )
    assert renderer.render(source, {"vars": {"basket": []}}) == "none"
    tree = "{% for n in nodes recursive %}{{ n.name }}({{ loop(n.kids) }}){% endfor %}"
    nodes = [{"name": "a", "kids": [{"name": "b", "kids": []}]}]
    assert renderer.render(tree, {"nodes": nodes}) == "a(b())"


def test_limits_are_per_render(renderer: TemplateRenderer) -> None:
    source = "{% for i in range(60000) %}{% endfor %}{{ range(10000) | list | length }}"
    assert renderer.render(source, {}) == "10000"
    assert renderer.render(source, {}) == "10000"


def test_failed_render_leaves_renderer_usable(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError):
        renderer.render("{{ ''.__class__ }}", CONTEXT)
    assert renderer.render("ok {{ vars.name }}", CONTEXT) == "ok Ann"


# --- compile cache --------------------------------------------------------------------------


def test_compiled_templates_are_cached_and_bounded() -> None:
    renderer = TemplateRenderer(cache_size=4)
    for i in range(20):
        assert renderer.render(f"n={i}{{{{ vars.name }}}}", CONTEXT) == f"n={i}Ann"
        assert renderer.evaluate(f"vars.attempts < {i}", CONTEXT) is (i > 1)
    assert renderer.cached_count == 8  # 4 templates + 4 expressions
    renderer.render("n=19{{ vars.name }}", CONTEXT)
    assert renderer.cached_count == 8


def test_cache_hit_skips_compilation(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = TemplateRenderer()
    compiled: list[Any] = []
    environment = renderer._env
    original = environment.from_string

    def counting_from_string(source: Any) -> Any:
        compiled.append(source)
        return original(source)

    monkeypatch.setattr(environment, "from_string", counting_from_string)
    for _ in range(3):
        renderer.render("{{ vars.name }}", CONTEXT)
        renderer.check("{{ vars.name }}")
    assert len(compiled) == 1
