"""The real S3 service for tests: one single-node Ceph cluster with the RADOS Gateway per
test session (``vmvault.hypervisor.lab.ceph``), registered as a plugin by tests/conftest.py.

A test that needs S3 asks for the session fixture ``rgw``::

    def test_put(rgw):
        bucket = rgw.bucket()                      # a fresh, uniquely named bucket
        rgw.client().put_object(Bucket=bucket, Key="k", Body=b"v")
        subprocess.run([...], env=os.environ | rgw.env())   # credentials for a child process

The cluster starts on first use (about 6-8 s here) and is removed when the session ends.
Fault tests call ``rgw.kill_rgw()`` (SIGKILL, as a crash) and ``rgw.restart_rgw()``; after
every test that uses ``rgw`` the plugin starts the gateway again if it is not answering, so a
test that fails between the two does not take the others down with it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from vmvault.domain.errors import StorageLabFailed
from vmvault.hypervisor.lab.ceph import CephCluster
from vmvault.hypervisor.lab.ceph_conf import MAX_DIR_CHARS, RGW
from vmvault.hypervisor.lab.ceph_procs import http_answers, pid_of

_BUCKET_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


@dataclass
class Rgw:
    """A running RGW: its endpoint, the S3 user's keys, and the cluster behind it."""

    cluster: CephCluster
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    port: int
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        """A boto3 S3 client for this RGW (path-style addressing), shared by the session."""
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
            )
        return self._client

    def bucket(self, prefix: str = "t", *, object_lock: bool = False) -> str:
        """Create a fresh bucket named ``PREFIX-<random>`` and return its name."""
        if not _BUCKET_PREFIX.match(prefix):
            raise ValueError(f"bucket prefix {prefix!r}: lowercase letters, digits, '-'")
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        kwargs: dict[str, Any] = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        self.client().create_bucket(Bucket=name, **kwargs)
        return name

    def env(self) -> dict[str, str]:
        """The credentials for a child process (boto3 and the AWS CLI read these)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def kill_rgw(self) -> None:
        """Kill the gateway with SIGKILL (a crash); the endpoint stops answering at once."""
        self.cluster.stop_rgw()

    def restart_rgw(self) -> None:
        """Start the gateway again on the same endpoint and wait until it answers."""
        self.cluster.start_rgw()

    def running(self) -> bool:
        return pid_of(self.cluster.paths, RGW) is not None and http_answers(self.port)


#: The prefix of a session cluster's directory under /var/lib/vmvault (ceph_parent).
RGW_PREFIX = "test-rgw-"


def ceph_parent(preferred: Path, prefix: str) -> Path:
    """Where a test's cluster directory (``…/ceph``) goes: ``preferred`` when the path fits the
    daemons' unix sockets (MAX_DIR_CHARS), else a fresh directory ``/var/lib/vmvault/PREFIX…``
    (pytest-xdist's temporary paths are longer by ``popen-gwN/``); the caller removes that one
    with :func:`remove_ceph_parent`."""
    if len(str(preferred / "ceph")) <= MAX_DIR_CHARS:
        return preferred
    base = Path("/var/lib/vmvault")
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def remove_ceph_parent(parent: Path, prefix: str) -> None:
    """Remove a directory :func:`ceph_parent` made under /var/lib/vmvault (its cluster down)."""
    if parent.name.startswith(prefix) and parent.parent == Path("/var/lib/vmvault"):
        shutil.rmtree(parent, ignore_errors=True)


def _cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ceph_parent(tmp_path_factory.mktemp("rgw"), RGW_PREFIX) / "ceph"


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    """One real RGW for the whole session, removed at its end."""
    cluster = CephCluster(_cluster_dir(tmp_path_factory))
    try:
        try:
            state = cluster.up()
        except StorageLabFailed:  # a daemon that died at start on a loaded machine: once more
            cluster.down()
            state = cluster.up()
        yield Rgw(
            cluster=cluster,
            endpoint=state["endpoint"],
            access_key=state["access_key"],
            secret_key=state["secret_key"],
            region=state["region"],
            port=int(state["rgw_port"]),
        )
    finally:
        cluster.down()
        remove_ceph_parent(cluster.root.parent, RGW_PREFIX)


@pytest.fixture(autouse=True)
def _rgw_running_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used ``rgw``: start the gateway again if the test left it dead."""
    lab: Rgw | None = request.getfixturevalue("rgw") if "rgw" in request.fixturenames else None
    yield
    if lab is not None and not lab.running():
        lab.restart_rgw()
