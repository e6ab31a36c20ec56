"""A pull's reader (domain/pull.py): :class:`NbdSource` over TCP with TLS required, against a
real ``qemu-nbd`` with the TLS credentials QEMU reads (the lab host's PKI, host_pki.py), no
libvirt.  It reads the bytes exactly as over a unix socket; a client certificate that another
CA signed is refused by the server, a server certificate that another CA signed by the
client, and a server without TLS is refused rather than read in plain text — each
``PULL_TLS_FAILED``, the directory named and no key shown."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

nbd = pytest.importorskip("nbd")

from vmvault.domain.errors import (  # noqa: E402
    Cancelled,
    NbdConnectTimeout,
    NbdReadFailed,
    PullTlsFailed,
)
from vmvault.hypervisor.lab.host_pki import HostPki, write_pki  # noqa: E402
from vmvault.hypervisor.nbd import NbdSource, NbdTls, check_client_files  # noqa: E402

MiB = 1 << 20
SIZE = 5 * MiB + 3 * 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> HostPki:
    where = tmp_path_factory.mktemp("pki")
    return write_pki(where / "pki", qemu_dir=where / "qemu")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client's certificates (libnbd's names) of another CA."""
    found = write_pki(tmp_path_factory.mktemp("other") / "pki", org="another CA").nbd_client
    assert found is not None
    return found


def _serve(tmp_path: Path, pki: HostPki | None) -> tuple[subprocess.Popen[bytes], int, bytes]:
    """``qemu-nbd`` on a free loopback port of a random raw image, with TLS when ``pki``."""
    if shutil.which("qemu-nbd") is None:
        pytest.skip("qemu-nbd is not installed")
    data = random.Random(5).randbytes(SIZE)
    image = tmp_path / "disk.raw"
    image.write_bytes(data)
    port = _free_port()
    argv = ["qemu-nbd", "-f", "raw", "-r", "-t", "-e", "4", "-b", "127.0.0.1", "-p", str(port)]
    if pki is not None:
        creds = f"tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,dir={pki.qemu_server}"
        argv += ["--object", creds, "--tls-creds", "tls0"]
    proc = subprocess.Popen(
        [*argv, str(image)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port, data
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip("qemu-nbd did not start")
        time.sleep(0.02)


@pytest.fixture()
def tls_server(tmp_path: Path, pki: HostPki) -> Iterator[tuple[int, bytes]]:
    proc, port, data = _serve(tmp_path, pki)
    try:
        yield port, data
    finally:
        proc.terminate()
        proc.wait(10)


def _key_line(directory: Path) -> str:
    return (directory / "client-key.pem").read_text().splitlines()[1]


def test_a_pull_reads_the_bytes_with_tls(pki: HostPki, tls_server: tuple[int, bytes]) -> None:
    port, data = tls_server
    assert pki.nbd_client is not None
    tls = NbdTls("127.0.0.1", port, str(pki.nbd_client))
    buf = bytearray(SIZE)
    with NbdSource("", tls=tls, connections=2) as src:
        assert src.size == SIZE
        src.pread_into(memoryview(buf), 0)
        assert all(h.get_tls_negotiated() for h in src._handles)
    assert buf == data


def test_a_client_certificate_of_another_ca_is_refused(
    pki: HostPki, other: Path, tls_server: tuple[int, bytes], tmp_path: Path
) -> None:
    """Trusting the server, but with a certificate the server's CA never signed."""
    port, _ = tls_server
    assert pki.nbd_client is not None
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(pki.nbd_client / "ca-cert.pem", mixed)
    for name in ("client-cert.pem", "client-key.pem"):
        shutil.copy(other / name, mixed)
    with pytest.raises(PullTlsFailed) as caught:
        NbdSource("", "", disk="vm/vda", tls=NbdTls("127.0.0.1", port, str(mixed)))
    err = caught.value
    assert err.code == "PULL_TLS_FAILED" and str(mixed) in err.remedy_text, err.as_dict()
    assert f"127.0.0.1:{port}" in err.text and "vm/vda" in err.text
    assert _key_line(mixed) not in str(err.as_dict())


def test_a_server_certificate_of_another_ca_is_refused(
    other: Path, tls_server: tuple[int, bytes]
) -> None:
    port, _ = tls_server
    with pytest.raises(PullTlsFailed):
        NbdSource("", tls=NbdTls("127.0.0.1", port, str(other)))


def test_a_server_without_tls_is_never_read_in_plain_text(pki: HostPki, tmp_path: Path) -> None:
    proc, port, _ = _serve(tmp_path, None)
    try:
        h = nbd.NBD()  # the control: the server is there, and answers a plain client
        h.connect_tcp("127.0.0.1", str(port))
        assert h.get_size() == SIZE
        h.shutdown()
        assert pki.nbd_client is not None
        with pytest.raises(PullTlsFailed):
            NbdSource("", tls=NbdTls("127.0.0.1", port, str(pki.nbd_client)))
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_pull_without_its_client_files_is_refused_before_anything(tmp_path: Path) -> None:
    (tmp_path / "ca-cert.pem").write_text("x")
    with pytest.raises(PullTlsFailed) as caught:
        check_client_files(str(tmp_path), "h1.example", "vm1")
    assert "lacks client-cert.pem, client-key.pem" in caught.value.text


def test_a_server_that_does_not_answer_is_a_read_failure_not_a_tls_one(pki: HostPki) -> None:
    assert pki.nbd_client is not None
    with pytest.raises(NbdReadFailed) as caught:
        NbdSource("", tls=NbdTls("127.0.0.1", _free_port(), str(pki.nbd_client)))
    assert not isinstance(caught.value, PullTlsFailed), caught.value


@pytest.fixture()
def silent() -> Iterator[int]:
    """A TCP listener that accepts and never says a word (a stalled handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for c in accepted:
            c.close()
        listener.close()


def test_a_server_that_never_answers_is_given_up_on_at_the_deadline(
    pki: HostPki, silent: int
) -> None:
    """The old ``connect_tcp`` waited forever here; the pull's connect is bounded."""
    assert pki.nbd_client is not None
    tls = NbdTls("127.0.0.1", silent, str(pki.nbd_client))
    began = time.monotonic()
    with pytest.raises(NbdConnectTimeout) as caught:
        NbdSource("", "vmvault-P-vda", disk="vm/vda", tls=tls, connect_timeout=1.0)
    assert time.monotonic() - began < 10  # the deadline (1 s) and a poll, not a hang
    err = caught.value
    assert err.code == "NBD_CONNECT_TIMEOUT" and f"127.0.0.1:{silent}" in err.text, err.text
    assert "within 1s" in err.text and "stalled in" in err.text, err.text


def test_a_cancel_stops_a_connection_that_stalls(pki: HostPki, silent: int) -> None:
    assert pki.nbd_client is not None
    tls = NbdTls("127.0.0.1", silent, str(pki.nbd_client))
    asked: list[float] = []

    def cancel() -> bool:
        asked.append(time.monotonic())
        return len(asked) > 1

    with pytest.raises(Cancelled):
        NbdSource("", tls=tls, connect_timeout=60.0, cancel=cancel)
    assert len(asked) == 2
