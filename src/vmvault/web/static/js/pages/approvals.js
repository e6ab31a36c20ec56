// Requests held for approval (docs/approvals.md): the pending ones with Approve and Reject, and
// the recent others. Admins only: the server refuses the rest (403), the console says so.
import { api, can, session } from "../api.js";
import { h, table, empty, pageHeader, button, badge, errorBox, when, short, notice } from "../ui.js";
import { go } from "../app.js";

let told = null; // the last decision, shown once on the page drawn again after it
const TONE = { pending: "warn", approved: "info", executed: "ok", failed: "bad", rejected: "muted", expired: "muted" };

export async function render(view) {
  view.append(pageHeader("Approvals",
    "Operations that reduce protection wait here for a second admin (or for their delay)."));
  if (!can("admin")) {
    view.append(h("div", { class: "card" }, empty("Admins only",
      "Deciding approval requests needs an admin's token (docs/approvals.md).")));
    return;
  }
  const status = h("div", { class: "status-area" });
  view.append(status);
  if (told) { notice(status, told); told = null; }
  const requests = await api.get("/approvals", { limit: 100 });
  const pending = requests.filter((r) => r.state === "pending");
  const decide = async (r, verb) => {
    try {
      const done = await api.post(`/approvals/${r.id}/${verb}`);
      told = `Request ${done.id}: ${done.state}${done.outcome ? ` — ${done.outcome}` : ""}`;
      go("#/approvals");
    } catch (err) {
      status.prepend(errorBox(err, `Request ${r.id} could not be ${verb === "approve" ? "approved" : "rejected"}`));
    }
  };
  const mine = (r) => r.requested_by === session.principal.name;
  const actions = (r) => r.state !== "pending" ? null : h("div", { class: "row-actions" },
    mine(r) ? null : button("Approve", () => decide(r, "approve"),
      { class: "btn btn-danger btn-small", "aria-label": `Approve request ${r.id}` }),
    button(mine(r) ? "Withdraw" : "Reject", () => decide(r, "reject"),
      { class: "btn btn-secondary btn-small", "aria-label": `Reject request ${r.id}` }));
  const columns = [
    { title: "#", class: "num", cell: (r) => String(r.id) },
    { title: "State", cell: (r) => badge(r.state, TONE[r.state]) },
    { title: "What", cell: (r) => h("span", { title: r.outcome || "" }, r.summary) },
    { title: "Vault", cell: (r) => r.vault },
    { title: "Asked by", cell: (r) => r.requested_by },
    { title: "Asked", class: "nowrap", cell: (r) => h("span", { title: when(r.requested_at) }, short(r.requested_at)) },
    { title: "Until", class: "nowrap", cell: (r) => r.due_at ? `runs ${short(r.due_at)}` : r.expires_at ? `expires ${short(r.expires_at)}` : "–" },
    { title: "Decided by", cell: (r) => r.decided_by || "–" },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
  ];
  view.append(h("h2", {}, "Pending"), h("div", { class: "card table-wrap" }, pending.length
    ? table(columns, pending, { caption: "Pending approval requests", key: (r) => r.id })
    : empty("Nothing waits for approval", "Requests appear here when a protected operation is held.")));
  const others = requests.filter((r) => r.state !== "pending");
  if (others.length) {
    view.append(h("h2", {}, "Recent"), h("div", { class: "card table-wrap" },
      table(columns, others, { caption: "Decided approval requests", key: (r) => r.id })));
  }
}
