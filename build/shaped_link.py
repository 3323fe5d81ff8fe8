#!/usr/bin/env python3
"""A slow link on loopback, for the benchmark: TCP forwarders that add a one-way delay in each
direction and share one bandwidth cap per direction, as a real uplink would (the kernel's netem
is not available on the machines this runs on).

    shaped_link.py RTT_MS MBIT LOG LISTEN:TARGET [LISTEN:TARGET ...]

Every LISTEN port on 127.0.0.1 forwards to the TARGET port on 127.0.0.1. Bytes are sent on in the
order they came, each after the link has carried the bytes before it (MBIT megabits per second,
shared by every connection going the same way) plus RTT/2. A new connection costs one round
trip before its first byte moves, as TCP's handshake does; slow start is not modelled. Each
connection's backlog is bounded (the bandwidth-delay product plus 64 KiB), so a fast sender is
held back as it would be by a full link. One line per new connection goes to LOG:
"LISTEN_PORT", so the benchmark can count connections per server.
"""
import asyncio
import sys

CHUNK = 16 * 1024


class Link:
    """One direction of the link: when each piece of data arrives at the far end."""

    def __init__(self, rate, delay):
        self.rate, self.delay, self.free_at = rate, delay, 0.0

    def arrival(self, size, not_before):
        start = max(asyncio.get_running_loop().time(), self.free_at, not_before)
        self.free_at = start + size / self.rate
        return self.free_at + self.delay


async def pump(reader, writer, link, ready_at, backlog):
    """Copies reader to writer through `link`; data is not sent on before `ready_at`."""
    queue = asyncio.Queue()
    room = asyncio.Event()
    room.set()
    pending = 0

    async def deliver():
        nonlocal pending
        while True:
            due, data = await queue.get()
            wait = due - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            pending -= len(data)
            if pending <= backlog:
                room.set()

    delivering = asyncio.ensure_future(deliver())
    last = 0.0
    try:
        while True:
            await room.wait()
            data = await reader.read(CHUNK)
            if not data:
                queue.put_nowait((max(last, asyncio.get_running_loop().time() + link.delay), None))
                break
            last = link.arrival(len(data), ready_at)
            pending += len(data)
            if pending > backlog:
                room.clear()
            queue.put_nowait((last, data))
        await delivering
    except (ConnectionError, OSError):
        delivering.cancel()
    finally:
        writer.close()


async def main():
    rtt_ms, mbit, log = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    delay = rtt_ms / 2000.0
    rate = mbit * 1e6 / 8
    up, down = Link(rate, delay), Link(rate, delay)
    backlog = int(rate * 2 * delay) + 64 * 1024

    def forwarder(listen, target):
        async def handle(client_reader, client_writer):
            with open(log, "a") as f:
                f.write(f"{listen}\n")
            ready_at = asyncio.get_running_loop().time() + 2 * delay
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(
                pump(client_reader, server_writer, up, ready_at, backlog),
                pump(server_reader, client_writer, down, ready_at, backlog),
            )
        return handle

    servers = []
    for pair in sys.argv[4:]:
        listen, target = (int(p) for p in pair.split(":"))
        servers.append(await asyncio.start_server(forwarder(listen, target), "127.0.0.1", listen))
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
