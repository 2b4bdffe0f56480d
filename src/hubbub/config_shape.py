"""Field-by-field checking of a configuration document against its msgspec structs.

msgspec stops at the first problem; an operator wants every problem of a file at once. So the
TOML document is walked table by table against the struct types (driven by the structs
themselves, so fields that other parts add are checked without a line here): unknown fields
(with a "did you mean"), missing required fields and values of the wrong type are all
collected. What is left is a document that converts cleanly: a bad value is dropped (its
default then applies) so that the checks of meaning can still run on the rest.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

Fail = Callable[[str, str], None]

_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


class _Unusable:
    """A value that cannot be kept (reported already)."""


UNUSABLE = _Unusable()


def is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def struct_in(annotation: Any) -> type[msgspec.Struct] | None:
    """The struct of ``Struct`` or ``Struct | None``; None for anything else."""
    if is_struct(annotation):
        return typing.cast(type[msgspec.Struct], annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and is_struct(args[0]):
            return typing.cast(type[msgspec.Struct], args[0])
    return None


def list_item_struct(annotation: Any) -> type[msgspec.Struct] | None:
    """The struct of ``list[Struct]`` (a TOML array of tables); None for anything else."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if is_struct(item):
            return typing.cast(type[msgspec.Struct], item)
    return None


def suggestion(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _leaf(value: Any, annotation: Any, path: str, fail: Fail) -> Any:
    try:
        return msgspec.convert(value, annotation)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _MSGSPEC_PATH.search(message)
        if found:
            inner = found.group("path")
            fail(
                path + inner if inner.startswith("[") else _join(path, inner.lstrip(".")),
                message[: found.start()],
            )
        else:
            fail(path, message)
        return UNUSABLE


def check_struct(raw: Any, cls: type[msgspec.Struct], path: str, fail: Fail) -> Any:
    """``raw`` as a plain dict that ``msgspec.convert(…, cls)`` accepts, or UNUSABLE."""
    # Problems of a table's own fields are reported at the table (msgspec's wording), so the
    # message names the field: "apps[0]: Object contains unknown field `nmae` (did you ...".
    where = path or "(document)"
    if not isinstance(raw, Mapping):
        return _leaf(raw, cls, path, fail)
    fields = {field.encode_name: field for field in msgspec.structs.fields(cls)}
    kept: dict[str, Any] = {}
    usable = True
    for name, value in raw.items():
        field = fields.get(name)
        if field is None:
            fail(where, f"Object contains unknown field `{name}`" + suggestion(name, list(fields)))
            continue
        checked = check_value(value, field.type, _join(path, name), fail)
        if checked is UNUSABLE:
            usable = usable and not field.required
        else:
            kept[name] = checked
    for name, field in fields.items():
        if field.required and name not in raw:
            fail(where, f"Object missing required field `{name}`")
            usable = False
    return kept if usable else UNUSABLE


def check_value(value: Any, annotation: Any, path: str, fail: Fail) -> Any:
    item = list_item_struct(annotation)
    if item is not None:
        if not isinstance(value, list):
            return _leaf(value, annotation, path, fail)
        checked = [check_struct(entry, item, f"{path}[{i}]", fail) for i, entry in enumerate(value)]
        # Dropping one entry would renumber the others in later messages: keep all or none.
        return UNUSABLE if any(entry is UNUSABLE for entry in checked) else checked
    struct = struct_in(annotation)
    if struct is not None and value is not None:
        return check_struct(value, struct, path, fail)
    return _leaf(value, annotation, path, fail)
