"""The cut-down S3 model vmvault's botocore client loads (:mod:`vmvault.storage.s3_model`)."""

from __future__ import annotations

import re
from pathlib import Path

from vmvault.storage.s3_credentials import Credentials
from vmvault.storage.s3_model import API_DIR, OPERATIONS, generated
from vmvault.storage.s3_session import make_client

STORAGE = Path(__file__).parents[3] / "src" / "vmvault" / "storage"


def test_the_shipped_model_is_the_installed_botocore_s_cut_down() -> None:
    """Fails after a botocore upgrade: run ``python -m vmvault.storage.s3_model``."""
    for name, text in generated().items():
        assert (API_DIR / name).read_text() == text, name


def test_a_client_offers_the_listed_operations_and_no_other() -> None:
    client = make_client(
        "http://127.0.0.1:9", "us-east-1", Credentials("a", "b", None), connections=2
    )  # no request is made
    assert set(client.meta.service_model.operation_names) == OPERATIONS
    assert hasattr(client, "put_object_retention") and not hasattr(client, "put_bucket_acl")


def test_every_operation_the_s3_backend_makes_is_in_the_model() -> None:
    """The operations named in ``storage/s3*.py`` (``call("Op", …)``, ``client.op_name(``)
    are all in :data:`OPERATIONS`."""
    named: set[str] = set()
    for path in STORAGE.glob("s3*.py"):
        text = path.read_text()
        named |= set(re.findall(r'call\(\s*"([A-Z][A-Za-z0-9]+)"', text))
        named |= {
            "".join(part.title() for part in m.split("_"))
            for m in re.findall(r"client\.([a-z0-9_]+)\(", text)
        }
    assert {"PutObject", "ListObjectsV2", "DeleteObjects"} <= named  # the scan still works
    assert named <= OPERATIONS, sorted(named - OPERATIONS)
