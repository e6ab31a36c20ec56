"""Who the CLI on the server's host is: ``local:<user>``, an admin — whoever may read the
catalog (``VMVAULT_HOME``) may do everything (docs/server.md, "Authentication and roles").

The CLI's actor in the audit log and in approval requests, and the principal of the reads the
server answers on its local socket (docs/server.md, "The local socket"), which only its own
user (and root) may connect to.
"""

from __future__ import annotations

import os

from vmvault.domain.access import Principal, Role
from vmvault.domain.audit import local_actor


def unix_user() -> str:
    """This process's (effective) user."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def local_principal() -> Principal:
    """``local:<user>``, an admin."""
    return Principal(local_actor(unix_user()), Role.ADMIN)
