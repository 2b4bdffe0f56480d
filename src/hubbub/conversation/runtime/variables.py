"""Typed stage variables: template output coerced to each variable's declared type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hubbub.conversation.project.schema import VariableDescriptor
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.errors import ConversationLayerError


class VariableTypeError(ConversationLayerError):
    pass


def coerce(value: Any, descriptor: VariableDescriptor | None) -> Any:
    """Values rendered from templates are strings; descriptors say what they should be."""
    if descriptor is None or not isinstance(value, str):
        return value
    kind = descriptor.type
    try:
        if kind == "integer":
            return int(value.strip())
        if kind == "number":
            return float(value.strip())
        if kind == "boolean":
            lowered = value.strip().lower()
            if lowered in ("true", "yes", "1"):
                return True
            if lowered in ("false", "no", "0", ""):
                return False
            raise ValueError(value)
        if kind == "json":
            return json.loads(value)
    except ValueError:
        raise VariableTypeError(f"{descriptor.name}: {value!r} is not a valid {kind}") from None
    return value


def apply_changes(
    values: dict[str, Any],
    descriptors: Mapping[str, VariableDescriptor],
    changes: Mapping[str, Any],
    unset: list[str] | None = None,
) -> dict[str, Any]:
    """Set and unset variables in ``values``; returns what actually changed (unset: None).

    All or nothing: a value of the wrong type raises :class:`VariableTypeError` and leaves
    every variable as it was.
    """
    typed_changes = {name: coerce(v, descriptors.get(name)) for name, v in changes.items()}
    changed: dict[str, Any] = {}
    for name, typed in typed_changes.items():
        if name not in values or values[name] != typed:
            values[name] = typed
            changed[name] = typed
    for name in unset or []:
        if name in values:
            del values[name]
            changed[name] = None
    return changed


def render_values(
    renderer: TemplateRenderer, values: Mapping[str, Any], scope: Mapping[str, Any]
) -> dict[str, Any]:
    """Render every string (recursively) in ``values``; other JSON values pass through."""

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return renderer.render(value, scope)
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    return {key: render(value) for key, value in values.items()}
