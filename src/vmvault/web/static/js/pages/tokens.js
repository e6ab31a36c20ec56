// API tokens (admin): the list, a new token shown once with a copy button, revoke.
import { api, session } from "../api.js";
import { h, table, empty, pageHeader, button, badge, field, select, confirm, formDialog, dialog,
  notice, short, attempt } from "../ui.js";
import { go } from "../app.js";

const ROLES = [["reader", "reader — reads everything"], ["operator", "operator — + backup, restore, verify, GC, cancel"],
  ["contributor", "contributor — + vaults, hosts, VMs, policies, protection, points"], ["admin", "admin — + tokens, audit log"]];

export async function render(view, route) {
  const tokens = await api.get("/tokens");
  const status = h("div", { class: "status-area" });
  view.append(pageHeader("API tokens", "Who may call the API and the console, with which role. Only a hash is kept.",
    button("New token", create, { kind: "primary", id: "new-token" })), status);
  const done = route.params.get("revoked");
  if (done) notice(status, `Token ${done} revoked: the next request with it is refused.`);
  if (!tokens.length) {
    view.append(h("div", { class: "card" }, empty("No tokens", "Create one for each person or script.")));
    return;
  }
  const rows = [...tokens].sort((a, b) => Number(Boolean(a.revoked_at)) - Number(Boolean(b.revoked_at)) || a.name.localeCompare(b.name));
  view.append(h("div", { class: "card table-wrap" }, table([
    { title: "Name", class: "nowrap", cell: (t) => h("strong", {}, t.name) },
    { title: "Role", cell: (t) => h("span", { class: `role role-${t.role}` }, t.role) },
    { title: "Created", class: "nowrap", cell: (t) => `${short(t.created_at)} by ${t.created_by}` },
    { title: "Last used", class: "nowrap", cell: (t) => short(t.last_used_at) },
    { title: "State", cell: (t) => (t.revoked_at ? badge(`revoked ${short(t.revoked_at)}`, "bad") : badge("active", "ok")) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: (t) => (t.revoked_at ? null
      : button("Revoke…", () => revoke(t, status), { class: "btn btn-danger-outline btn-small", "aria-label": `Revoke token ${t.name}` })) },
  ], rows, { caption: "API tokens", key: (t) => t.name })));
}

async function create() {
  const name = h("input", { name: "name", required: true, autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9._-]{0,62}" });
  const role = select(ROLES, "reader", { name: "role" });
  const made = await formDialog("New API token", "token-form", [
    field("Name", name, "1–63 of letters, digits, dot, dash, underscore: who or what uses it."), field("Role", role),
  ], () => api.post("/tokens", { name: name.value.trim(), role: role.value }), { action: "Create token" });
  if (!made) return;
  await dialog(`Token ${made.name}`, (close) => {
    const text = h("input", { id: "new-token-text", readonly: true, value: made.token, class: "token-text", "aria-label": "The new token" });
    const copied = h("span", { class: "muted", "aria-live": "polite" });
    const copy = button("Copy", async () => {
      text.select();
      try { await navigator.clipboard.writeText(made.token); copied.textContent = "Copied."; }
      catch { copied.textContent = document.execCommand("copy") ? "Copied." : "Select the text and copy it (Ctrl+C)."; }
    }, { id: "copy-token" });
    setTimeout(() => text.select(), 0);
    return h("div", { class: "dialog-body" },
      h("div", { class: "warn-box", role: "note" }, h("strong", {}, "Copy it now: "),
        "this is the only time the token is shown. vmvault keeps only its hash; a lost token is revoked and replaced."),
      h("div", { class: "row token-row" }, text, copy), copied,
      h("p", { class: "muted" }, `Role ${made.role}. Use it as `, h("code", {}, "Authorization: Bearer TOKEN"), " or sign in to the console with it."),
      h("div", { class: "form-actions" }, button("Done", () => close(null), { kind: "primary", id: "token-done" })));
  });
  go("#/tokens");
}

async function revoke(t, status) {
  const self = session.principal && session.principal.name === t.name;
  const ok = await confirm(`Revoke token ${t.name}?`, [h("p", {}, "Every request with it is refused from now on; this cannot be undone."),
    self ? h("div", { class: "warn-box", role: "note" }, "This is the token you are signed in with: the console signs you out.") : null],
  { action: "Revoke token" });
  if (!ok) return;
  const done = await attempt(status, `Revoking ${t.name}`, () => api.del(`/tokens/${encodeURIComponent(t.name)}`));
  if (done) go(`#/tokens?revoked=${encodeURIComponent(t.name)}`);
}
