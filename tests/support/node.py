"""Run a Node.js script of the test suite and read the JSON summary it prints last."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


async def start_node_script(script: Path, *args: str) -> asyncio.subprocess.Process:
    node = shutil.which("node")
    assert node is not None, "Node.js is required (the suite's Node clients run under it)"
    return await asyncio.create_subprocess_exec(
        node,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )


async def finish_node_script(
    process: asyncio.subprocess.Process, name: str, timeout_s: float
) -> dict[str, Any]:
    """Wait for the script to exit 0 (bounded) and return its last stdout line as JSON."""
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{name} did not finish within {timeout_s} s") from None
    detail = (
        f"{name} exited {process.returncode}\n"
        f"stdout:\n{stdout.decode()}\nstderr:\n{stderr.decode()}"
    )
    assert process.returncode == 0, detail
    lines = stdout.decode().strip().splitlines()
    assert lines, detail
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


async def run_node_script(script: Path, *args: str, timeout_s: float) -> dict[str, Any]:
    process = await start_node_script(script, *args)
    return await finish_node_script(process, script.name, timeout_s)
