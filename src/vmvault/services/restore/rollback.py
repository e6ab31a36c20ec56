"""Rollback of a ``--replace`` switch: the VM back as it was, images, definition, power.

One function serves both the job that fails in its switch (:func:`roll_back`) and start-up
recovery after the process died in it (:mod:`.clean_up`).  It reads only the ``switching``
step's data and the state it finds, so it can run again after it was itself interrupted:

* an image that was set aside (``<image>.pre-restore-<job>``) and is still there goes back
  onto its path (over the restored one, if that was placed already);
* where the VM had no image, a restored image that was placed is removed;
* the staged images are removed;
* the VM's definition from just before the switch is defined again if the VM is not
  defined, and the VM is started if it was running (or paused) and is not now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmvault.services.jobs import JobContext
from vmvault.services.restore.journal import RUNNING_STATES, Switch

if TYPE_CHECKING:
    from vmvault.services.restore.service import RestoreService


def put_back(svc: RestoreService, switch: Switch) -> list[str]:
    """Undo ``switch`` as far as it went; returns what was done, one line each."""
    files, driver = svc.files, svc.driver
    done: list[str] = []
    for m in switch.moves:
        try:
            if m.aside is not None:
                if files.exists(m.aside):
                    files.rename(m.aside, m.final)
                    done.append(f"moved {m.aside} back to {m.final}")
            elif files.exists(m.final):
                files.remove(m.final)
                done.append(f"removed {m.final}: {switch.vm} had no image there")
            if files.remove(m.staging):
                done.append(f"removed the staged image {m.staging}")
        except OSError as exc:  # the others still go back
            done.append(f"could not put {m.final} back: {exc}")
    live = driver.domain(switch.uri, switch.uuid)
    if live is None:
        driver.define(switch.uri, switch.previous_xml)
        done.append(f"defined {switch.vm} again as it was before the replace")
    if switch.was_running and (live is None or live.power not in RUNNING_STATES):
        driver.start(switch.uri, switch.uuid)
        done.append(f"started {switch.vm} again (it was {switch.was.value})")
    return done


def roll_back(svc: RestoreService, switch: Switch, ctx: JobContext) -> None:
    """The switch failed in this job: put the VM back, log it, keep the original error."""
    ctx.log("replace failed after the VM was shut off: putting it back")
    try:
        for line in put_back(svc, switch):
            ctx.log(line)
        ctx.log(f"{switch.vm} is back as it was ({switch.was.value})")
    except Exception as exc:  # report, but keep the original error
        ctx.log(
            f"could not put {switch.vm} back: {exc}; its definition was:\n{switch.previous_xml}"
        )
