"""The pytest plugin's former place: the plugin is the module
``trio_clientsocket_pytest`` (beside the package, so that pytest's start does
not import the library). Kept for ``pytest_plugins = ["trio_clientsocket.pytest_plugin"]``.

Examples:
    >>> from trio_clientsocket.pytest_plugin import clientsocket_mock_server  # doctest: +SKIP
"""

from trio_clientsocket_pytest import TIME_LIMIT, clientsocket_mock_server, mock_server

__all__ = ["TIME_LIMIT", "clientsocket_mock_server", "mock_server"]
