"""The README's first command: the seed's chat, with a server restart in the middle."""

from __future__ import annotations

from typing import TextIO

import attrs
import trio

from ._backoff import Backoff
from ._events import Closed, Connected, ConnectionFailed, MessageReceived, Undelivered
from ._genexus import NotificationInfo
from ._socket import ClientSocket
from ._state import Status
from .testing import MockServer, ServerConnection, open_mock_server

__all__ = ["run_demo"]

ROUNDS = 5
OUTAGE = 1.0
FINAL = "welcome back, alice"


@attrs.define
class _Transcript:
    out: TextIO
    quiet: bool
    start: float = attrs.field(factory=trio.current_time)

    def say(self, who: str, text: str) -> None:
        if not self.quiet:
            print(f"[{trio.current_time() - self.start:5.2f}s] {who:<7} {text}", file=self.out)


async def run_demo(out: TextIO, quiet: bool = False) -> bool:
    """Run the chat demo on 127.0.0.1; True when every message arrived once, in order."""
    log = _Transcript(out, quiet)
    chat: list[tuple[str, str]] = []  # the Chat table: (sender client id, message)

    async def sender(
        server: MockServer, connection: ServerConnection, info: NotificationInfo
    ) -> None:
        # The seed's Sender procedure: save the message, broadcast it to everyone.
        chat.append((connection.client_id or "", info.message))
        await server.broadcast(
            NotificationInfo(id=connection.client_id or "", object="Chat", message=info.message)
        )

    async with open_mock_server(received=sender) as server:
        port = await server.listen_tcp("127.0.0.1", 0)
        base = f"ws://127.0.0.1:{port}/chat/gxwebsocket?"
        log.say("server", f"listening on {base}<client-id>")
        policy = Backoff(initial=0.1, factor=2, maximum=0.5, jitter=0.5)
        sent: list[tuple[str, str]] = []
        async with (
            ClientSocket(base + "alice", reconnect=policy, ping_interval=5) as alice,
            ClientSocket(base + "bob", reconnect=policy, ping_interval=5) as bob,
            trio.open_nursery() as nursery,
        ):
            finals = {"alice": trio.Event(), "bob": trio.Event()}
            nursery.start_soon(_watch, "alice", alice, finals["alice"], log)
            nursery.start_soon(_watch, "bob", bob, finals["bob"], log)
            await alice.wait_connected()
            await bob.wait_connected()

            async def say(who: str, sock: ClientSocket, text: str) -> None:
                sent.append((who, text))
                queued = "" if sock.status is Status.CONNECTED else " (queued)"
                log.say(who, f"send {text!r}{queued}")
                await sock.send(text)

            for i in range(ROUNDS):
                await say("alice", alice, f"hello {i} from alice")
                await say("bob", bob, f"hi {i} from bob")
                await server.wait_for(lambda: len(chat) == len(sent))

            log.say("server", f"--- restarting: down for {OUTAGE:.1f} s ---")
            await server.stop()
            await trio.sleep(0.05)
            for i in range(ROUNDS):
                await say("alice", alice, f"while down {i}")
            await trio.sleep(OUTAGE)
            await server.start()
            log.say("server", "--- back up ---")
            with trio.move_on_after(10):
                await server.wait_for(lambda: len(chat) == len(sent))
                await alice.wait_connected()
                await bob.wait_connected()
                await say("bob", bob, FINAL)
                await server.wait_for(lambda: len(chat) == len(sent))
                await finals["alice"].wait()
                await finals["bob"].wait()
            nursery.cancel_scope.cancel()

    table = list(chat)
    ok = table == sent and all(final.is_set() for final in finals.values())
    if not quiet:
        print("\nChat table (sender, message):", file=out)
        for number, (who, text) in enumerate(table, 1):
            print(f"  {number:2}  {who:<6} {text}", file=out)
    verdict = (
        f"{len(sent)} messages sent, {len(table)} stored: "
        + ("every message exactly once, in order" if ok else "MISMATCH")
    )
    print(("OK: " if ok else "FAILED: ") + verdict, file=out)
    return ok


async def _watch(who: str, sock: ClientSocket, final: trio.Event, log: _Transcript) -> None:
    async for event in sock.events():
        match event:
            case Connected():
                log.say(who, "Connected")
            case ConnectionFailed(error=error, retry_in=delay):
                then = f"retry in {delay:.2f} s" if delay is not None else "gave up"
                log.say(who, f"ConnectionFailed: {error} ({then})")
            case MessageReceived(notification=info) if info is not None:
                if info.message == FINAL:
                    final.set()
                log.say(who, f"MessageReceived from {info.id}: {info.message!r}")
            case Undelivered(messages=messages, reason=reason):
                log.say(who, f"Undelivered ({reason}): {messages!r}")
            case Closed():
                log.say(who, "Closed")
