"""``vmvault dashboard``: a vault's numbers, from its document (local or remote)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, OffsetOpt, VaultOpt
from vmvault.cli.render import emit_json, out
from vmvault.domain.inputs import ATTENTION_PAGE, check_page

AttentionLimitOpt = Annotated[
    int, typer.Option("--limit", help="List at most this many VMs needing attention (1-1000).")
]


def dashboard(
    vault: VaultOpt = None,
    limit: AttentionLimitOpt = ATTENTION_PAGE,
    offset: OffsetOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """VM and job counts, VMs that need attention (how many, and a page of them: the most
    urgent reason first), storage and dedup ratio."""
    check_page(limit, offset)
    if remote.reads():
        d = _paged(remote.get("/dashboard", vault=vault, limit=limit, offset=offset), limit, offset)
    else:
        from vmvault.documents import dashboard_doc

        d = dashboard_doc(services().dashboard.summary(vault, limit, offset))
    if json_:
        emit_json(d)
        return
    out.print(f"[bold]vault {render.markup(d['vault'])}[/]", highlight=False)
    out.print("VMs       " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in d["vms"].items()))
    jobs = d["jobs_24h"].items()
    out.print("jobs 24h  " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in jobs))
    st = d["storage"]
    ratio = f"{st['dedup_ratio']:.2f}x" if st["dedup_ratio"] else "-"
    out.print(
        f"storage   {st['used_bytes']:,} B used for {st['logical_bytes']:,} B logical in "
        f"{st['points']} point(s), dedup ratio {ratio}"
    )
    out.print("points    " + ", ".join(f"{n} {k}" for k, n in st["by_consistency"].items()))
    due = f", next purge {st['next_purge_at']}" if st["next_purge_at"] else ""
    out.print(
        f"deleted   {st['soft_deleted_points']} soft-deleted point(s) holding "
        f"{st['soft_deleted_logical_bytes']:,} B logical{due}"
    )
    total, by_reason = d["attention_total"], d["attention_by_reason"]
    reasons = ", ".join(f"{n} {reason}" for reason, n in by_reason.items() if n)
    lines = [f"attention {total} VM(s): {reasons}" if total else "attention none"]
    lines += [
        f"  {a['name']} ({a['policy']}): {a['reason']}: {a['detail']}" for a in d["attention"]
    ]
    out.print("\n".join(lines), markup=False)
    if total:
        render.page_note(len(d["attention"]), offset, total)


def _paged(d: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
    """A server older than the attention's page (no ``attention_total``) sends every VM
    needing attention, in its order: counted (the reasons it has) and paged here."""
    if "attention_total" in d:
        return d
    every = d["attention"]
    by_reason: dict[str, int] = {}
    for a in every:
        by_reason[a["reason"]] = by_reason.get(a["reason"], 0) + 1
    page = every[offset : offset + limit]
    return d | {"attention_total": len(every), "attention_by_reason": by_reason, "attention": page}
