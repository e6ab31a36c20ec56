"""The consistency rules and the guest hook report (domain.consistency), and the lab guest's
real dispatcher script producing a report the parser accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmvault.domain.consistency import (
    NOT_RUN,
    Consistency,
    HookOutcome,
    HookResult,
    HookState,
    consistency_of,
    format_hook_status,
    meets,
    parse_hook_status,
    parse_required,
)
from vmvault.domain.errors import InvalidInput
from vmvault.hypervisor.lab.guest import GUEST_FILES_DIR

names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
messages = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)
results = st.builds(HookResult, names, st.integers(0, 255), messages)
tokens = st.text("0123456789abcdef", min_size=16, max_size=16)


@given(st.lists(results, max_size=5), tokens)
def test_a_report_round_trips_for_its_own_token(hooks: list[HookResult], token: str) -> None:
    out = parse_hook_status(format_hook_status(token, tuple(hooks)), token)
    assert [(h.name, h.exit) for h in out.hooks] == [(h.name, h.exit) for h in hooks]
    if not hooks:
        assert out.state is HookState.NONE
    elif all(h.exit == 0 for h in hooks):
        assert out.state is HookState.SUCCEEDED
    else:
        assert out.state is HookState.FAILED
        assert out.failures and all(not h.ok for h in out.failures)


@given(st.lists(results, max_size=3), tokens, tokens)
def test_a_report_of_another_freeze_is_never_taken(
    hooks: list[HookResult], token: str, other: str
) -> None:
    if token == other:
        return
    out = parse_hook_status(format_hook_status(other, tuple(hooks)), token)
    assert out.state is HookState.NO_REPORT and "another freeze" in (out.detail or "")


@given(st.lists(results, min_size=1, max_size=3), tokens, st.data())
def test_a_cut_short_report_is_never_taken(hooks: list[HookResult], token: str, data) -> None:  # type: ignore[no-untyped-def]
    text = format_hook_status(token, tuple(hooks))
    cut = data.draw(st.integers(0, text.rindex("done")))
    assert parse_hook_status(text[:cut], token).state is HookState.NO_REPORT


def test_garbage_and_empty_reports() -> None:
    assert parse_hook_status("", "t").state is HookState.NO_REPORT
    assert parse_hook_status("hello\n", "t").state is HookState.NO_REPORT
    bad = "vmvault-fsfreeze 1\ntoken\tt\nhook\tx\tNaN\tm\ndone\t1\n"
    assert "malformed" in (parse_hook_status(bad, "t").detail or "")


@given(st.booleans(), st.sampled_from(list(HookState)))
def test_level_from_outcomes(frozen: bool, state: HookState) -> None:
    hooks = HookOutcome(state, (HookResult("h", 0 if state is HookState.SUCCEEDED else 1),))
    level = consistency_of(frozen, hooks)
    if not frozen:
        assert level is Consistency.CRASH
    elif state is HookState.SUCCEEDED:
        assert level is Consistency.APPLICATION
    else:  # a failed hook, no hook, no report: file-system-consistent at best
        assert level is Consistency.FILE_SYSTEM
    assert consistency_of(frozen, NOT_RUN) is not Consistency.APPLICATION


@given(st.sampled_from(list(Consistency)), st.sampled_from([None, *Consistency]))
def test_meets_is_an_order(actual: Consistency, required: Consistency | None) -> None:
    order = [Consistency.CRASH, Consistency.FILE_SYSTEM, Consistency.APPLICATION]
    want = required is None or order.index(actual) >= order.index(required)
    assert meets(actual, required) is want


def test_parse_required() -> None:
    assert parse_required(None) is None
    assert parse_required("application-consistent") is Consistency.APPLICATION
    for bad in ("crash-consistent", "app", ""):
        with pytest.raises(InvalidInput):
            parse_required(bad)


def test_outcome_json_round_trip() -> None:
    out = HookOutcome(HookState.FAILED, (HookResult("10-app", 3, "no flush"),))
    assert HookOutcome.from_json(out.to_json()) == out
    assert "10-app exited 3: no flush" in out.summary()


# --- the guest's dispatcher, run on the host with busybox ------------------------------------

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def _dispatch(root: Path, phase: str) -> None:
    env = {**os.environ, "FSFREEZE_ROOT": str(root), "PATH": "/usr/bin:/bin"}
    script = GUEST_FILES_DIR / "fsfreeze-hook"
    proc = subprocess.run([BUSYBOX, "sh", str(script), phase], env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr  # never fails the freeze


def _hook(root: Path, name: str, body: str) -> None:
    path = root / "etc/qemu/fsfreeze-hook.d" / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.skipif(not Path(BUSYBOX).exists(), reason="busybox not installed")
def test_the_guest_dispatcher_writes_a_report_the_parser_accepts(tmp_path: Path) -> None:
    (tmp_path / "etc/qemu/fsfreeze-hook.d").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    status = tmp_path / "run/vmvault-fsfreeze.status"

    (tmp_path / "run/vmvault-fsfreeze.token").write_text("tok1\n")
    _dispatch(tmp_path, "freeze")
    assert parse_hook_status(status.read_text(), "tok1").state is HookState.NONE
    assert not (tmp_path / "run/vmvault-fsfreeze.token").exists()  # used once

    _hook(tmp_path, "10-db", 'echo "flushed"; exit 0')
    _hook(tmp_path, "20-bad", 'printf "disk\\tfull\\nmore\\n" >&2; exit 4')
    (tmp_path / "run/vmvault-fsfreeze.token").write_text("tok2\n")
    _dispatch(tmp_path, "freeze")
    out = parse_hook_status(status.read_text(), "tok2")
    assert out.state is HookState.FAILED
    assert out.hooks == (HookResult("10-db", 0, "flushed"), HookResult("20-bad", 4, "disk full"))
    assert parse_hook_status(status.read_text(), "tok1").state is HookState.NO_REPORT

    (tmp_path / "etc/qemu/fsfreeze-hook.d/20-bad").unlink()
    _dispatch(tmp_path, "freeze")  # no token written for this freeze: not taken for tok2
    assert parse_hook_status(status.read_text(), "tok2").state is HookState.NO_REPORT
    _dispatch(tmp_path, "thaw")
