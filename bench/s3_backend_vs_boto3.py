"""A quick comparison: PUT and GET of 4 MiB objects through the S3 backend vs plain boto3.

Same RGW, same objects (random, incompressible), same concurrency (8), alternating rounds so
that the machine's load hits both alike.  Usage (credentials in the environment)::

    .venv/bin/python bench/s3_backend_vs_boto3.py http://127.0.0.1:PORT [objects] [rounds]

Prints MB/s per round and the medians, and the ratio backend / boto3.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

from vmvault.domain.vault import S3Location
from vmvault.storage.s3 import S3Backend, open_s3

SIZE = 4 << 20
THREADS = 8


def plain_client(endpoint: str) -> object:
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=THREADS + 8)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def boto3_round(client: object, bucket: str, blobs: list[bytes]) -> tuple[float, float]:
    keys = [f"plain/{uuid.uuid4().hex}" for _ in blobs]
    with ThreadPoolExecutor(THREADS) as pool:
        t = time.monotonic()
        list(
            pool.map(
                lambda kb: client.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]),  # type: ignore[attr-defined]
                zip(keys, blobs, strict=True),
            )
        )
        put = time.monotonic() - t
        t = time.monotonic()
        list(pool.map(lambda k: client.get_object(Bucket=bucket, Key=k)["Body"].read(), keys))  # type: ignore[attr-defined]
        get = time.monotonic() - t
    return put, get


def backend_round(backend: S3Backend, blobs: list[bytes]) -> tuple[float, float]:
    keys = [f"chunks/{uuid.uuid4().hex}" for _ in blobs]
    t = time.monotonic()
    batch = backend.begin_batch()
    for key, blob in zip(keys, blobs, strict=True):
        batch.add(key, blob)
    batch.commit()
    put = time.monotonic() - t
    bufs = [memoryview(bytearray(SIZE)) for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        t = time.monotonic()
        list(pool.map(lambda n: backend.get_into(keys[n], bufs[n % THREADS]), range(len(keys))))
        get = time.monotonic() - t
    return put, get


def main() -> None:
    endpoint = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    client = plain_client(endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    backend = open_s3(
        S3Location(endpoint, bucket, "vault/"), uploads=THREADS, inflight_bytes=THREADS * SIZE
    )
    blobs = [os.urandom(SIZE) for _ in range(count)]
    mb = count * SIZE / 1e6
    rows: dict[str, list[float]] = {
        "boto3 PUT": [],
        "boto3 GET": [],
        "vmvault PUT": [],
        "vmvault GET": [],
    }
    for n in range(rounds):
        put, get = boto3_round(client, bucket, blobs)
        rows["boto3 PUT"].append(mb / put)
        rows["boto3 GET"].append(mb / get)
        put, get = backend_round(backend, blobs)
        rows["vmvault PUT"].append(mb / put)
        rows["vmvault GET"].append(mb / get)
        print(f"round {n}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rows.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    for k, v in med.items():
        print(f"{k:12} {v:7.0f} MB/s (median of {rounds})")
    print(
        f"PUT ratio {med['vmvault PUT'] / med['boto3 PUT']:.2f}, "
        f"GET ratio {med['vmvault GET'] / med['boto3 GET']:.2f}"
    )


if __name__ == "__main__":
    main()
