"""A TCP relay that delays one direction: what netem's ``delay`` would do on a link's egress.

    python bench/delay_relay.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT

Bytes from the client to the upstream are held ``delay`` seconds (order kept); the answers
pass at once. The delay starts at 0 and is changed by lines on stdin (``0.3``, ``0``). Packet
loss is not done here (dropping bytes in a relay is not packet loss: TCP would never
retransmit them): ``bench/faults.py`` drops packets with nftables on the relay's interface.
Prints ``listening`` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

delay_s = 0.0


async def delayed_pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the delay being emulated
            writer.write(chunk)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay_s, chunk))
    except ConnectionError:
        pass
    queue.put_nowait((time.monotonic() + delay_s, b""))
    with contextlib.suppress(ConnectionError):
        await delivering


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main(listen_host: str, listen_port: int, up_host: str, up_port: int) -> None:
    global delay_s

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(up_host, up_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(delayed_pump(client_r, up_w), pump(up_r, client_w))

    server = await asyncio.start_server(handle, listen_host, listen_port, backlog=1024)
    print("listening", flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with server:
        while line := await stdin.readline():
            delay_s = float(line)
            print(f"delay {delay_s}", flush=True)


if __name__ == "__main__":
    host, port, up_host, up_port = sys.argv[1:5]
    asyncio.run(main(host, int(port), up_host, int(up_port)))
