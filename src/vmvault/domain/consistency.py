"""How consistent a point is, and how the guest's application hooks report back.

Levels (docs/backup.md, "Consistency"):

* **application-consistent** — the guest's file systems were frozen *and* the guest's
  fsfreeze hook dispatcher reported, for this very freeze, that every application hook it ran
  succeeded (at least one ran);
* **file-system-consistent** — frozen, and either no hook is configured, or a hook failed
  (the hook's message goes on the point and a warning on the job), or no report of this
  freeze came back;
* **crash-consistent** — everything else (saved-state, a paused VM, an offline copy…), always
  with the reason.

**The hook result channel.**  Before the freeze vmvault writes a fresh random *token* into
the guest (``guest-file-write`` to :data:`TOKEN_PATH`).  The guest's ``/etc/qemu/fsfreeze-hook``
dispatcher, run by qemu-ga inside ``guest-fsfreeze-freeze``, reads the token, runs every hook
of ``/etc/qemu/fsfreeze-hook.d/`` with ``freeze`` and writes :data:`STATUS_PATH` (tmp +
rename, on ``/run``: a tmpfs the freeze does not touch)::

    vmvault-fsfreeze 1
    token<TAB><the token it read>
    hook<TAB><name><TAB><exit code><TAB><first line of its output, tabs → spaces>
    ...
    done<TAB><number of hooks>

It always exits 0, so a failed application hook never stops the file-system freeze: the point
is still file-system-consistent.  After the thaw vmvault reads the file (``guest-file-read``)
and :func:`parse_hook_status` accepts it only if its token is the one written for this freeze
and its ``done`` line is there — a report left by an earlier freeze, or half written, is
never taken for this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vmvault.domain.errors import InvalidInput

#: Where vmvault writes the freeze's token in the guest, and where the dispatcher reports.
TOKEN_PATH = "/run/vmvault-fsfreeze.token"
STATUS_PATH = "/run/vmvault-fsfreeze.status"
STATUS_MAGIC = "vmvault-fsfreeze 1"
#: A hook's message is cut to this many characters (it goes on the point and in the job log).
MESSAGE_MAX = 200


class Consistency(StrEnum):
    APPLICATION = "application-consistent"
    FILE_SYSTEM = "file-system-consistent"
    CRASH = "crash-consistent"


_RANK = {Consistency.CRASH: 0, Consistency.FILE_SYSTEM: 1, Consistency.APPLICATION: 2}
#: The levels ``--require`` accepts (crash-consistent is always met: nothing to require).
REQUIRABLE = (Consistency.APPLICATION.value, Consistency.FILE_SYSTEM.value)


def parse_required(value: str | None) -> Consistency | None:
    """``--require``'s word as a level (None stays None); ``INVALID_INPUT`` otherwise."""
    if value is None:
        return None
    if value not in REQUIRABLE:
        raise InvalidInput(f"choose {' or '.join(REQUIRABLE)}", what=f"--require {value!r}")
    return Consistency(value)


def meets(actual: Consistency, required: Consistency | None) -> bool:
    """``actual`` is at least ``required`` (None: nothing required)."""
    return required is None or _RANK[actual] >= _RANK[required]


class HookState(StrEnum):
    SUCCEEDED = "succeeded"  # the dispatcher ran hooks for this freeze, all exited 0
    FAILED = "failed"  # at least one hook exited non-zero
    NONE = "none"  # the dispatcher reported this freeze: no hook configured
    NO_REPORT = "no-report"  # no report of this freeze (no dispatcher, stale, unreadable)
    NOT_RUN = "not-run"  # no freeze was attempted or it failed: no hook outcome


@dataclass(frozen=True)
class HookResult:
    """One application hook's freeze call, as the dispatcher reported it."""

    name: str
    exit: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit == 0

    def describe(self) -> str:
        text = f"hook {self.name} exited {self.exit}"
        return f"{text}: {self.message}" if self.message else text


@dataclass(frozen=True)
class HookOutcome:
    """What came back from the guest's hooks for one freeze."""

    state: HookState
    hooks: tuple[HookResult, ...] = ()
    detail: str | None = None  # why there is no report

    @property
    def failures(self) -> tuple[HookResult, ...]:
        return tuple(h for h in self.hooks if not h.ok)

    def summary(self) -> str:
        """One line for the CLI, the job log and the point's reason."""
        if self.state is HookState.SUCCEEDED:
            return f"{len(self.hooks)} hook(s) succeeded ({', '.join(h.name for h in self.hooks)})"
        if self.state is HookState.FAILED:
            return "; ".join(h.describe() for h in self.failures)
        if self.state is HookState.NONE:
            return "no application hook configured"
        if self.state is HookState.NO_REPORT:
            return f"no hook report for this freeze ({self.detail or 'unknown'})"
        return "hooks not run (no freeze)"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "hooks": [{"name": h.name, "exit": h.exit, "message": h.message} for h in self.hooks],
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HookOutcome:
        return cls(
            HookState(doc["state"]),
            tuple(
                HookResult(str(h["name"]), int(h["exit"]), str(h.get("message", "")))
                for h in doc.get("hooks", ())
            ),
            doc.get("detail"),
        )


NOT_RUN = HookOutcome(HookState.NOT_RUN)


def no_report(detail: str) -> HookOutcome:
    return HookOutcome(HookState.NO_REPORT, detail=detail)


def parse_hook_status(text: str, token: str) -> HookOutcome:
    """Read the dispatcher's report (module docstring); accept it only for ``token``."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != STATUS_MAGIC:
        return no_report("not a vmvault fsfreeze report")
    seen_token: str | None = None
    hooks: list[HookResult] = []
    done: int | None = None
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        kind = fields[0]
        if kind == "token" and len(fields) == 2:
            seen_token = fields[1]
        elif kind == "hook" and len(fields) == 4 and fields[2].lstrip("-").isdigit():
            hooks.append(HookResult(fields[1], int(fields[2]), fields[3][:MESSAGE_MAX]))
        elif kind == "done" and len(fields) == 2 and fields[1].isdigit():
            done = int(fields[1])
        else:
            return no_report(f"line {n} of the report is malformed")
    if seen_token != token:
        return no_report("the report belongs to another freeze")
    if done is None or done != len(hooks):
        return no_report("the report is incomplete")
    if not hooks:
        return HookOutcome(HookState.NONE)
    state = HookState.SUCCEEDED if all(h.ok for h in hooks) else HookState.FAILED
    return HookOutcome(state, tuple(hooks))


def format_hook_status(token: str, hooks: tuple[HookResult, ...]) -> str:
    """The report as the dispatcher writes it (the guest's script is its twin; tests use it)."""
    out = [STATUS_MAGIC, f"token\t{token}"]
    for h in hooks:
        message = " ".join(h.message.split())[:MESSAGE_MAX]
        out.append(f"hook\t{h.name}\t{h.exit}\t{message}")
    out.append(f"done\t{len(hooks)}")
    return "\n".join(out) + "\n"


def consistency_of(frozen: bool, hooks: HookOutcome = NOT_RUN) -> Consistency:
    """The level that follows from what happened (module docstring)."""
    if not frozen:
        return Consistency.CRASH
    if hooks.state is HookState.SUCCEEDED:
        return Consistency.APPLICATION
    return Consistency.FILE_SYSTEM


def why_level(frozen: bool, hooks: HookOutcome, not_frozen_reason: str) -> str:
    """Why the point has the level :func:`consistency_of` gives (goes on the point)."""
    if not frozen:
        return not_frozen_reason
    return f"file systems frozen; {hooks.summary()}"
