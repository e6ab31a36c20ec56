"""The console script ends the process without tearing the interpreter down
(:func:`vmvault.cli.process.leave`), yet as a normal exit would: exit hooks, output, code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from vmvault.cli.process import leave
    mark, code, worker = sys.argv[1], sys.argv[2], sys.argv[3]
    atexit.register(lambda: open(mark, "a").write("hook "))
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    if worker == "1":  # a non-daemon thread still working: the normal exit waits for it
        threading.Thread(target=lambda: (time.sleep(0.5), open(mark, "a").write("worker "))).start()
    sys.stdout.write("unflushed output")
    leave(int(code) if code.isdigit() else code)
    """
)


def _run(
    tmp_path: Path, code: str, worker: bool = False
) -> tuple[subprocess.CompletedProcess[str], str]:
    mark = tmp_path / "mark"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(mark), code, "1" if worker else "0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return proc, mark.read_text() if mark.exists() else ""


def test_leave_runs_the_exit_hooks_flushes_and_keeps_the_code(tmp_path: Path) -> None:
    proc, mark = _run(tmp_path, "3")
    assert (proc.returncode, proc.stdout, mark) == (3, "unflushed output", "hook ")
    proc, _ = _run(tmp_path, "0")
    assert proc.returncode == 0


def test_leave_with_a_message_prints_it_and_fails(tmp_path: Path) -> None:
    proc, _ = _run(tmp_path, "bad thing")
    assert proc.returncode == 1 and "bad thing" in proc.stderr


def test_leave_waits_for_a_working_thread(tmp_path: Path) -> None:
    proc, mark = _run(tmp_path, "2", worker=True)
    assert proc.returncode == 2
    assert mark.split() == ["worker", "hook"]


_ARENA = textwrap.dedent(
    """
    import sys, threading
    from vmvault.cli import process
    if sys.argv[1] == "1":
        process.start()

    def rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) // 1024

    def work():
        bytearray(1 << 20)  # freed: glibc's default raises its mapping threshold above 1 MiB
        blocks = [bytearray(1 << 20) for _ in range(48)]
        pin = bytearray(4096)  # allocated after them: the arena's top cannot be trimmed
        before = rss()
        del blocks
        print(before - rss(), len(pin))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    """
)


def test_start_makes_big_blocks_go_back_to_the_system_when_freed() -> None:
    """48 MiB of 1 MiB buffers freed by a thread: with :func:`start` the RSS falls by them;
    with glibc's default (a threshold raised after the first free) they stay resident."""

    def returned(started: bool) -> int:
        proc = subprocess.run(
            [sys.executable, "-c", _ARENA, "1" if started else "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[0])

    assert returned(True) >= 40
    assert returned(False) < 8
