"""Policies (schedules, retention) and protection of VMs."""

from __future__ import annotations

from vmvault.domain.errors.base import InvalidInput, VmvaultError


class InvalidSchedule(InvalidInput):
    code = "INVALID_SCHEDULE"
    message = "schedule '{text}' is not valid"
    remedy = (
        "Write daily@HH:MM, weekly:DAYS@HH:MM (DAYS like mon,wed,fri or mon-fri) or "
        "every:Nh@HH:MM-HH:MM (N is 4, 6, 8 or 12; 24-hour times, 00:00-23:59)."
    )
    kind = "usage"


class UnknownTimeZone(InvalidInput):
    code = "UNKNOWN_TIME_ZONE"
    message = "'{tz}' is not an IANA time zone"
    remedy = (
        "Use a name such as UTC, Europe/Berlin or America/New_York "
        "('timedatectl list-timezones' lists them)."
    )
    kind = "usage"


class InvalidRetention(InvalidInput):
    code = "INVALID_RETENTION"
    message = "retention {retention} is not valid"
    remedy = (
        "Give whole numbers from 0 to 9999 for daily, weekly, monthly and yearly, at least "
        "one of them above 0 (e.g. daily=7 weekly=4 monthly=12)."
    )
    kind = "usage"


class RetentionTooShort(InvalidInput):
    code = "RETENTION_TOO_SHORT"
    message = (
        "retention {retention} is shorter than the schedule's interval: it keeps only the "
        "newest point, so every backup of '{schedule}' deletes the one before"
    )
    remedy = "Keep at least 2 points at one level, e.g. daily=7 (the last 7 days)."
    kind = "usage"


class PolicyExists(VmvaultError):
    code = "POLICY_EXISTS"
    message = "a policy named '{name}' already exists"
    remedy = "Choose another name, or change it with 'vmvault policy update {name} …'."
    kind = "usage"


class PolicyNotFound(VmvaultError):
    code = "POLICY_NOT_FOUND"
    message = "no policy named '{name}'"
    remedy = "List policies with 'vmvault policy list' or create one with 'vmvault policy create'."
    kind = "usage"


class PolicyInUse(VmvaultError):
    code = "POLICY_IN_USE"
    message = "policy '{name}' is used by {count} VM(s): {vms}"
    remedy = (
        "Move those VMs to another policy ('vmvault protect VM --policy OTHER') or stop "
        "their protection with --delete-data first."
    )
    kind = "usage"


class VmNotRegistered(VmvaultError):
    code = "VM_NOT_REGISTERED"
    message = "VM {vm} is not registered with vault '{vault}'"
    remedy = "Register it first: 'vmvault register {vm}'."
    kind = "usage"


class VmProtected(VmvaultError):
    code = "VM_PROTECTED"
    message = "VM {vm} is protected by policy '{policy}'"
    remedy = "Stop its protection first: 'vmvault protection stop {vm} --retain-data'."
    kind = "usage"


class WrongProtectionState(VmvaultError):
    code = "WRONG_PROTECTION_STATE"
    message = "VM {vm} is {state}: it cannot be {action}"
    remedy = "See its state with 'vmvault vm show {vm}'."
    kind = "usage"
