"""The remote CLI's dashboard against a server older than the attention's page: that server
sends every VM needing attention and no count; the CLI counts and pages them itself."""

from __future__ import annotations

from vmvault.cli.dashboard import _paged


def _a(name: str, reason: str) -> dict[str, str]:
    return {"vm": name, "name": f"h/{name}", "reason": reason}


def test_an_older_servers_whole_list_is_counted_and_paged() -> None:
    every = [_a("a", "vm-deleted"), _a("b", "overdue"), _a("c", "overdue")]
    old = {"vault": "main", "attention": every}
    d = _paged(old, 2, 1)
    assert d["attention_total"] == 3
    assert d["attention_by_reason"] == {"vm-deleted": 1, "overdue": 2}
    assert d["attention"] == every[1:3] and d["vault"] == "main"
    assert _paged(old, 20, 5)["attention"] == []


def test_a_newer_servers_page_is_left_as_it_is() -> None:
    new = {"attention_total": 40, "attention_by_reason": {"overdue": 40}, "attention": [1]}
    assert _paged(new, 1, 0) is new
