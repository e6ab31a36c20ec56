"""A home for API tests: the real SQLite catalog and a local vault in a temporary directory,
with the in-memory hypervisor, backup and restore drivers and host files that the
composition root accepts — so that discovery, registration, backups and restores run through
the API without touching a real libvirt host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api_tokens import authenticate, bearer
from vmvault.api.app import create_app
from vmvault.bootstrap import Services, bootstrap
from vmvault.config import Settings
from vmvault.domain.access import Role
from vmvault.domain.job import Job
from vmvault.domain.vault import S3Location
from vmvault.hypervisor.memory import MemoryBackupDriver, MemoryDisk, MemoryDomain, MemoryHypervisor
from vmvault.hypervisor.memory.files import MemoryFiles
from vmvault.hypervisor.memory.restore import MemoryRestoreDriver
from vmvault.storage.backend import StorageBackend
from vmvault.storage.local import LocalBackend
from vmvault.storage.memory import MemoryBackend

MiB = 1 << 20


@dataclass
class World:
    settings: Settings
    hv: MemoryHypervisor
    files: MemoryFiles
    restore_driver: MemoryRestoreDriver
    services: Services = field(init=False)

    def __post_init__(self) -> None:
        self.services = self.fresh_services()

    def fresh_services(self) -> Services:
        """Services over this world's home and in-memory adapters (what the next process
        would build)."""
        return bootstrap(
            self.settings,
            hypervisor=self.hv,
            backup_driver=MemoryBackupDriver(self.hv),
            restore_driver=self.restore_driver,
            host_files=self.files,
            storage=open_storage,
        )

    def client(self, role: Role = Role.ADMIN) -> TestClient:
        app = create_app(self.services, authenticate=authenticate)
        return TestClient(app, headers=bearer(role))

    def add_vm(self, name: str, uuid: str) -> MemoryDomain:
        disks = [MemoryDisk("vda", 8 * MiB), MemoryDisk("vdb", 4 * MiB)]
        disks[0].write(0, name.encode() * 1000)
        return self.hv.add(MemoryDomain(uuid, name, disks))

    def run_queued(self) -> list[Job]:
        """What the server's workers do: run every queued job to its end."""
        done = []
        while (job := self.services.queue.claim_next()) is not None:
            done.append(self.services.queue.execute(job))
        return done


def open_storage(where: Path | S3Location) -> StorageBackend:
    """A directory as it is; a bucket in memory (one per URL): no request leaves the host."""
    if isinstance(where, S3Location):
        return BUCKETS.setdefault(where.url, MemoryBackend(where.url, remote=True))
    return LocalBackend(where)


BUCKETS: dict[str, MemoryBackend] = {}


def make_world(home: Path, env: dict[str, str] | None = None) -> World:
    files = MemoryFiles()
    settings = Settings.from_env({"VMVAULT_HOME": str(home), **(env or {})})
    return World(settings, MemoryHypervisor(), files, MemoryRestoreDriver(files))
