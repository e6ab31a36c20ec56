"""The REST API's routes, one module per group, each a ``routes(services) -> APIRouter``
that :func:`vmvault.api.app.create_app` includes.

A route parses its request, calls the same service method the CLI calls, and answers the
document of :mod:`vmvault.documents`; it declares the role it needs
(``dependencies=[needs(Role.X)]``), its response model (:mod:`vmvault.api.models`) and its
error statuses (:func:`vmvault.api.errors.responses`).  docs/server.md has the table.
"""
