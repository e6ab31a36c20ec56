"""The base of every expected failure, and the few that belong to no component.

See :mod:`vmvault.domain.errors` for how errors are data."""

from __future__ import annotations

from typing import ClassVar, Literal

Kind = Literal["usage", "failure"]


class VmvaultError(Exception):
    """Base of every expected vmvault failure."""

    code: ClassVar[str] = "VMVAULT_ERROR"
    message: ClassVar[str] = "vmvault failed"
    remedy: ClassVar[str] = "See the job log for details."
    kind: ClassVar[Kind] = "failure"
    #: Subclasses register themselves here so ``vmvault errors`` can list the catalog.
    registry: ClassVar[dict[str, type[VmvaultError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code in VmvaultError.registry and VmvaultError.registry[cls.code] is not cls:
            raise TypeError(f"duplicate error code {cls.code}")
        VmvaultError.registry[cls.code] = cls

    def __init__(self, detail: str | None = None, /, **fields: object) -> None:
        self.fields = fields
        self.detail = detail
        text = self.message.format(**fields) if fields else self.message
        if detail:
            text = f"{text}: {detail}"
        self.text = text
        self.remedy_text = self.remedy.format(**fields) if fields else self.remedy
        super().__init__(text)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.text, "remedy": self.remedy_text}


class InvalidInput(VmvaultError):
    code = "INVALID_INPUT"
    message = "{what} is not valid"
    remedy = "Check the value and try again."
    kind = "usage"


class PathNotAllowed(InvalidInput):
    code = "PATH_NOT_ALLOWED"
    message = "{what} is not a place vmvault writes to: {why}"
    remedy = (
        "Give a directory of its own outside /proc, /sys, /dev, /run and the system's trees "
        "(/etc, /usr, /bin, /sbin, /boot, /lib*), e.g. /srv/vmvault or /var/lib/libvirt/images "
        "(docs/input.md)."
    )


class InternalError(VmvaultError):
    code = "INTERNAL_ERROR"
    message = "unexpected internal error"
    remedy = "This is a bug: report it with the job log ('vmvault jobs show ID')."


class Cancelled(VmvaultError):
    code = "CANCELLED"
    message = "{operation} was cancelled"
    remedy = "Nothing was left half-written; run it again when needed."
