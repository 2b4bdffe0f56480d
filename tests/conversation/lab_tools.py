"""Python tools the test projects use (allowed by the test server's configuration)."""

from __future__ import annotations

import asyncio
from typing import Any


def echo(parameters: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {"echo": parameters.get("word"), "stage": context["conversation"]["stageId"]}


async def slow(parameters: dict[str, Any], context: dict[str, Any]) -> str:
    await asyncio.sleep(float(parameters.get("seconds", 1.0)))
    return "slept"


def explode(parameters: dict[str, Any], context: dict[str, Any]) -> str:
    raise RuntimeError("secret internals")
