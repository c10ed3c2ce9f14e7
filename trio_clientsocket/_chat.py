"""The seed's chat as a local GeneXus-compatible notification server.

The Chat transaction (id, message, date and time, plus the sender's client id)
lives in SQLite; the Sender procedure saves every received message and
broadcasts it to every connected client as a NotificationInfo.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import attrs
import trio

from ._genexus import NotificationInfo
from .testing import MockServer, ServerConnection, open_mock_server

__all__ = ["ChatRow", "ChatStore", "serve_chat"]

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
    through a worker thread, one at a time, in the order they are awaited."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(_SCHEMA)
        self._db.commit()
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
    task_status: trio.TaskStatus[tuple[MockServer, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the chat server until cancelled; ``task_status.started((server, port))``."""

    async def sender(
        server: MockServer, connection: ServerConnection, info: NotificationInfo
    ) -> None:
        client_id = connection.client_id or ""
        await store.save(client_id, info.message)
        await server.broadcast(NotificationInfo(id=client_id, object="Chat", message=info.message))

    async with open_mock_server(received=sender, endpoint="gxwebsocket") as server:
        bound = await server.listen_tcp(host, port)
        task_status.started((server, bound))
        await trio.sleep_forever()
