// Notifications (contributor): the targets — a webhook or an e-mail address per vault and
// events — added, tested and removed; and the outbox: the newest messages, their state,
// attempts and last error (docs/notifications.md).
import { api } from "../api.js";
import { h, table, empty, pageHeader, button, badge, errorBox, field, confirm, formDialog, notice,
  short, when, attempt } from "../ui.js";
import { go } from "../app.js";

const EVENTS = [["failed", "a backup or job failed"], ["overdue", "a VM's backup is overdue"],
  ["warnings", "completed with warnings"], ["verify-failed", "verify found damage"], ["approval", "an approval is pending"]];
const TONE = { sent: "ok", pending: "warn", failed: "bad" };

export async function render(view, route) {
  const [targets, outbox] = await Promise.all([api.get("/notifications"), api.get("/notifications/outbox", { limit: 50 })]);
  const status = h("div", { class: "status-area" });
  view.append(pageHeader("Notifications", "Webhooks and e-mail when backups fail, are overdue, end with warnings…",
    targets.length ? button("Send a test to all", () => test(null, status), { id: "test-all" }) : null,
    button("Add target", add, { kind: "primary", id: "add-target" })), status);
  const done = route.params.get("done");
  if (done) notice(status, done);
  view.append(h("section", { class: "card table-wrap", "aria-labelledby": "targets-h", id: "targets" },
    h("h2", { id: "targets-h" }, "Targets"),
    targets.length ? table([
      { title: "Id", class: "num", cell: (t) => String(t.id) },
      { title: "Vault", cell: (t) => t.vault },
      { title: "Channel", cell: (t) => badge(t.channel, "info") },
      { title: "Address", cell: (t) => h("code", {}, t.address) },
      { title: "Events", cell: (t) => t.events.join(", ") },
      { title: "Added", class: "nowrap", cell: (t) => short(t.created_at) },
      { title: h("span", { class: "visually-hidden" }, "Actions"), cell: (t) => h("div", { class: "row-actions" },
        button("Test", () => test(t, status), { class: "btn btn-secondary btn-small", "aria-label": `Send a test to target ${t.id}` }),
        button("Remove…", () => remove(t, status), { class: "btn btn-danger-outline btn-small", "aria-label": `Remove target ${t.id}` })) },
    ], targets, { caption: "Notification targets", key: (t) => t.id })
      : empty("No targets", "Add a webhook or an e-mail address to hear of failed and overdue backups.")));
  view.append(h("section", { class: "card table-wrap", "aria-labelledby": "outbox-h", id: "outbox" },
    h("h2", { id: "outbox-h" }, "Outbox ", h("span", { class: "muted" }, "(the newest 50 messages)")),
    outbox.length ? table([
      { title: "Created", class: "nowrap", cell: (o) => h("span", { title: when(o.created_at) }, short(o.created_at)) },
      { title: "Target", cell: (o) => `${o.target.id} · ${o.target.channel} ${o.target.address}` },
      { title: "Event", cell: (o) => o.event },
      { title: "Subject", cell: (o) => o.subject },
      { title: "State", cell: (o) => badge(o.state, TONE[o.state]) },
      { title: "Attempts", class: "num", cell: (o) => String(o.attempts) },
      { title: "Next / sent", class: "nowrap", cell: (o) => (o.state === "sent" ? short(o.sent_at) : o.state === "pending" ? short(o.next_attempt_at) : "–") },
      { title: "Last error", cell: (o) => o.last_error || "–" },
    ], outbox, { caption: "Notification outbox", key: (o) => o.id })
      : empty("The outbox is empty", "Messages are written when a job ends with an event a target wants.")));
}

async function add() {
  const kind = h("fieldset", { class: "choice" }, h("legend", {}, "Channel"),
    h("label", { class: "check" }, h("input", { type: "radio", name: "channel", value: "webhook", checked: true }), "Webhook (JSON POST)"),
    h("label", { class: "check" }, h("input", { type: "radio", name: "channel", value: "email", id: "channel-email" }), "E-mail"));
  const address = h("input", { name: "address", required: true, autocomplete: "off", placeholder: "the receiver's URL (http or https)" });
  kind.addEventListener("change", () => {
    address.placeholder = kind.querySelector("input:checked").value === "email" ? "ops@example.com" : "the receiver's URL (http or https)";
  });
  const events = h("fieldset", {}, h("legend", {}, "Events"), EVENTS.map(([e, text]) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "event", value: e, checked: ["failed", "overdue", "verify-failed"].includes(e) }),
      h("span", {}, h("strong", {}, e), ` — ${text}`))));
  const made = await formDialog("Add a notification target", "target-form", [
    kind, field("Address", address, "A webhook's user, password, path and query are secrets: they are never shown again."), events,
    h("p", { class: "help" }, "For the vault chosen at the top. E-mail goes through the server's SMTP settings (VMVAULT_SMTP_HOST …)."),
  ], () => {
    const channel = kind.querySelector("input:checked").value;
    return api.post("/notifications", { [channel]: address.value.trim(),
      events: [...events.querySelectorAll("input:checked")].map((c) => c.value) });
  }, { action: "Add target" });
  if (made) go(`#/notifications?done=${encodeURIComponent(`Target ${made.id} added: ${made.channel} ${made.address}.`)}`);
}

// A test message now, not through the outbox: each target's outcome.
async function test(target, status) {
  const results = await attempt(status, "The test", () => api.post("/notifications/test", target ? { id: target.id } : {}));
  for (const r of results || []) {
    const who = `target ${r.target.id} (${r.target.channel} ${r.target.address})`;
    if (r.ok) notice(status, `Test message sent to ${who}.`);
    else status.prepend(errorBox(r.error, `The test message did not reach ${who}`));
  }
}

async function remove(t, status) {
  const ok = await confirm(`Remove target ${t.id}?`, h("p", {}, `${t.channel} ${t.address} (vault ${t.vault}): its undelivered messages go with it.`),
    { action: "Remove target" });
  if (!ok) return;
  const gone = await attempt(status, `Removing target ${t.id}`, () => api.del(`/notifications/${t.id}`));
  if (gone) go(`#/notifications?done=${encodeURIComponent(`Target ${t.id} removed.`)}`);
}
