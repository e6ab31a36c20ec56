"""Webhooks: ``POST`` the message's JSON document to the target's URL.

Delivered means answered 2xx within the timeout; a redirect is not followed (a 3xx is a
failure: a webhook that moved must be configured again), and neither is anything else.
The body is the message's document (docs/notifications.md lists its fields) with
``Content-Type: application/json``; the headers ``X-Vmvault-Event`` and
``X-Vmvault-Delivery`` (the message's key) let a receiver route and deduplicate.

A URL's ``user:password@`` is taken out of the URL and sent as ``Authorization: Basic``
(urllib would neither send it nor keep it out of its error texts).  No error text of this
module holds the URL: failures name the address as :func:`shown_address` shows it.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote

from vmvault import __version__
from vmvault.domain.errors import NotifyDeliveryFailed
from vmvault.domain.notification import Message, Target, shown_address, split_credentials


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, target: Target, message: Message) -> None:
        body = json.dumps(message.doc, sort_keys=True).encode()
        url, userinfo = split_credentials(target.address)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"vmvault/{__version__}",
            "X-Vmvault-Event": message.event.value,
            "X-Vmvault-Delivery": message.key,
        }
        if userinfo is not None:
            user, _, password = userinfo.partition(":")
            pair = f"{unquote(user)}:{unquote(password)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        fail = {"channel": "webhook", "address": shown_address(target.address)}
        try:
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)
            with self._opener.open(request, timeout=self.timeout) as answer:
                status = answer.status
                answer.read(65536)
        except urllib.error.HTTPError as exc:
            raise NotifyDeliveryFailed(f"HTTP {exc.code} {exc.reason}", **fail) from None
        except urllib.error.URLError as exc:
            # reason is the socket's error (refused, timed out, name unknown): no URL in it
            raise NotifyDeliveryFailed(f"URLError: {_reason(exc.reason)}", **fail) from None
        except (ValueError, http.client.InvalidURL) as exc:
            # their text quotes the URL (path, port, even a password): never shown
            raise NotifyDeliveryFailed(f"{type(exc).__name__}: not a valid URL", **fail) from None
        except (OSError, http.client.HTTPException) as exc:
            raise NotifyDeliveryFailed(f"{type(exc).__name__}: {_reason(exc)}", **fail) from None
        if not 200 <= status < 300:
            raise NotifyDeliveryFailed(f"HTTP {status}", **fail)


def _reason(reason: object) -> str:
    """A socket-level reason as text; anything else by its type only (it may quote the URL)."""
    if isinstance(reason, OSError):
        return reason.strerror or type(reason).__name__
    if isinstance(reason, str) and "://" not in reason and "@" not in reason:
        return reason
    return type(reason).__name__
