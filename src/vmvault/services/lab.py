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

    def up(self, count: int, variants: list[str]) -> list[dict[str, object]]:
        """Check the request, start the daemons when needed, then the guests."""
        check_count(count, "--count", 1, 16)
        chosen = variants or ["standard"]
        unknown = [v for v in chosen if v not in self.variants]
        if unknown:
            raise InvalidInput(
                "known variants: " + ", ".join(self.variants), what=f"variant {quoted(unknown[0])}"
            )
        self.ensure_daemons()
        return self.driver.up({v: count for v in dict.fromkeys(chosen)})

    def status(self) -> list[dict[str, object]]:
        return self.driver.status()

    def down(self) -> list[str]:
        return self.driver.down()


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
