"""The keys of an encrypted vault: paper key export and import, passphrase change.

An encrypted vault's three keys are wrapped with its passphrase in a key file outside the
vault (docs/vault-format.md §3). These operations change only that file, never a chunk:

* :meth:`VaultKeyService.export` unwraps the keys (the passphrase must open the key file and
  its fingerprint must be the vault's) and returns them as a :class:`PaperKey` to print.
* :meth:`VaultKeyService.import_key` restores access from a paper key when the key file or
  the passphrase is lost: the paper key must parse (every line's check, the whole key's
  check) and its keys must be the vault's (fingerprint of the ``config``), then a new key
  file wrapped with a new passphrase replaces the old one.
* :meth:`VaultKeyService.change_passphrase` rewraps with a new passphrase.

Everything is checked before anything is written: a wrong passphrase, a mistyped or foreign
paper key, an unencrypted vault or a missing new passphrase leaves the key file as it was.
The new file is written beside the old one, read back, then renamed over it
(:func:`~vmvault.dataplane.keys.replace_key_file`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vmvault.dataplane.chunkstore import space_errors
from vmvault.dataplane.keys import KeySet, replace_key_file
from vmvault.dataplane.vault import VaultStore
from vmvault.domain.errors import (
    InvalidInput,
    PaperKeyInvalid,
    PaperKeyMismatch,
    VaultNotEncrypted,
)
from vmvault.domain.paper_key import PaperKey, parse
from vmvault.domain.vault import Vault
from vmvault.services.vaults import VaultService


class VaultKeyService:
    def __init__(self, vaults: VaultService, new_passphrase: Callable[[], str | None]) -> None:
        self.vaults = vaults
        self.new_passphrase = new_passphrase

    def export(self, name: str | None) -> PaperKey:
        """The vault's keys as a paper key (needs the current passphrase)."""
        vault = self._encrypted(name, "export")
        keys = self.vaults.open_store(vault).keys
        return PaperKey(vault.name, keys.fingerprint(), keys.packed())

    def import_key(self, name: str | None, text: str) -> Path:
        """Write a new key file from a paper key, wrapped with the new passphrase; returns
        the key file's path."""
        vault = self._encrypted(name, "import into")
        with space_errors(vault.path):
            expected = VaultStore.read_config(self.vaults.backend(vault)).key_fingerprint
        return self._write(vault, keys_from_paper(text, expected, vault.name))

    def change_passphrase(self, name: str | None) -> Path:
        """Rewrap the vault's keys with the new passphrase (needs the current one)."""
        vault = self._encrypted(name, "rewrap")
        keys = self.vaults.open_store(vault).keys
        return self._write(vault, keys)

    def _encrypted(self, name: str | None, action: str) -> Vault:
        vault = self.vaults.resolve(name)
        if not vault.encrypted:
            raise VaultNotEncrypted(vault=vault.name, action=action)
        return vault

    def _write(self, vault: Vault, keys: KeySet) -> Path:
        secret = self.new_passphrase()
        if not secret:
            raise InvalidInput(
                "give it in VMVAULT_NEW_PASSPHRASE(_FILE) or type it on a terminal",
                what="the new passphrase",
            )
        path = Path(str(vault.key_file))
        with space_errors(str(path.parent)):
            replace_key_file(path, keys, secret)
        return path


def keys_from_paper(text: str, expected: str, vault: str) -> KeySet:
    """The key set a paper key holds (block or QR text), checked line by line, whole, and
    against ``expected``, the fingerprint in the vault's ``config`` (``PAPER_KEY_INVALID``,
    ``PAPER_KEY_MISMATCH``): ``vault key import`` and ``vault attach --paper-key``."""
    paper = parse(text)
    keys = KeySet.unpack(paper.secret)
    if keys.fingerprint() != paper.fingerprint:
        raise PaperKeyInvalid(
            "it does not match the key (a line was mistyped)", where="the fingerprint line"
        )
    if keys.fingerprint() != expected:
        raise PaperKeyMismatch(given=keys.fingerprint(), vault=vault, expected=expected)
    return keys
