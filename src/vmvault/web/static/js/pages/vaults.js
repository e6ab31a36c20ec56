// Vaults: where recovery points live — storage and where, size and dedup, encryption, soft
// delete and what it holds; create one (a directory of the server, or an S3 bucket), change
// its soft delete, and its upkeep: verify every point, garbage collection (each a job).
import { api, can } from "../api.js";
import { h, table, empty, pageHeader, button, badge, bytes, field, select, attempt, confirm,
  formDialog, notice, short } from "../ui.js";
import { go, vaultsChanged } from "../app.js";

function where(v) {
  return h("span", { class: "disk-list" }, h("span", {}, badge(v.storage, v.storage === "s3" ? "info" : "muted"),
    v.encrypted ? [" ", badge("encrypted", "ok")] : null), h("code", { class: "wrap" }, v.path),
  v.s3 ? h("span", { class: "muted" }, v.s3.endpoint) : null);
}

function softDelete(v) {
  if (v.soft_delete === "off") return badge("off", "muted");
  return h("span", {}, badge(v.soft_delete, v.soft_delete === "always" ? "info" : "ok"), ` ${v.soft_delete_days} d`);
}

export async function render(view, route) {
  const vaults = await api.vaults();
  // each vault's storage figures are its dashboard's (GET /dashboard?vault=)
  const storage = Object.fromEntries(await Promise.all(vaults.map(async (v) =>
    [v.name, await api.get("/dashboard", { vault: v.name }).then((d) => d.storage, () => null)])));
  const status = h("div", { class: "status-area" });
  view.append(pageHeader("Vaults", "Where recovery points live: a directory of the server or an S3 bucket.",
    can("contributor") ? button("New vault", create, { kind: "primary", id: "new-vault" }) : null), status);
  const saved = route.params.get("saved");
  if (saved) notice(status, `Vault ${saved} saved.`);
  if (!vaults.length) {
    view.append(h("div", { class: "card" }, empty("No vault yet", "Create one: everything else needs a vault.")));
    return;
  }
  const s = (v, f) => (storage[v.name] ? f(storage[v.name]) : "–");
  const actions = (v) => h("div", { class: "row-actions" },
    can("contributor") ? button("Soft delete…", () => settings(v), { class: "btn btn-secondary btn-small", "aria-label": `Soft delete settings of ${v.name}` }) : null,
    can("operator") ? [
      button("Verify", () => attempt(status, `Verify of vault ${v.name}`, () => api.post("/verify", { vault: v.name })),
        { class: "btn btn-secondary btn-small", "aria-label": `Verify vault ${v.name}`, title: "read and check every chunk of every point" }),
      button("GC", () => gc(v, status), { class: "btn btn-secondary btn-small", "aria-label": `Garbage collection of ${v.name}`,
        title: "purge expired soft-deleted points, then remove unreferenced chunks" }),
    ] : null);
  view.append(h("div", { class: "card table-wrap" }, table([
    { title: "Name", class: "nowrap", cell: (v) => h("span", { class: "disk-list", title: `created ${short(v.created_at)}` },
      h("strong", {}, v.name), h("span", { class: "muted" }, `location ${v.location}`)) },
    { title: "Storage", cell: where },
    { title: "Used", class: "num used", cell: (v) => s(v, (x) => bytes(x.used_bytes)) },
    { title: "Dedup", class: "num dedup", cell: (v) => s(v, (x) => (x.dedup_ratio ? `${x.dedup_ratio.toFixed(2)} ×` : "–")) },
    { title: "Points", class: "num points", cell: (v) => s(v, (x) => String(x.points)) },
    { title: "Soft delete", class: "nowrap", cell: softDelete },
    { title: "Soft-deleted", class: "num soft-deleted", cell: (v) => s(v, (x) => `${x.soft_deleted_points || 0} · ${bytes(x.soft_deleted_logical_bytes || 0)}`) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
  ], vaults, { caption: "Vaults", key: (v) => v.name })));
}

async function gc(v, status) {
  const ok = await confirm(`Garbage collection of ${v.name}`, [
    h("p", {}, "Purges the soft-deleted points whose period has ended, then removes the chunks no point uses."),
    h("p", {}, "It runs as a job beside backups (safe against a backup running at the same time).")],
  { action: "Run GC", danger: false });
  if (ok) await attempt(status, `GC of vault ${v.name}`, () => api.post("/gc", { vault: v.name }));
}

async function create() {
  const name = h("input", { name: "name", required: true, autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9._-]*" });
  const location = h("input", { name: "location", required: true, value: "local", autocomplete: "off" });
  const kind = select([["local", "A directory of the server"], ["s3", "An S3 bucket (Ceph RGW, AWS, MinIO…)"]], "local", { name: "storage", id: "vault-storage" });
  const path = h("input", { name: "path", autocomplete: "off", placeholder: "default: under the server's home" });
  const endpoint = h("input", { name: "endpoint", autocomplete: "off", placeholder: "the service's URL: scheme, host, port" });
  const bucket = h("input", { name: "bucket", autocomplete: "off" });
  const prefix = h("input", { name: "prefix", autocomplete: "off", placeholder: "optional" });
  const region = h("input", { name: "region", autocomplete: "off", placeholder: "optional" });
  const creds = h("input", { name: "credentials_file", autocomplete: "off", placeholder: "optional: an absolute path on the server" });
  const encrypt = h("input", { type: "checkbox", name: "encrypt" });
  const local = h("div", {}, field("Directory", path, "An absolute path on the server; empty: a directory under its home."));
  const s3 = h("div", { hidden: true },
    h("div", { class: "row" }, field("Endpoint", endpoint), field("Bucket", bucket), field("Prefix", prefix), field("Region", region)),
    field("Credentials file", creds),
    h("div", { class: "notice", role: "note" }, "The keys are the server's, never typed here: its environment's ",
      h("code", {}, "AWS_ACCESS_KEY_ID"), " and ", h("code", {}, "AWS_SECRET_ACCESS_KEY"), ", or the credentials file above (on the server)."));
  kind.addEventListener("change", () => { local.hidden = kind.value !== "local"; s3.hidden = kind.value !== "s3"; });
  const made = await formDialog("New vault", "vault-form", [
    h("div", { class: "row" }, field("Name", name), field("Location", location, "The hosts of this location are the vault's.")),
    field("Storage", kind), local, s3,
    h("label", { class: "check" }, encrypt, "Encrypt (AES-256-GCM; the passphrase is the server's VMVAULT_PASSPHRASE)"),
  ], () => {
    const body = { name: name.value.trim(), location: location.value.trim(), encrypt: encrypt.checked };
    if (kind.value === "local" && path.value.trim()) body.path = path.value.trim();
    if (kind.value === "s3") {
      body.s3 = { endpoint: endpoint.value.trim(), bucket: bucket.value.trim() };
      for (const [k, el] of [["prefix", prefix], ["region", region], ["credentials_file", creds]]) {
        if (el.value.trim()) body.s3[k] = el.value.trim();
      }
    }
    return api.post("/vaults", body);
  }, { action: "Create vault" });
  if (made) {
    vaultsChanged(); // the header's picker lists it
    go(`#/vaults?saved=${encodeURIComponent(made.name)}`);
  }
}

async function settings(v) {
  const mode = select([["on", "on: deleted points are kept, undeletable, for some days"], ["off", "off: deleted at once"],
    ["always", "always: on, and never again off (permanent)"]], v.soft_delete, { name: "soft_delete", id: "soft-delete-mode", disabled: v.soft_delete === "always" });
  const days = h("input", { type: "number", name: "soft_delete_days", min: "1", max: "3650", value: String(v.soft_delete_days), id: "soft-delete-days" });
  const warn = h("div", { class: "warn-box", role: "note", hidden: true },
    "Always on is permanent: nobody can turn soft delete off for this vault again, through any interface.");
  mode.addEventListener("change", () => { warn.hidden = mode.value !== "always" || v.soft_delete === "always"; });
  const changed = await formDialog(`Soft delete of ${v.name}`, "soft-delete-form", [
    v.soft_delete === "always" ? h("p", {}, "Soft delete is always on here: only the days can change.") : null,
    field("Soft delete", mode), warn, field("Days", days, "1 … 3650: how long a deleted point stays undeletable."),
  ], async () => {
    const body = { soft_delete_days: Number(days.value) };
    if (mode.value !== v.soft_delete) body.soft_delete = mode.value;
    if (body.soft_delete === "always" && !(await confirm(`Always on for ${v.name}?`,
      h("p", {}, "This cannot be undone: soft delete of this vault can never be turned off again."),
      { action: "Make it permanent", acknowledge: "I understand this is permanent" }))) {
      return null;
    }
    return api.patch(`/vaults/${encodeURIComponent(v.name)}`, body);
  }, { action: "Save" });
  if (changed) go(`#/vaults?saved=${encodeURIComponent(v.name)}`);
}
