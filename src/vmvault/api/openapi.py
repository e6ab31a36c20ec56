"""The REST API's OpenAPI document, as committed in docs/openapi.json:
``python -m vmvault.api.openapi > docs/openapi.json`` (a test fails when it is not current).

The app is built over services in a throw-away home (removed afterwards: building the app
may open its catalog) and an authenticator that knows no token.
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

from vmvault.api.app import create_app
from vmvault.bootstrap import bootstrap
from vmvault.config import Settings


def spec() -> dict[str, Any]:
    """The document ``GET /openapi.json`` serves."""
    with tempfile.TemporaryDirectory(prefix="vmvault-openapi-") as home:
        services = bootstrap(Settings.from_env({"VMVAULT_HOME": home}))
        try:
            return create_app(services, authenticate=lambda _token: None).openapi()
        finally:
            services.close()


def text() -> str:
    """:func:`spec` as docs/openapi.json holds it (indented, one trailing newline)."""
    return json.dumps(spec(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(text())
