"""NbdSource against a real NBD server (qemu-nbd over a unix socket, no libvirt): reads with
the default 16 x 256 KiB requests in flight."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

nbd = pytest.importorskip("nbd")

from vmvault.domain.errors import NbdReadFailed  # noqa: E402
from vmvault.hypervisor.nbd import NbdSource  # noqa: E402

MiB = 1 << 20
SIZE = 9 * MiB + 12345


@pytest.fixture()
def export(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    if shutil.which("qemu-nbd") is None:
        pytest.skip("qemu-nbd is not installed")
    data = random.Random(3).randbytes(SIZE)
    image = tmp_path / "disk.raw"
    image.write_bytes(data)
    sock = tmp_path / "nbd.sock"
    proc = subprocess.Popen(
        ["qemu-nbd", "-f", "raw", "-r", "-t", "-e", "4", "-k", str(sock), str(image)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # the socket file exists a little before qemu-nbd accepts on it
            try:
                NbdSource(sock).close()
                break
            except NbdReadFailed:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("qemu-nbd did not start")
                time.sleep(0.02)
        yield sock, data
    finally:
        proc.terminate()
        proc.wait(10)


def test_defaults_are_16_requests_of_256_kib(export: tuple[Path, bytes]) -> None:
    sock, _ = export
    with NbdSource(sock) as src:
        assert src._depth == 16 and src._piece == 256 << 10


@pytest.mark.parametrize(("offset", "length"), [(0, 4 * MiB), (12345, 3 * MiB + 7), (0, SIZE)])
def test_pread_into_reads_the_bytes(export: tuple[Path, bytes], offset: int, length: int) -> None:
    sock, data = export
    buf = bytearray(length)
    with NbdSource(sock) as src:
        src.pread_into(memoryview(buf), offset)
    assert buf == data[offset : offset + length]


def test_a_read_past_the_end_fails_cleanly(export: tuple[Path, bytes]) -> None:
    sock, _ = export
    with NbdSource(sock) as src:
        with pytest.raises(NbdReadFailed, match="outside the disk"):
            src.pread_into(memoryview(bytearray(MiB)), SIZE - 10)
        buf = bytearray(10)
        src.pread_into(memoryview(buf), SIZE - 10)  # still usable
