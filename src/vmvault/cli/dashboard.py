"""``vmvault dashboard``: a vault's numbers, from its document (local or remote)."""

from __future__ import annotations

from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt, VaultOpt
from vmvault.cli.render import emit_json, out


def dashboard(vault: VaultOpt = None, json_: JsonOpt = False) -> None:
    """VM and job counts, VMs that need attention, storage and dedup ratio."""
    if remote.reads():
        d = remote.get("/dashboard", vault=vault)
    else:
        from vmvault.documents import dashboard_doc

        d = dashboard_doc(services().dashboard.summary(vault))
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
    lines = [
        f"attention {a['name']} ({a['policy']}): {a['reason']}: {a['detail']}"
        for a in d["attention"]
    ]
    out.print("\n".join(lines) or "attention none", markup=False)  # one print: ~1,000 lines
