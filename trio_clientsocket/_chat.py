"""The seed's chat as a local GeneXus-compatible notification server.

The Chat transaction (id, message, date and time, plus the sender's client id)
lives in SQLite; the Sender procedure saves every received message and
broadcasts it to every connected client as a NotificationInfo.

Stopping (``stop`` set) closes every client with 1001 (going away), as a web
server going down does; a failure of the database closes them with 1011
(internal error) and is then raised. Cancelling drops them.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import attrs
import trio

from ._genexus import NotificationInfo
from .testing import MockServer, ServerConnection, open_mock_server

__all__ = ["GOING_AWAY", "INTERNAL_ERROR", "ChatRow", "ChatStore", "serve_chat"]

GOING_AWAY = 1001
"""The close code clients get when the server stops."""
INTERNAL_ERROR = 1011
"""The close code clients get when the chat database fails."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS Chat (
    ChatId INTEGER PRIMARY KEY AUTOINCREMENT,
    ChatMessage TEXT NOT NULL,
    ChatMessageDateTime TEXT NOT NULL,
    ClientId TEXT NOT NULL
)
"""


@attrs.frozen
class ChatRow:
    """One row of the Chat table."""

    id: int
    message: str
    datetime: str
    client_id: str


class ChatStore:
    """The Chat table in a SQLite file (``":memory:"`` for none). Writes go
    through a worker thread, one at a time, in the order they are awaited.

    Raises ``sqlite3.Error`` when the file cannot be opened or is not a SQLite
    database (the connection is closed again)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            self._db.execute(_SCHEMA)
            self._db.commit()
        except BaseException:
            self._db.close()
            raise
        self._lock = trio.Lock()

    def close(self) -> None:
        self._db.close()

    def rows(self) -> list[ChatRow]:
        cursor = self._db.execute(
            "SELECT ChatId, ChatMessage, ChatMessageDateTime, ClientId FROM Chat ORDER BY ChatId"
        )
        return [ChatRow(*row) for row in cursor.fetchall()]

    async def save(self, client_id: str, message: str) -> ChatRow:
        """Insert a message (the Sender procedure's ``&Chat.Save()`` + ``Commit``)."""
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")

        def insert() -> int:
            cursor = self._db.execute(
                "INSERT INTO Chat (ChatMessage, ChatMessageDateTime, ClientId) VALUES (?, ?, ?)",
                (message, now, client_id),
            )
            self._db.commit()
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        async with self._lock:
            row_id = await trio.to_thread.run_sync(insert)
        return ChatRow(row_id, message, now, client_id)


async def serve_chat(
    store: ChatStore,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    stop: trio.Event | None = None,
    grace: float = 3.0,
    task_status: trio.TaskStatus[tuple[MockServer, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the chat server; ``task_status.started((server, port))`` once it listens.

    It runs until cancelled (clients are dropped), or until ``stop`` is set:
    then every client is closed with 1001 (going away), and it returns once
    they have answered, or after ``grace`` seconds. A client that completes
    its handshake meanwhile is closed the same way. When saving a message
    fails, ``stop`` is set, the clients are closed with 1011 (internal error)
    and the ``sqlite3.Error`` is raised.

    Raises:
        OSError: it cannot listen on ``host``:``port`` (before it starts).
        sqlite3.Error: saving a message failed.
    """
    stopping = stop if stop is not None else trio.Event()
    failures: list[sqlite3.Error] = []

    async def sender(
        server: MockServer, connection: ServerConnection, info: NotificationInfo
    ) -> None:
        client_id = connection.client_id or ""
        try:
            await store.save(client_id, info.message)
        except sqlite3.Error as exc:
            failures.append(exc)
            stopping.set()
            return
        await server.broadcast(NotificationInfo(id=client_id, object="Chat", message=info.message))

    def farewell() -> tuple[int, str]:
        if failures:
            return INTERNAL_ERROR, "chat database error"
        return GOING_AWAY, "server shutting down"

    async def opened(server: MockServer, connection: ServerConnection) -> None:
        if stopping.is_set():
            await connection.close(*farewell())

    async with open_mock_server(received=sender, opened=opened, endpoint="gxwebsocket") as server:
        bound = await server.listen_tcp(host, port)
        task_status.started((server, bound))
        await stopping.wait()
        with trio.move_on_after(grace):
            await server.close_all(*farewell())
            await server.wait_for(lambda: not server.open_connections)
    if failures:
        raise failures[0]
