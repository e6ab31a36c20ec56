"""Use cases.  Each takes its adapters through :mod:`vmvault.services.ports` (wired by
:mod:`vmvault.bootstrap`) and returns domain objects; entry points only translate."""
