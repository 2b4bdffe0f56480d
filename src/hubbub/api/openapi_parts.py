"""Response objects every part of the OpenAPI document is built from (one definition for the
core, listing and conversation-command paths)."""

from __future__ import annotations

from typing import Any


def json_response(description: str, schema: str) -> dict[str, Any]:
    """A response whose JSON body is the component schema ``schema``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def error_response(description: str) -> dict[str, Any]:
    return json_response(description, "Error")


def ok_response(schema: str) -> dict[str, Any]:
    return json_response("Success.", schema)
