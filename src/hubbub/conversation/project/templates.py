"""Jinja2 templates for stage prompts and prescripted responses, expressions for conditions.

Project files are written by the operator, but their templates see data that end users control
(variables, transcripts, tool results), so every template runs in Jinja2's
``ImmutableSandboxedEnvironment`` with extra resource limits. This is the only module that
imports Jinja2.

Choices, and why:

* **Undefined names** use ``ChainableUndefined``: ``{{ vars.name }}`` and
  ``{{ vars.order.id }}`` render as an empty string when the variable is not set (a missing
  variable must not break a reply), and a condition such as ``vars.order_id is defined`` works.
  Arithmetic or comparison with an undefined value (``vars.attempts < 3`` while ``attempts`` is
  unset) is an error (:class:`TemplateError`): guessing a value there would silently pick a
  branch. Write ``vars.attempts is defined and vars.attempts < 3`` or
  ``(vars.attempts | default(0)) < 3``.
* **Keys before methods**: ``vars.items`` is the variable ``items`` when one exists, not the
  ``dict.items`` method (Jinja's default prefers the attribute).
* **Immutable sandbox**: templates cannot call ``list.append``, ``dict.update`` and friends, so
  rendering never changes the engine's state.
* **Unsafe attributes raise** instead of rendering as undefined (Jinja's default), so an escape
  attempt such as ``{{ ''.__class__ }}`` is reported, never silently ignored.
* **Resource limits**, per render: the output size (``max_output_chars``), also applied to
  every intermediate value a call, filter, operator or ``namespace`` assignment produces
  (lists and dicts by their approximate printed length); operations whose result grows with
  the product of their inputs (``*``, ``**``, ``replace``, ``join``, ``indent``, widths in
  format specs, ``center`` and friends) are checked *before* they allocate; a total ``range()``
  budget; at most ``MAX_LOOP_DEPTH`` nested ``for`` loops; and a wall-clock deadline
  (``max_render_s``) checked at every call, attribute access, operator, filter and loop
  iteration (loops are rewritten at compile time to iterate through a guard), so even
  ``{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}`` over a long string stops.
* **Autoescape off**: the output is chat text and prompts, not HTML.
* **``urlencode`` encodes a value completely**, ``/`` included (Jinja's leaves ``/`` alone,
  so a tool parameter such as ``../../metrics`` could walk a webhook URL out of its path;
  :mod:`hubbub.conversation.runtime.tools` also refuses a URL whose path leaves the tool's).

Exceptions: every failure (syntax, undefined arithmetic, sandbox refusal, limit exceeded) is a
:class:`TemplateError` whose message says what went wrong and, for syntax errors, on which line.
"""

from __future__ import annotations

import re
import string
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.filters import do_urlencode
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from hubbub.errors import ConversationLayerError

MAX_LOOP_DEPTH: Final = 3
MAX_FORMAT_WIDTH: Final = 1_000
MAX_POWER_BITS: Final = 1_024

# A %-format spec: "%", optional mapping key, flags, width, precision, length, conversion.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")

_Compiled = TypeVar("_Compiled")


class TemplateError(ConversationLayerError):
    """A template or condition could not be compiled or rendered; the message says why."""


class _LimitExceeded(SecurityError):
    """A resource limit was hit; reported as a TemplateError like any sandbox refusal."""


@dataclass(slots=True)
class _RenderBudget:
    deadline: float
    range_items_left: int
    max_chars: int

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _LimitExceeded("template took too long to render")

    def check_size(self, value: Any) -> Any:
        if _approx_chars(value, self.max_chars) > self.max_chars:
            raise _LimitExceeded(f"template produced a value longer than {self.max_chars}")
        return value


def _approx_chars(value: Any, limit: int, depth: int = 0) -> int:
    """Roughly how long ``str(value)`` is; stops counting once past ``limit`` (cost ≤ limit)."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, list | tuple | set | frozenset | dict):
        if depth > 20:
            return limit + 1
        total = 2
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            total += 2 + _approx_chars(item, limit - total, depth + 1)
            if total > limit:
                break
        return total
    return 16


_budget: ContextVar[_RenderBudget | None] = ContextVar("hubbub_template_budget", default=None)


def _tick() -> _RenderBudget | None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()
    return budget


def _checked(value: Any) -> Any:
    budget = _budget.get()
    return value if budget is None else budget.check_size(value)


def _limit() -> int:
    budget = _budget.get()
    return budget.max_chars if budget is not None else 1_000_000


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, str | list | tuple | range):
        limit = _limit()
        joined = _approx_chars(list(items) if isinstance(items, range) else items, limit)
        if joined + len(str(separator)) * len(items) > limit:
            raise _LimitExceeded(f"join() would produce more than {limit} characters")


def _check_percent_format(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise _LimitExceeded("'*' widths are not allowed in format strings")
            if number is not None and int(number) > MAX_FORMAT_WIDTH:
                raise _LimitExceeded(f"format width above {MAX_FORMAT_WIDTH}")


def _check_brace_format(fmt: str) -> None:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise _LimitExceeded(f"bad format string: {exc}") from None
    for _literal, _field, spec, _conversion in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise _LimitExceeded("nested fields are not allowed in format specs")
        if any(int(n) > MAX_FORMAT_WIDTH for n in _DIGITS.findall(spec)):
            raise _LimitExceeded(f"format width above {MAX_FORMAT_WIDTH}")


def _budgeted_range(*args: int) -> range:
    items = range(*args)
    budget = _tick()
    if budget is not None:
        budget.range_items_left -= len(items)
        if budget.range_items_left < 0:
            raise _LimitExceeded("range() budget of the template exhausted")
    return items


_LOOP_GUARD: Final = "hubbub_loop_guard"


def _guarded_iteration(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every ``for`` loop iterates through this, so even an empty loop body meets the deadline."""
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.tick()
        yield item


class _GuardedNamespace(Namespace):
    """``namespace()`` is the only state a template can carry across loop iterations."""

    def __setitem__(self, name: str, value: Any) -> None:
        _tick()
        super().__setitem__(name, _checked(value))


# Filters that take a size as an argument: refuse sizes that would allocate a lot.
_SIZED_FILTERS: Final = frozenset({"center", "indent", "wordwrap", "batch", "slice", "tojson"})


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = [*args, *kwargs.values()]
        if name in _SIZED_FILTERS:
            for value in values:
                if _is_int(value) and value > MAX_FORMAT_WIDTH:
                    raise _LimitExceeded(f"argument of filter {name!r} above {MAX_FORMAT_WIDTH}")
        if name == "format":
            for value in values:
                if isinstance(value, str):
                    _check_percent_format(value)
                    break
        if name == "replace":
            _check_replace(*[v for v in values if isinstance(v, str)][:3])
        if name == "join" and len(args) > 1:  # join(eval_ctx, value, d="", attribute=None)
            _check_join(args[2] if len(args) > 2 else kwargs.get("d", ""), args[1])
        if name == "indent" and args:  # indent(s, width=4, ...): width may be a string
            width = args[1] if len(args) > 1 else kwargs.get("width", "")
            if isinstance(width, str) and len(width) * (str(args[0]).count("\n") + 1) > _limit():
                raise _LimitExceeded("indent() would produce too many characters")
        return _checked(func(*args, **kwargs))

    # Jinja inspects these markers to pass the context/environment: keep them.
    guarded.__dict__.update(getattr(func, "__dict__", {}))
    return guarded


def _check_replace(text: str = "", old: str = "", new: str = "", *_: str) -> None:
    limit = _limit()
    occurrences = len(text) + 1 if old == "" else text.count(old)
    if len(text) + occurrences * (len(new) - len(old)) > limit:
        raise _LimitExceeded(f"replace() would produce more than {limit} characters")


def _urlencode(value: Any) -> str:
    """A value made safe for one URL path segment or query value: everything but unreserved
    characters percent-encoded, ``/`` too. Mappings and pairs become a query string, as in
    Jinja."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        return urllib.parse.quote(str(value), safe="")
    return do_urlencode(value)


class _HubbubSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=True)
        self.globals.pop("lipsum", None)  # generates arbitrary amounts of text
        self.globals["range"] = _budgeted_range
        self.globals["namespace"] = _GuardedNamespace
        self.globals[_LOOP_GUARD] = _guarded_iteration
        self.filters["urlencode"] = _urlencode
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} is unsafe"
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        # Variables named like dict methods (``vars.items``, ``vars.update``) mean the variable.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked_format(*args: Any, **kwargs: Any) -> str:
            _tick()
            _check_brace_format(fmt)
            result: str = _checked(wrapped(*args, **kwargs))
            return result

        return checked_format

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            __self._check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return _checked(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def _check_str_method(
        text: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        if method in ("center", "ljust", "rjust", "zfill", "expandtabs"):
            for value in [*args, *kwargs.values()]:
                if isinstance(value, int) and value > MAX_FORMAT_WIDTH:
                    raise _LimitExceeded(f"str.{method}() argument above {MAX_FORMAT_WIDTH}")
        elif method == "replace":
            _check_replace(text, *(str(a) for a in args[:2]))
        elif method == "join" and args:
            _check_join(text, args[0])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0:
            if abs(left).bit_length() * right > MAX_POWER_BITS:
                raise _LimitExceeded(f"power result above {MAX_POWER_BITS} bits")
        elif operator == "*":
            sequence, count = (left, right) if _is_int(right) else (right, left)
            if isinstance(sequence, str | list | tuple) and _is_int(count):
                limit = _limit()
                if max(len(sequence), _approx_chars(sequence, limit)) * count > limit:
                    raise _LimitExceeded(f"repetition longer than {limit}")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return _checked(super().call_binop(context, operator, left, right))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    deepest = depth
    for child in node.iter_child_nodes():
        child_depth = depth + 1 if isinstance(child, nodes.For) else depth
        deepest = max(deepest, _loop_depth(child, child_depth))
    return deepest


class TemplateRenderer:
    """Compiles (with a bounded LRU cache) and renders templates and condition expressions.

    ``render`` and ``evaluate`` run synchronously on the caller's thread: with the limits above
    a render is bounded by ``max_render_s`` of CPU time in the worst case and takes microseconds
    for the templates agents use.
    """

    def __init__(
        self,
        *,
        max_output_chars: int = 100_000,
        max_render_s: float = 1.0,
        max_range_items: int = 100_000,
        cache_size: int = 512,
    ) -> None:
        self._env = _HubbubSandbox()
        self._max_output_chars = max_output_chars
        self._max_render_s = max_render_s
        self._max_range_items = max_range_items
        self._cache_size = cache_size
        self._templates: OrderedDict[str, Template] = OrderedDict()
        self._expressions: OrderedDict[str, Callable[..., Any]] = OrderedDict()

    @property
    def cached_count(self) -> int:
        """How many compiled templates and expressions the cache holds (bounded by cache_size)."""
        return len(self._templates) + len(self._expressions)

    # --- load time --------------------------------------------------------------------------

    def check(self, source: str) -> None:
        """Raise :class:`TemplateError` if ``source`` is not a valid template."""
        self._template(source)

    def check_expression(self, expression: str) -> None:
        """Raise :class:`TemplateError` if ``expression`` is not a valid Jinja expression."""
        self._expression(expression)

    # --- run time ---------------------------------------------------------------------------

    def render(self, source: str, context: Mapping[str, Any]) -> str:
        template = self._template(source)
        token = _budget.set(self._new_budget())
        try:
            parts: list[str] = []
            size = 0
            for part in template.generate(dict(context)):
                size += len(part)
                if size > self._max_output_chars:
                    raise _LimitExceeded(
                        f"template output longer than {self._max_output_chars} characters"
                    )
                parts.append(part)
            return "".join(parts)
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
            raise _translate(exc) from None
        finally:
            _budget.reset(token)

    def evaluate(self, expression: str, context: Mapping[str, Any]) -> bool:
        """The truth value of a condition; undefined names are false, see the module docstring."""
        compiled = self._expression(expression)
        token = _budget.set(self._new_budget())
        try:
            return bool(compiled(dict(context)))
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
            raise _translate(exc) from None
        finally:
            _budget.reset(token)

    # --- internals --------------------------------------------------------------------------

    def _new_budget(self) -> _RenderBudget:
        return _RenderBudget(
            deadline=time.monotonic() + self._max_render_s,
            range_items_left=self._max_range_items,
            max_chars=self._max_output_chars,
        )

    def _template(self, source: str) -> Template:
        cached = self._templates.get(source)
        if cached is not None:
            self._templates.move_to_end(source)
            return cached
        template = self._compile(self._env.from_string, source)
        self._remember(self._templates, source, template)
        return template

    def _expression(self, expression: str) -> Callable[..., Any]:
        cached = self._expressions.get(expression)
        if cached is not None:
            self._expressions.move_to_end(expression)
            return cached
        if not expression.strip():
            raise TemplateError("empty condition")
        compiled = self._compile(
            lambda _tree: self._env.compile_expression(expression, undefined_to_none=False),
            "{{ " + expression + " }}",
        )
        self._remember(self._expressions, expression, compiled)
        return compiled

    def _compile(self, build: Callable[[nodes.Template], _Compiled], source: str) -> _Compiled:
        # Constant folding runs filters at compile time, under the same limits as a render.
        token = _budget.set(self._new_budget())
        try:
            tree = self._env.parse(source)
            depth = _loop_depth(tree)
            if depth > MAX_LOOP_DEPTH:
                raise TemplateError(f"for loops nested {depth} deep (at most {MAX_LOOP_DEPTH})")
            for node in tree.find_all(
                (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
            ):
                tag = type(node).__name__.lower().replace("fromimport", "from … import")
                raise TemplateError(f"line {node.lineno}: {{% {tag} %}} is not available")
            for loop in tree.find_all(nodes.For):
                loop.iter = nodes.Call(
                    nodes.Name(_LOOP_GUARD, "load"), [loop.iter], [], None, None, lineno=loop.lineno
                )
            return build(tree)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error on line {exc.lineno}: {exc.message}") from None
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError) as exc:
            raise _translate(exc) from None
        finally:
            _budget.reset(token)

    def _remember(self, cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)


def _translate(exc: BaseException) -> TemplateError:
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, _LimitExceeded):
        return TemplateError(f"limit exceeded: {exc}")
    if isinstance(exc, SecurityError):
        return TemplateError(f"refused by the sandbox: {exc}")
    if isinstance(exc, RecursionError):
        return TemplateError("template recursion too deep")
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return TemplateError(f"{type(exc).__name__}: {message}")
