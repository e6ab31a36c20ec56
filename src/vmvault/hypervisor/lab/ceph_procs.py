"""Running Ceph's commands and daemons for a lab cluster, and stopping them again.

Every command gets ``-c DIR/ceph.conf``; a failure raises :class:`StorageLabFailed` naming the
command or daemon with the end of its output and of its log. Daemons detach themselves: the
command that starts one returns once the daemon is initialised (or has failed), and its stdio
goes to ``log/NAME.out`` so that it never holds the caller's pipes open (a ``vmvault`` run by a
script that reads its output would otherwise wait for the daemon to exit).

A daemon is known only by the pid in its pid file, and is signalled only if that process is
alive (not a zombie: this host's PID 1 reaps orphans late) and was started with this
cluster's config, so a stale pid file never kills a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from vmvault.domain.errors import StorageLabFailed
from vmvault.hypervisor.lab.ceph_conf import CephPaths


def tail(path: Path, lines: int = 6) -> str:
    """The last ``lines`` lines of ``path`` introduced by its name, or why there are none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no {path})"
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    body = "\n".join(kept[-lines:])
    return f"last lines of {path}:\n{body or '(empty)'}"


def failed(paths: CephPaths, what: str, detail: str, daemon: str | None = None) -> StorageLabFailed:
    """The error for ``what`` failing, with the tail of ``daemon``'s log (and early output)."""
    parts = [detail]
    if daemon is not None:
        out = paths.out_file(daemon)
        if out.exists() and out.stat().st_size:
            parts.append(tail(out, 3))
        parts.append(tail(paths.log_file(daemon)))
    return StorageLabFailed("; ".join(parts), what=what, logs=paths.root / "log", root=paths.root)


def run(
    paths: CephPaths,
    argv: list[str],
    *,
    stdin: str | None = None,
    timeout: float = 60,
    daemon: str | None = None,
) -> str:
    """Run one Ceph command with this cluster's config; its stdout, or StorageLabFailed."""
    full = [argv[0], "-c", str(paths.conf), *argv[1:]]
    env = dict(os.environ, CEPH_CONF=str(paths.conf))
    try:
        p = subprocess.run(
            full, input=stdin, capture_output=True, text=True, timeout=timeout, env=env
        )
    except FileNotFoundError:
        raise failed(
            paths,
            argv[0],
            "not installed (Debian: ceph-mon ceph-osd radosgw ceph-common; "
            "scripts/install-system.sh installs them)",
        ) from None
    except subprocess.TimeoutExpired:
        raise failed(paths, argv[0], f"'{' '.join(argv)}' gave no answer in {timeout:.0f}s",
                     daemon) from None  # fmt: skip
    if p.returncode != 0:
        err = " ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
        raise failed(
            paths, argv[0], f"'{' '.join(argv)}' exited with {p.returncode}: {err}", daemon
        )
    return p.stdout


def start(paths: CephPaths, daemon: str, argv: list[str], timeout: float = 60) -> None:
    """Start a daemon that detaches itself; raise if it fails before detaching."""
    full = [argv[0], "-c", str(paths.conf), *argv[1:]]
    env = dict(os.environ, CEPH_CONF=str(paths.conf))
    with contextlib.suppress(FileNotFoundError):
        paths.pid_file(daemon).unlink()  # a stale one would be taken for the new daemon
    try:
        with open(paths.out_file(daemon), "ab") as out:
            code = subprocess.run(
                full, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                timeout=timeout, start_new_session=True,
            ).returncode  # fmt: skip
    except FileNotFoundError:
        raise failed(paths, argv[0], "not installed (scripts/install-system.sh)") from None
    except subprocess.TimeoutExpired:
        raise failed(paths, f"{argv[0]} ({daemon})", f"did not start in {timeout:.0f}s",
                     daemon) from None  # fmt: skip
    if code != 0:
        raise failed(paths, f"{argv[0]} ({daemon})", f"exited with {code} at start", daemon)


def pid_of(paths: CephPaths, daemon: str) -> int | None:
    """The pid of ``daemon`` if it runs (per its pid file), else None."""
    try:
        pid = int(paths.pid_file(daemon).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _ours(pid, paths) else None


def _ours(pid: int, paths: CephPaths) -> bool:
    """True if ``pid`` is a live (non-zombie) process started with this cluster's config."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return os.fsencode(str(paths.conf)) in argv


def wait_gone(paths: CephPaths, pids: dict[str, int], timeout: float) -> dict[str, int]:
    """Wait up to ``timeout`` for the processes to end; those still running."""
    deadline = time.monotonic() + timeout
    left = dict(pids)
    while left:
        left = {d: p for d, p in left.items() if _ours(p, paths)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return left


def stop(paths: CephPaths, daemons: Iterable[str], timeout: float) -> None:
    """TERM the running ``daemons`` together, KILL those still there after ``timeout``."""
    pids = {d: p for d in daemons if (p := pid_of(paths, d)) is not None}
    signal_all(pids.values(), signal.SIGTERM)
    left = wait_gone(paths, pids, timeout)
    if left:
        signal_all(left.values(), signal.SIGKILL)
        left = wait_gone(paths, left, 10)
    if left:
        names = ", ".join(f"{d} (pid {p})" for d, p in left.items())
        raise failed(paths, names, "still running after SIGKILL")


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def http_answers(port: int, timeout: float = 2.0) -> bool:
    """True if something answers HTTP on 127.0.0.1:``port`` (any status: RGW says 200)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
