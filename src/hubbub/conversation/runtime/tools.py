"""Running a project's tools: ``webhook`` (HTTP), ``python`` (an operator-allowed callable)
and ``llm`` (one completion with its own prompt). Every failure becomes a :class:`ToolError`
with a short reason that is safe to show a client.
"""

from __future__ import annotations

import importlib
import inspect
import json
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from hubbub.conversation.project.schema import LlmTool, PythonTool, Tool, WebhookTool
from hubbub.conversation.project.templates import TemplateError, TemplateRenderer
from hubbub.conversation.voice.providers.base import ChatMessage, LlmProvider, ProviderError
from hubbub.errors import ConversationLayerError


class ToolError(ConversationLayerError):
    pass


class WebhookError(ConversationLayerError):
    """An HTTP request of a webhook tool failed (network, timeout); the text is client-safe."""


class WebhookRequester(Protocol):
    """Makes a webhook tool's HTTP request (implemented by a transport-side HTTP client)."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: str | None,
        timeout_s: float,
    ) -> dict[str, Any]:
        """``{"ok", "status", "data"}``: data is the parsed JSON body, or its text."""
        ...

    async def close(self) -> None: ...


def content_parts(result: Any) -> list[dict[str, Any]]:
    """A tool result as protocol content parts (section 3)."""
    if isinstance(result, list) and all(isinstance(p, dict) and "contentType" in p for p in result):
        return result
    text = result if isinstance(result, str) else json.dumps(result, separators=(",", ":"))
    return [{"contentType": "text", "text": text}]


class ToolRunner:
    def __init__(
        self,
        renderer: TemplateRenderer,
        webhooks: WebhookRequester | None,
        python_allowlist: frozenset[str],
    ) -> None:
        self._renderer = renderer
        self._webhooks = webhooks
        self._allowlist = python_allowlist
        self._callables: dict[str, Callable[..., Any]] = {}

    async def run(
        self,
        tool: Tool,
        parameters: Mapping[str, Any],
        context: Mapping[str, Any],
        llm: LlmProvider | None,
    ) -> Any:
        scope = {**context, "parameters": dict(parameters)}
        try:
            if isinstance(tool, WebhookTool):
                return await self._webhook(tool, scope)
            if isinstance(tool, PythonTool):
                return await self._python(tool, dict(parameters), scope)
            return await self._llm(tool, scope, llm)
        except TemplateError as exc:
            raise ToolError(f"template error: {exc}") from None

    async def _webhook(self, tool: WebhookTool, scope: Mapping[str, Any]) -> Any:
        render = self._renderer.render
        url = render(tool.url, scope)
        if not self._stays_in_path(tool, url, scope):
            raise ToolError(f"webhook {tool.id}: the parameters lead the URL out of its path")
        headers = {name: render(value, scope) for name, value in tool.headers.items()}
        body = render(tool.body, scope) if tool.body is not None else None
        if body is not None and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "application/json"
        if self._webhooks is None:
            raise ToolError(f"webhook {tool.id}: no HTTP client is configured")
        try:
            return await self._webhooks.request(
                tool.method, url, headers=headers, body=body, timeout_s=tool.timeout_s
            )
        except WebhookError as exc:
            raise ToolError(f"webhook {tool.id}: {exc}") from None

    def _stays_in_path(self, tool: WebhookTool, url: str, scope: Mapping[str, Any]) -> bool:
        """Whether the rendered ``url`` stays where the tool points: no ``.`` or ``..``
        segment (raw or percent-encoded: HTTP clients resolve both), and the same origin and
        leading path as the URL rendered without parameters (the tool's base)."""
        path = urllib.parse.urlsplit(url).path
        segments = path.split("/")
        if any(urllib.parse.unquote(segment) in (".", "..") for segment in segments):
            return False
        try:
            base = urllib.parse.urlsplit(
                self._renderer.render(tool.url, {**scope, "parameters": {}})
            )
        except TemplateError:  # the URL needs its parameters to render at all
            return True
        rendered = urllib.parse.urlsplit(url)
        if base.netloc and (rendered.scheme, rendered.netloc) != (base.scheme, base.netloc):
            return False
        # The base's segments up to where a parameter was (an empty segment) or the last one
        # (a parameter may end it, as in ``order-{{ parameters.id }}``) are the tool's path.
        base_segments = base.path.split("/")[:-1]
        if "" in base_segments[1:]:
            base_segments = base_segments[: base_segments.index("", 1)]
        return segments[: len(base_segments)] == base_segments

    def _resolve(self, target: str) -> Callable[..., Any]:
        found = self._callables.get(target)
        if found is not None:
            return found
        if target not in self._allowlist:
            raise ToolError(
                f"python callable {target!r} is not allowed by the server configuration"
            )
        module_name, _, attribute = target.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ToolError(f"python callable {target!r} cannot be loaded: {exc}") from None
        if not callable(function):
            raise ToolError(f"python callable {target!r} is not callable")
        resolved: Callable[..., Any] = function
        self._callables[target] = resolved
        return resolved

    async def _python(
        self, tool: PythonTool, parameters: dict[str, Any], scope: Mapping[str, Any]
    ) -> Any:
        function = self._resolve(tool.callable)
        try:
            result = function(parameters, dict(scope))
            if inspect.isawaitable(result):
                result = await result
        except ToolError:
            raise
        except Exception as exc:  # operator code: report its failure, never its traceback
            raise ToolError(f"python tool {tool.id} failed: {type(exc).__name__}") from None
        return result

    async def _llm(self, tool: LlmTool, scope: Mapping[str, Any], llm: LlmProvider | None) -> Any:
        if llm is None:
            raise ToolError(f"llm tool {tool.id}: no LLM is configured for this project")
        prompt = self._renderer.render(tool.prompt, scope)
        try:
            return await llm.complete([ChatMessage("user", prompt)])
        except ProviderError as exc:
            raise ToolError(f"llm tool {tool.id}: {exc}") from None
