"""The API as the local socket answers it: the reads of this host's CLI, without a token
(docs/server.md, "The local socket").

``vmvault serve`` listens on ``$VMVAULT_HOME/api.sock`` too (jobs/local_socket.py), a unix
socket of mode 0600 that only the server's own user (and root) may connect to: the socket's
permission is the credential, as libvirt's and Docker's are. Whoever may connect may read the
catalog file itself, so a request there is the local CLI's principal (``local:<user>``, an
admin: vmvault/local_user.py) without a token. :class:`LocalSocket` wraps the app for it:

* it answers reads only (``GET``, ``HEAD``, ``OPTIONS``): any other method is 405
  ``LOCAL_SOCKET_READ_ONLY``, before a route runs. A CLI's changes keep their one path (the
  CLI writes the catalog itself and records them in the audit log as ``local:<user>``);
* a request must carry ``X-Vmvault-Local``: the client's :attr:`Settings.local_identity`
  (vmvault's version, the catalog it means and its default vault); another one is 421
  ``LOCAL_SOCKET_MISMATCH`` — the CLI then reads its own catalog itself, and never shows
  another catalog's VMs, another default vault's listing, nor a document of another
  version's shape.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from vmvault.api.errors import error_response
from vmvault.config import LOCAL_IDENTITY_HEADER
from vmvault.domain.access import Principal
from vmvault.domain.audit import READ_METHODS
from vmvault.domain.errors import LocalSocketMismatch, LocalSocketReadOnly, VmvaultError

#: The identity header's name as the ASGI scope spells it.
_HEADER = LOCAL_IDENTITY_HEADER.lower().encode()


class LocalSocket:
    """``app`` for the requests of the local socket at ``socket``: reads by ``principal`` of
    the clients whose identity is ``identity``."""

    def __init__(self, app: ASGIApp, socket: str, identity: str, principal: Principal) -> None:
        self.app = app
        self.socket = socket
        self.identity = identity.encode()
        self.principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websocket, and no lifespan (served with it off)
            return
        refusal: VmvaultError | None = None
        if scope["method"] not in READ_METHODS:
            refusal = LocalSocketReadOnly(
                socket=self.socket, method=scope["method"], path=scope["path"]
            )
        else:
            sent = [v for k, v in scope["headers"] if k == _HEADER]
            if sent != [self.identity]:
                why = f"it is {self.identity.decode()}; the client's is " + (
                    sent[0].decode("latin-1") if len(sent) == 1 else "not given"
                )
                refusal = LocalSocketMismatch(socket=self.socket, why=why)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        # the route's needs() finds the principal on request.state (api/auth.py)
        scope["state"] = {**scope.get("state", {}), "principal": self.principal}
        await self.app(scope, receive, send)
