// Dashboard (design.md §1): VM counts, jobs of the last 24 h (each count a link to the Jobs
// page filtered), VMs needing attention, storage and dedup, backups and bytes per day.
import { api } from "../api.js";
import { h, bytes, ago, short, table, badge, empty, pageHeader } from "../ui.js";
import { backupsChart, bytesChart } from "../chart.js";

const VM_COUNTS = [
  ["discovered", "Discovered", "#/vms?tab=discovered"],
  ["registered", "Registered", "#/vms?tab=registered"],
  ["protected", "Protected", "#/vms?tab=protected"],
  ["pending_initial_backup", "Pending initial backup", "#/vms?tab=protected"],
  ["protection_stopped", "Protection stopped", "#/vms?tab=protected"],
  ["vanished", "Vanished from libvirt", "#/vms?tab=discovered"],
];
// jobs_24h keys → the job state they count
const JOB_COUNTS = [
  ["completed", "Completed", "completed"],
  ["completed_with_warnings", "With warnings", "completed-with-warnings"],
  ["failed", "Failed", "failed"],
  ["cancelled", "Cancelled", "cancelled"],
  ["in_progress", "In progress", "in-progress"],
  ["queued", "Queued", "queued"],
  ["cancelling", "Cancelling", "cancelling"],
];

function stat(value, label, href, tone, id) {
  return h("a", { class: `stat stat-${tone || "plain"}`, href, id,
    "aria-label": `${value} ${label}` }, h("span", { class: "stat-value" }, value),
  h("span", { class: "stat-label" }, label));
}

export async function render(view) {
  const d = await api.get("/dashboard");
  const s = d.storage;
  view.append(pageHeader("Dashboard", `Vault ${d.vault} · as of ${new Date(d.at).toLocaleString()}`));

  view.append(h("section", { class: "card", "aria-labelledby": "vms-h" },
    h("h2", { id: "vms-h" }, "Virtual machines"),
    h("div", { class: "stats" }, VM_COUNTS.map(([k, label, href]) =>
      stat(d.vms[k] ?? 0, label, href, k === "vanished" && d.vms[k] ? "warn" : null, `vms-${k}`)))));

  view.append(h("section", { class: "card", "aria-labelledby": "jobs-h" },
    h("h2", { id: "jobs-h" }, "Jobs in the last 24 h"),
    h("div", { class: "stats" }, JOB_COUNTS.map(([k, label, state]) => {
      const n = d.jobs_24h[k] ?? 0;
      const tone = n && k === "failed" ? "bad" : n && k === "completed_with_warnings" ? "warn" : null;
      const q = new URLSearchParams({ vault: d.vault, state, since: "24h" });
      return stat(n, label, `#/jobs?${q}`, tone, `jobs-${k}`);
    }))));

  // the first page of them (the most urgent first) and how many there are in all; every VM's
  // health is in the VMs page's Health column
  const attention = d.attention || [];
  const flagged = d.attention_total ?? attention.length;
  const attentionCard = h("section", { class: "card", "aria-labelledby": "att-h" },
    h("h2", { id: "att-h" }, "VMs needing attention ", badge(String(flagged), flagged ? "bad" : "ok")),
    flagged > attention.length
      ? h("p", { class: "muted", id: "att-more" }, `The ${attention.length} most urgent of ${flagged} (`,
        Object.entries(d.attention_by_reason || {}).filter(([, n]) => n).map(([r, n]) => `${n} ${r}`).join(", "),
        "); every VM's health is in the ", h("a", { href: "#/vms" }, "VMs"), " page's Health column.")
      : null,
    flagged === 0
      ? empty("Nothing needs attention", "Every protected VM's last backup succeeded within its policy.")
      : table([
        { title: "VM", class: "nowrap", cell: (a) => h("a", { href: `#/points?vm=${encodeURIComponent(a.vm)}` }, a.name) },
        { title: "Policy", cell: (a) => a.policy || "–" },
        { title: "Reason", cell: (a) => badge(a.reason, a.reason === "overdue" ? "warn" : "bad") },
        { title: "Detail", cell: (a) => a.detail },
        { title: "Last backup", class: "nowrap", cell: (a) => ago(a.last_backup_at) },
      ], attention, { caption: "VMs needing attention", key: (a) => a.vm }));

  const ratio = s.dedup_ratio === null || s.dedup_ratio === undefined ? "–" : `${s.dedup_ratio.toFixed(2)} ×`;
  const levels = Object.entries(s.by_consistency || {});
  const fact = (value, label, id) => h("div", { class: "stat stat-static", id },
    h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
  view.append(attentionCard);
  view.append(h("section", { class: "card", "aria-labelledby": "st-h" },
    h("h2", { id: "st-h" }, "Storage"),
    h("div", { class: "stats" },
      fact(bytes(s.used_bytes), "Used on disk", "storage-used"),
      fact(bytes(s.logical_bytes), "Logical (the points' disks)", "storage-logical"),
      fact(ratio, "Dedup ratio", "dedup-ratio"),
      h("a", { class: "stat", href: "#/points", id: "storage-points" }, h("span", { class: "stat-value" }, String(s.points)),
        h("span", { class: "stat-label" }, "Recovery points")),
      h("div", { class: "stat stat-static levels" }, levels.map(([level, n]) =>
        h("div", { class: "level" }, badge(level), h("strong", {}, String(n)))))),
    // soft-deleted points: kept until purged (docs/soft-delete.md)
    h("div", { class: "stats" },
      fact(String(s.soft_deleted_points || 0), "Soft-deleted points", "soft-deleted"),
      fact(bytes(s.soft_deleted_logical_bytes || 0), "Held by them (logical)", "soft-deleted-bytes"),
      fact(short(s.next_purge_at), "Next purge", "next-purge"))));

  view.append(h("section", { class: "card", "aria-labelledby": "ch-h" },
    h("h2", { id: "ch-h" }, `Last ${(d.daily || []).length || 14} days`),
    d.daily && d.daily.length
      ? h("div", { class: "charts" },
        h("figure", {}, backupsChart(d.daily), h("figcaption", {},
          h("span", { class: "key key-ok" }), "backup jobs completed ", h("span", { class: "key key-bad" }), "failed")),
        h("figure", {}, bytesChart(d.daily), h("figcaption", {},
          h("span", { class: "key key-info" }), "new bytes stored per day")))
      : empty("No history yet", "Backups will show here day by day.")));
}
