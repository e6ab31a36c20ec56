"""The one libvirt error-message helper (hypervisor/libvirt/connection.error_message)."""

from __future__ import annotations

import libvirt

from vmvault.hypervisor.libvirt.connection import error_message


class FakeError(libvirt.libvirtError):
    def __init__(self, text: str, err_message: str | None) -> None:
        Exception.__init__(self, text)
        self.err = (1, 0, err_message, 0, "", None, None, 0, 0)


def test_libvirts_own_message_first() -> None:
    exc = FakeError("fallback text", "Requested operation is not valid: domain is not running")
    assert error_message(exc) == "Requested operation is not valid: domain is not running"


def test_the_exception_text_when_libvirt_recorded_none() -> None:
    assert error_message(FakeError("  cannot recv data  \n", None)) == "cannot recv data"
