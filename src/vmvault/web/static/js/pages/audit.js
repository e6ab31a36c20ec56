// The audit log (admin): every change — who, what, when, from where; filtered by actor and
// time window, 50 entries a page counted by X-Total-Count.
import { api } from "../api.js";
import { h, clear, table, empty, pageHeader, field, select, badge, when, short } from "../ui.js";
import { go } from "../app.js";

const PAGE = 50;
const SINCE = [["", "Any time"], ["1h", "Last hour"], ["24h", "Last 24 h"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]];

export async function render(view, route) {
  const p = route.params;
  const filters = { actor: p.get("actor") || "", since: p.get("since") || "" };
  const offset = Math.max(0, Number(p.get("offset") || 0));
  view.append(pageHeader("Audit log", "Every change through the API or the CLI: who, what, when, from where."));
  const actor = h("input", { name: "actor", value: filters.actor, placeholder: "token name or local:USER", autocomplete: "off" });
  const since = select(SINCE, filters.since, { name: "since" });
  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter the audit log" },
    field("Actor", actor), field("When", since),
    h("div", { class: "filter-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Apply"),
      h("a", { class: "btn btn-secondary", href: "#/audit" }, "Clear")));
  const link = (f, off) => {
    const q = new URLSearchParams(Object.entries(f).filter(([, v]) => v));
    if (off) q.set("offset", off);
    return `#/audit${q.toString() ? `?${q}` : ""}`;
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(link({ actor: actor.value.trim(), since: since.value }, 0));
  });
  const holder = h("div", { class: "card table-wrap", id: "audit-list" });
  view.append(form, holder);
  const { doc, total } = await api.page("/audit", { ...filters, limit: PAGE, offset });
  if (!doc.length) {
    clear(holder, empty("No entries match", "Change the filters, or clear them."));
    return;
  }
  const last = offset + doc.length;
  clear(holder, table([
    { title: "When", class: "nowrap", cell: (e) => h("span", { title: when(e.at) }, short(e.at)) },
    { title: "Actor", class: "nowrap", cell: (e) => h("a", { href: link({ ...filters, actor: e.actor }, 0) }, e.actor) },
    { title: "Role", cell: (e) => e.role || "–" },
    { title: "Action", cell: (e) => h("code", { class: "wrap" }, e.action) },
    { title: "Target", cell: (e) => h("span", { class: "wrap" }, e.target || "–") },
    { title: "Status", class: "num", cell: (e) => badge(String(e.status), e.remote === "cli"
      ? (e.status === 0 ? "ok" : e.status === 3 ? "warn" : "bad") : (e.status < 400 ? "ok" : "bad")) },
    { title: "From", class: "nowrap", cell: (e) => e.remote },
  ], doc, { caption: "Audit log" }),
  h("nav", { class: "pager", "aria-label": "Pages of the audit log" },
    h("span", { id: "audit-range" }, `${offset + 1}–${last} of ${total ?? "?"}`),
    offset > 0 ? h("a", { class: "btn btn-secondary", href: link(filters, Math.max(0, offset - PAGE)) }, "‹ Newer") : null,
    total !== null && last < total ? h("a", { class: "btn btn-secondary", href: link(filters, offset + PAGE) }, "Older ›") : null));
}
