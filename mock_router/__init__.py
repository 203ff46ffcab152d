"""mock_router: a mock NOMYO router (server side of protocol v1.0) for offline development.

    from mock_router import MockRouter, Scenario, serve
    router = MockRouter(key_size=2048)
    with serve(router) as server:        # http://127.0.0.1:PORT
        ...

Evidence for judging a client (the conformance suite): every request is recorded
(``router.seen``) with its refusal code, and ``SeenRequest.tolerant`` / ``.fault`` open a
non-conforming package and name the requirement it breaks (``REFUSAL_REQUIREMENTS``,
``FAULT_REQUIREMENTS``); ``always=True`` scenarios answer from the request headers alone.

Never imports nomyo_ref: the checker shares no code with what it checks.
"""

from .app import DROPPED, DroppedConnection
from .codes import (
    FAULT_REQUIREMENTS,
    NOTE_CODES,
    REFUSAL_CODES,
    REFUSAL_REQUIREMENTS,
    VARIANT_CODES,
    CodeInfo,
)
from .crypto import fingerprint
from .evidence import Fault, Opened, tolerant_open
from .inprocess import respx_route, transport
from .model import SCRIPTED_CONTENT, SCRIPTED_MODEL, FakeModel, count_tokens, minimal_instance
from .record import SeenRequest
from .replay import ReplayCache
from .router import FAKE_DEVICE_HASH, MockRouter
from .scenarios import KEY_PATH, POST_PATH, REQUEST_ID, Scenario
from .server import RunningServer, make_tls_files, serve
from .validation import MAX_BODY_BYTES, MAX_PLAINTEXT_BYTES

__all__ = [
    "DROPPED",
    "FAKE_DEVICE_HASH",
    "FAULT_REQUIREMENTS",
    "KEY_PATH",
    "MAX_BODY_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "NOTE_CODES",
    "POST_PATH",
    "REFUSAL_CODES",
    "REFUSAL_REQUIREMENTS",
    "REQUEST_ID",
    "SCRIPTED_CONTENT",
    "SCRIPTED_MODEL",
    "VARIANT_CODES",
    "CodeInfo",
    "DroppedConnection",
    "FakeModel",
    "Fault",
    "MockRouter",
    "Opened",
    "ReplayCache",
    "RunningServer",
    "Scenario",
    "SeenRequest",
    "count_tokens",
    "fingerprint",
    "make_tls_files",
    "minimal_instance",
    "respx_route",
    "serve",
    "tolerant_open",
    "transport",
]
