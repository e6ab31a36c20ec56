"""Where the S3 backend's keys come from: a credentials file, else the environment.

The file is an INI file as the AWS tools write it (``~/.aws/credentials``)::

    [default]
    aws_access_key_id = …
    aws_secret_access_key = …
    aws_session_token = …        (optional)

Without a file, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and optionally
``AWS_SESSION_TOKEN``) of the environment.  Nothing else is consulted (no profiles, no
instance metadata): a vault names exactly one source.  A missing or unreadable credential is
:class:`~vmvault.storage.errors.CredentialsUnavailable`, naming the source and the missing
field, never a value; :class:`Credentials` never shows the secret (its ``repr`` neither).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from vmvault.storage.errors import CredentialsUnavailable

SECTION = "default"
_FIELDS = ("aws_access_key_id", "aws_secret_access_key")


@dataclass(frozen=True)
class Credentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    source: str = "environment"  # for people: "environment" or "file /path"


def load_credentials(
    credentials_file: str | None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The credentials of ``credentials_file`` (section ``[default]``), else of ``environ``."""
    if credentials_file is not None:
        return _from_file(credentials_file)
    env = os.environ if environ is None else environ
    values = {name: env.get(name.upper(), "").strip() for name in _FIELDS}
    missing = [name.upper() for name, value in values.items() if not value]
    if missing:
        raise CredentialsUnavailable(
            f"no S3 credentials: the environment lacks {' and '.join(missing)} "
            "and the vault names no credentials file"
        )
    token = env.get("AWS_SESSION_TOKEN", "").strip() or None
    return Credentials(values[_FIELDS[0]], values[_FIELDS[1]], token, "environment")


def _from_file(path: str) -> Credentials:
    source = f"file {path}"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialsUnavailable(f"the credentials file {path} cannot be read: {why}") from None
    except configparser.Error:
        # the parser's message quotes the offending line, which may hold a secret
        raise CredentialsUnavailable(
            f"the credentials file {path} is not an INI file with a [{SECTION}] section"
        ) from None
    if not parser.has_section(SECTION):
        raise CredentialsUnavailable(f"the credentials file {path} has no [{SECTION}] section")
    section = parser[SECTION]
    values = {name: section.get(name, "").strip() for name in _FIELDS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise CredentialsUnavailable(
            f"the [{SECTION}] section of {path} lacks {' and '.join(missing)}"
        )
    token = section.get("aws_session_token", "").strip() or None
    return Credentials(values[_FIELDS[0]], values[_FIELDS[1]], token, source)
