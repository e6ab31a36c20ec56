"""The built-in lab of test guests."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class LabFailed(VmvaultError):
    code = "LAB_FAILED"
    message = "the lab could not be set up"
    remedy = (
        "Read the message; 'vmvault lab status' shows what exists, 'vmvault lab down' cleans up."
    )


class LabGuestTimeout(VmvaultError):
    code = "LAB_GUEST_TIMEOUT"
    message = "lab guest {vm} did not answer guest-ping within {seconds}s"
    remedy = "The console log tail above shows how far it got; 'vmvault lab down' cleans up."
