"""The part of botocore's S3 model that vmvault's client loads: :data:`OPERATIONS` only.

botocore describes S3 in ``s3/2006-03-01/service-2.json``: 116 operations, 727 shapes and
their documentation — parsed, that is ~8 MiB of a backup process that makes 10 kinds of
request (docs/vault-format.md §7, "Memory on S3").  vmvault ships, in ``s3_api/``, the same
model cut down to the operations of :data:`OPERATIONS` and the shapes they reach, with empty
documentation, and an ``endpoints.json`` with S3's entries alone; the client's loader looks
there first (:func:`vmvault.storage.s3_session.make_client`) and finds the rest (the
endpoint rule set, the SDK defaults) in botocore's own data.  Same botocore, same requests,
same events; a client made this way simply has no method for another operation.

The files are generated from the installed botocore (the one pinned in requirements.lock)::

    .venv/bin/python -m vmvault.storage.s3_model      # rewrites src/vmvault/storage/s3_api/

and ``tests/unit/storage/test_s3_model.py`` fails when they no longer match it (a botocore
upgrade: run the command again) or when the code calls an operation left out here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Where the cut-down model lives (a botocore data directory: ``<service>/<version>/``).
API_DIR = Path(__file__).with_name("s3_api")
SERVICE = "s3"
VERSION = "2006-03-01"

#: The S3 operations a client made by ``make_client`` offers: the data path, the leases,
#: ``vault create`` and the Object Lock requests (retention on PUT, PutObjectRetention …).
OPERATIONS = frozenset(
    {
        "AbortMultipartUpload",
        "CopyObject",
        "CreateBucket",
        "DeleteObject",
        "DeleteObjects",
        "GetBucketVersioning",
        "GetObject",
        "GetObjectLegalHold",
        "GetObjectLockConfiguration",
        "GetObjectRetention",
        "HeadBucket",
        "HeadObject",
        "ListMultipartUploads",
        "ListObjectVersions",
        "ListObjectsV2",
        "PutObject",
        "PutObjectLegalHold",
        "PutObjectLockConfiguration",
        "PutObjectRetention",
    }
)


def trimmed_service(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` (botocore's service-2) with :data:`OPERATIONS` and the shapes they reach
    only, documentation emptied."""
    operations = {k: v for k, v in model["operations"].items() if k in OPERATIONS}
    missing = OPERATIONS - operations.keys()
    if missing:
        raise ValueError(f"botocore's S3 model has no operation {sorted(missing)}")
    shapes = model["shapes"]
    keep: set[str] = set()
    todo = [
        ref["shape"]
        for op in operations.values()
        for ref in (op.get("input"), op.get("output"), *op.get("errors", ()))
        if ref
    ]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        shape = shapes[name]
        todo += [member["shape"] for member in shape.get("members", {}).values()]
        todo += [shape[f]["shape"] for f in ("member", "key", "value") if f in shape]
    cut: dict[str, Any] = _undocumented(
        {**model, "operations": operations, "shapes": {k: shapes[k] for k in sorted(keep)}}
    )
    return cut


def trimmed_endpoints(endpoints: dict[str, Any]) -> dict[str, Any]:
    """botocore's ``endpoints.json`` with S3's entries alone (4 MiB parsed, 16 KB kept)."""
    return {
        **endpoints,
        "partitions": [
            {**p, "services": {k: v for k, v in p.get("services", {}).items() if k == SERVICE}}
            for p in endpoints["partitions"]
        ],
    }


def generated() -> dict[str, str]:
    """The files of ``s3_api/`` (relative path → text) made from the installed botocore."""
    from botocore.loaders import Loader

    loader = Loader()  # botocore's own data only
    service = loader.load_service_model(SERVICE, "service-2", VERSION)
    endpoints = loader.load_data("endpoints")
    return {
        f"{SERVICE}/{VERSION}/service-2.json": _dump(trimmed_service(service)),
        "endpoints.json": _dump(trimmed_endpoints(endpoints)),
    }


def _undocumented(value: Any) -> Any:
    """``value`` with every ``documentation`` emptied (botocore reads some: kept as "")."""
    if isinstance(value, dict):
        return {k: "" if k == "documentation" else _undocumented(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def main() -> None:
    for name, text in generated().items():
        path = API_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"{path}: {len(text):,} bytes")


if __name__ == "__main__":
    main()
