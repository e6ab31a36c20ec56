"""Multi-user authorization: requests held for approval (docs/approvals.md)."""

from __future__ import annotations

from vmvault.domain.errors.base import VmvaultError


class ApprovalNotFound(VmvaultError):
    code = "APPROVAL_NOT_FOUND"
    message = "there is no approval request {id}"
    remedy = "List the requests with 'vmvault approvals list' (or GET /api/v1/approvals)."
    kind = "usage"


class ApprovalSelf(VmvaultError):
    code = "APPROVAL_SELF"
    message = "{name} asked for request {id} and cannot approve it"
    remedy = (
        "Another admin approves it ('vmvault approvals approve {id}' with their token), or "
        "withdraw it with 'vmvault approvals reject {id}' (docs/approvals.md)."
    )
    kind = "usage"


class ApprovalNotPending(VmvaultError):
    code = "APPROVAL_NOT_PENDING"
    message = "approval request {id} is {state}, not pending: it can no longer be decided"
    remedy = "See what became of it with 'vmvault approvals show {id}'; ask again if needed."
    kind = "usage"


class ApprovalExpired(VmvaultError):
    code = "APPROVAL_EXPIRED"
    message = "approval request {id} expired at {at} undecided"
    remedy = "Run the operation again to make a new request (docs/approvals.md)."
    kind = "usage"
