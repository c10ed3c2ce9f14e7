"""The README's first command: the seed's chat, with a server restart in the middle."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

import attrs
import trio

from ._backoff import Backoff
from ._chat import ChatStore, serve_chat
from ._events import Closed, Connected, ConnectionFailed, MessageReceived, Undelivered
from ._genexus import genexus_endpoint
from ._socket import ClientSocket
from ._state import Status

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
    with tempfile.TemporaryDirectory() as tmp:
        store = ChatStore(Path(tmp) / "chat.sqlite3")
        try:
            sent, finals = await _chat(store, log)
            table = store.rows()
        finally:
            store.close()
    # each client's messages in its order (two connections' messages may reach
    # the server in either order: TCP orders each connection, not both)
    stored = [(row.client_id, row.message) for row in table]
    ok = _by_client(stored) == _by_client(sent) and all(final.is_set() for final in finals)
    if not quiet:
        print("\nChat table (ChatId, ChatMessageDateTime, ClientId, ChatMessage):", file=out)
        for row in table:
            print(f"  {row.id:2}  {row.datetime}  {row.client_id:<6} {row.message}", file=out)
    verdict = f"{len(sent)} messages sent, {len(table)} stored: " + (
        "every message exactly once, in order" if ok else "MISMATCH"
    )
    print(("OK: " if ok else "FAILED: ") + verdict, file=out)
    return ok


def _by_client(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for client, message in pairs:
        out.setdefault(client, []).append(message)
    return out


async def _chat(
    store: ChatStore, log: _Transcript
) -> tuple[list[tuple[str, str]], list[trio.Event]]:
    sent: list[tuple[str, str]] = []
    finals = [trio.Event(), trio.Event()]
    async with trio.open_nursery() as servers:
        server, port = await servers.start(serve_chat, store, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}/chat/"
        log.say("server", f"serving {base}gxwebsocket?<client-id>, chat table in SQLite")
        policy = Backoff(initial=0.1, factor=2, maximum=0.5, jitter=0.5)
        alice_end, bob_end = genexus_endpoint(base, "alice"), genexus_endpoint(base, "bob")
        async with (
            ClientSocket(alice_end.url, reconnect=policy, headers=alice_end.headers) as alice,
            ClientSocket(bob_end.url, reconnect=policy, headers=bob_end.headers) as bob,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_watch, "alice", alice, finals[0], log)
            nursery.start_soon(_watch, "bob", bob, finals[1], log)
            await alice.wait_connected()
            await bob.wait_connected()

            async def say(who: str, sock: ClientSocket, text: str) -> None:
                sent.append((who, text))
                queued = "" if sock.status is Status.CONNECTED else " (queued)"
                log.say(who, f"send {text!r}{queued}")
                await sock.send(text)

            async def stored() -> None:
                await server.wait_for(lambda: len(store.rows()) == len(sent))

            for i in range(ROUNDS):
                await say("alice", alice, f"hello {i} from alice")
                await say("bob", bob, f"hi {i} from bob")
                await stored()

            log.say("server", f"--- restarting: down for {OUTAGE:.1f} s ---")
            await server.stop()
            await trio.sleep(0.05)
            for i in range(ROUNDS):
                await say("alice", alice, f"while down {i}")
            await trio.sleep(OUTAGE)
            await server.start()
            log.say("server", "--- back up ---")
            with trio.move_on_after(10):
                await stored()
                await alice.wait_connected()
                await bob.wait_connected()
                await say("bob", bob, FINAL)
                await stored()
                for final in finals:
                    await final.wait()
            nursery.cancel_scope.cancel()
        servers.cancel_scope.cancel()
    return sent, finals


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
