"""``vmvault vault key``: an encrypted vault's paper key, its import, passphrase changes
(services/vault_keys.py; the paper key's layout: domain/paper_key.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from vmvault.cli import remote
from vmvault.cli.context import services
from vmvault.cli.render import err, out
from vmvault.domain.errors import InvalidInput
from vmvault.domain.paper_key import qr_payload, render

key_app = typer.Typer(
    help="An encrypted vault's keys: paper key export/import, passphrase change.",
    no_args_is_help=True,
)


@key_app.callback()
def _local_only() -> None:
    # a passphrase, a key file or a paper key never crosses the network
    remote.refuse("a passphrase or a key never crosses the network")


#: A paper key is ~600 characters; anything far larger given to import is not one.
MAX_PAPER_KEY_BYTES = 16 * 1024


@key_app.command("export")
def key_export(
    name: Annotated[str, typer.Argument(help="The vault.")],
    qr: Annotated[
        Path | None,
        typer.Option(help="Also write the key as a QR code to this PNG file (new, mode 0600)."),
    ] = None,
) -> None:
    """Print the vault's keys as a paper key (needs the passphrase).

    Anyone holding the paper key can read the vault without the passphrase: print it, keep
    it offline, never store it next to the vault."""
    if qr is not None and qr.exists():
        raise InvalidInput("it already exists; give a new file", what=f"--qr {qr}")
    paper = services().vault_keys.export(name)
    if qr is not None:
        _write_qr(qr, qr_payload(paper))
    sys.stdout.write(render(paper))
    err.print(
        "This paper key opens the vault without its passphrase: keep it offline."
        + (f" QR code: {qr}" if qr is not None else ""),
        markup=False,
    )


@key_app.command("import")
def key_import(
    name: Annotated[str, typer.Argument(help="The vault.")],
    from_: Annotated[
        Path,
        typer.Option(
            "--from",
            help="File holding the paper key as printed, or the QR code's text; '-' reads stdin.",
        ),
    ] = Path("-"),
) -> None:
    """Restore access to an encrypted vault from its paper key: write a new key file wrapped
    with a new passphrase (VMVAULT_NEW_PASSPHRASE(_FILE), or asked twice)."""
    text = read_paper(from_)
    path = services().vault_keys.import_key(name, text)
    out.print(f"vault {name}: key file {path} written from the paper key", markup=False)


@key_app.command("change-passphrase")
def key_change_passphrase(name: Annotated[str, typer.Argument(help="The vault.")]) -> None:
    """Rewrap the vault's keys with a new passphrase (the chunks are not touched): the
    current one from VMVAULT_PASSPHRASE(_FILE) or asked, the new one from
    VMVAULT_NEW_PASSPHRASE(_FILE) or asked twice."""
    path = services().vault_keys.change_passphrase(name)
    out.print(f"vault {name}: key file {path} rewrapped with the new passphrase", markup=False)


def read_paper(source: Path, option: str = "--from") -> str:
    """The text of a paper key from a file, or stdin for ``-`` (bounded, decoded)."""
    try:
        if str(source) == "-":
            if sys.stdin.isatty():
                err.print("Type or paste the paper key, then Ctrl-D:", markup=False)
            data = sys.stdin.buffer.read(MAX_PAPER_KEY_BYTES + 1)
        else:
            with source.open("rb") as f:
                data = f.read(MAX_PAPER_KEY_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(exc.strerror or str(exc), what=f"{option} {source}") from None
    if len(data) > MAX_PAPER_KEY_BYTES:
        raise InvalidInput("it is far larger than a paper key", what=f"{option} {source}")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidInput("it is not text", what=f"{option} {source}") from None


def _write_qr(path: Path, payload: str) -> None:
    """The QR code of ``payload`` as a PNG (pure Python: qrcode + pypng), created mode 0600."""
    import qrcode
    from qrcode.image.pure import PyPNGImage

    image = qrcode.make(
        payload, image_factory=PyPNGImage, error_correction=qrcode.constants.ERROR_CORRECT_M
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InvalidInput(exc.strerror or str(exc), what=f"--qr {path}") from None
    with os.fdopen(fd, "wb") as f:
        image.save(f)
