"""The built-in lab: real test guests on the local libvirtd (``vmvault lab …``) and a real
S3 service beside them (``vmvault lab storage …``) and a real PostgreSQL catalog
(``vmvault lab catalog …``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import check_count, quoted
from vmvault.services.ports import CatalogLab, LabDriver, ObjectStoreLab


class LabService:
    def __init__(self, driver: LabDriver, variants: tuple[str, ...], state_dir: Path) -> None:
        self.driver = driver
        self.variants = variants
        self.state_dir = state_dir

    def ensure_daemons(self) -> bool:
        """Start virtlogd + libvirtd when they are not running (there is no systemd)."""
        return self.driver.ensure_daemons(self.state_dir)

    def build(self, force: bool = False) -> str:
        return self.driver.build(force)

    def up(
        self, count: int, variants: list[str], host: str | None = None
    ) -> list[dict[str, object]]:
        """Check the request, start the daemons when needed, then the guests (on the main
        host, or on the lab's second host when ``host`` is its URI)."""
        check_count(count, "--count", 1, 16)
        chosen = variants or ["standard"]
        unknown = [v for v in chosen if v not in self.variants]
        if unknown:
            raise InvalidInput(
                "known variants: " + ", ".join(self.variants), what=f"variant {quoted(unknown[0])}"
            )
        if host is None:
            self.ensure_daemons()
        return self.driver.up({v: count for v in dict.fromkeys(chosen)}, host)

    def status(self, host: str | None = None) -> list[dict[str, object]]:
        return self.driver.status(host)

    def down(self, host: str | None = None) -> list[str]:
        return self.driver.down(host)

    def host_up(self) -> dict[str, Any]:
        """Start the lab's second libvirt host (docs/lab.md, "A second libvirt host")."""
        return self.driver.host_up()

    def host_status(self) -> dict[str, Any]:
        return self.driver.host_status()

    def host_down(self) -> list[str] | None:
        return self.driver.host_down()


class StorageLabService:
    """The lab's object store (a single-node Ceph cluster with the RADOS Gateway) or its
    PostgreSQL catalog: up, status, down."""

    def __init__(self, driver: ObjectStoreLab | CatalogLab) -> None:
        self.driver = driver

    def up(self) -> dict[str, Any]:
        return self.driver.up()

    def status(self) -> dict[str, Any]:
        return self.driver.status()

    def down(self) -> bool:
        return self.driver.down()
