"""trio_clientsocket: a reconnecting WebSocket client for Trio, modelled on the
GeneXus ``Client.Socket`` external object.

Examples:
    >>> import trio
    >>> from trio_clientsocket import ClientSocket, Connected, MessageReceived
    >>> async def main():  # doctest: +SKIP
    ...     async with ClientSocket("ws://localhost:8080/app/gxwebsocket?42") as sock:
    ...         await sock.send("hello")
    ...         async for event in sock.events():
    ...             match event:
    ...                 case Connected(): print("connected")
    ...                 case MessageReceived(message=text): print(text)
"""

from ._backoff import Backoff as Backoff
from ._classify import Classifier as Classifier
from ._compression import Deflate as Deflate
from ._errors import AttemptError as AttemptError
from ._errors import ClientSocketError as ClientSocketError
from ._errors import ConnectionLost as ConnectionLost
from ._errors import ConnectTimeout as ConnectTimeout
from ._errors import HandshakeRejected as HandshakeRejected
from ._errors import InvalidURLError as InvalidURLError
from ._errors import KeepaliveTimeout as KeepaliveTimeout
from ._errors import NotConnectedError as NotConnectedError
from ._errors import OutboxFullError as OutboxFullError
from ._errors import ProtocolError as ProtocolError
from ._errors import ProxyRejected as ProxyRejected
from ._errors import SocketClosedError as SocketClosedError
from ._errors import TransportError as TransportError
from ._errors import UndeliveredError as UndeliveredError
from ._events import Closed as Closed
from ._events import Connected as Connected
from ._events import ConnectionFailed as ConnectionFailed
from ._events import Event as Event
from ._events import Message as Message
from ._events import MessageReceived as MessageReceived
from ._events import PingReceived as PingReceived
from ._events import PongReceived as PongReceived
from ._events import Skipped as Skipped
from ._events import SocketEvent as SocketEvent
from ._events import Undelivered as Undelivered
from ._events import UndeliveredReason as UndeliveredReason
from ._genexus import GeneXusEndpoint as GeneXusEndpoint
from ._genexus import NotificationInfo as NotificationInfo
from ._genexus import genexus_endpoint as genexus_endpoint
from ._genexus import new_client_id as new_client_id
from ._handshake import HandshakeResponse as HandshakeResponse
from ._queues import EventStream as EventStream
from ._socket import ClientSocket as ClientSocket
from ._state import State as State
from ._state import Status as Status
from ._stats import SocketStatistics as SocketStatistics
from ._version import __version__ as __version__

__all__ = [
    "AttemptError",
    "Backoff",
    "Classifier",
    "ClientSocket",
    "ClientSocketError",
    "Closed",
    "ConnectTimeout",
    "Connected",
    "ConnectionFailed",
    "ConnectionLost",
    "Deflate",
    "Event",
    "EventStream",
    "GeneXusEndpoint",
    "HandshakeRejected",
    "HandshakeResponse",
    "InvalidURLError",
    "KeepaliveTimeout",
    "Message",
    "MessageReceived",
    "NotConnectedError",
    "NotificationInfo",
    "OutboxFullError",
    "PingReceived",
    "PongReceived",
    "ProtocolError",
    "ProxyRejected",
    "Skipped",
    "SocketClosedError",
    "SocketEvent",
    "SocketStatistics",
    "State",
    "Status",
    "TransportError",
    "Undelivered",
    "UndeliveredError",
    "UndeliveredReason",
    "genexus_endpoint",
    "new_client_id",
]
