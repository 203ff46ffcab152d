"""mock_router: a mock NOMYO router (server side of protocol v1.0) for offline development.

    from mock_router import MockRouter, Scenario, serve
    router = MockRouter(key_size=2048)
    with serve(router) as server:        # http://127.0.0.1:PORT
        ...

Never imports nomyo_ref: the checker shares no code with what it checks.
"""

from .app import DROPPED, DroppedConnection
from .crypto import fingerprint
from .inprocess import respx_route, transport
from .model import FakeModel, count_tokens, minimal_instance
from .record import SeenRequest
from .router import FAKE_DEVICE_HASH, MockRouter
from .scenarios import KEY_PATH, POST_PATH, Scenario
from .server import RunningServer, make_tls_files, serve
from .validation import MAX_BODY_BYTES, MAX_PLAINTEXT_BYTES

__all__ = [
    "DROPPED",
    "FAKE_DEVICE_HASH",
    "KEY_PATH",
    "MAX_BODY_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "POST_PATH",
    "DroppedConnection",
    "FakeModel",
    "MockRouter",
    "RunningServer",
    "Scenario",
    "SeenRequest",
    "count_tokens",
    "fingerprint",
    "make_tls_files",
    "minimal_instance",
    "respx_route",
    "serve",
    "transport",
]
