// Vaults: where recovery points live — storage and where, size and dedup, encryption, soft
// delete and what it holds, immutability and approvals; create one (a directory of the server,
// or an S3 bucket) or attach an existing one, change its settings (vault_settings.js), and its
// upkeep: verify every point, garbage collection (each a job).
import { api, can } from "../api.js";
import { h, table, empty, pageHeader, button, badge, bytes, field, select, attempt, confirm,
  formDialog, notice, short } from "../ui.js";
import { go, vaultsChanged } from "../app.js";
import { softDelete as softDeleteSettings, approvals, immutability, IMMUTABLE_TONE, APPROVALS_TONE } from "./vault_settings.js";

let told = null; // what an attach found, shown once on the page drawn after it

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
    can("contributor") ? [button("Attach a vault", attach, { id: "attach-vault" }),
      button("New vault", create, { kind: "primary", id: "new-vault" })] : null), status);
  const saved = route.params.get("saved");
  if (saved) notice(status, `Vault ${saved} saved.`);
  if (told && (route.params.get("attached") || route.params.get("deleted"))) notice(status, ...told);
  told = null;
  if (!vaults.length) {
    view.append(h("div", { class: "card" }, empty("No vault yet",
      "Create one, or attach an existing one (after a disaster): everything else needs a vault.")));
    return;
  }
  const s = (v, f) => (storage[v.name] ? f(storage[v.name]) : "–");
  const small = (label, run, attrs) => button(label, run, { class: "btn btn-secondary btn-small", ...attrs });
  const actions = (v) => h("div", { class: "row-actions" },
    can("contributor") ? [
      small("Soft delete…", () => softDeleteSettings(v), { "aria-label": `Soft delete settings of ${v.name}` }),
      small("Approvals…", () => approvals(v), { "aria-label": `Approval settings of ${v.name}` }),
      v.immutable !== "locked" ? small("Immutability…", () => immutability(v), { "aria-label": `Immutability of ${v.name}` }) : null,
    ] : null,
    can("operator") ? [
      button("Verify", () => attempt(status, `Verify of vault ${v.name}`, () => api.post("/verify", { vault: v.name })),
        { class: "btn btn-secondary btn-small", "aria-label": `Verify vault ${v.name}`, title: "read and check every chunk of every point" }),
      button("GC", () => gc(v, status), { class: "btn btn-secondary btn-small", "aria-label": `Garbage collection of ${v.name}`,
        title: "purge expired soft-deleted points, then remove unreferenced chunks" }),
    ] : null,
    can("contributor") ? button("Delete…", () => remove(v, storage[v.name], status),
      { class: "btn btn-danger-outline btn-small", "aria-label": `Delete vault ${v.name}` }) : null);
  view.append(h("div", { class: "card table-wrap" }, table([
    { title: "Name", class: "nowrap", cell: (v) => h("span", { class: "disk-list", title: `created ${short(v.created_at)}` },
      h("strong", {}, v.name), h("span", { class: "muted" }, `location ${v.location}`)) },
    { title: "Storage", cell: where },
    { title: "Used", class: "num used", cell: (v) => s(v, (x) => bytes(x.used_bytes)) },
    { title: "Dedup", class: "num dedup", cell: (v) => s(v, (x) => (x.dedup_ratio ? `${x.dedup_ratio.toFixed(2)} ×` : "–")) },
    { title: "Points", class: "num points", cell: (v) => s(v, (x) => String(x.points)) },
    { title: "Protection", class: "nowrap protection", cell: (v) => h("div", { class: "disk-list" },
      h("span", {}, "soft delete ", softDelete(v)),
      h("span", {}, "immutable ", h("span", { class: "immutable" }, badge(v.immutable, IMMUTABLE_TONE[v.immutable]))),
      h("span", { title: v.approvals === "delay" ? `a held operation runs after ${v.approval_delay_hours} h`
        : v.approvals === "second-admin" ? `a held operation lapses after ${v.approval_expiry_hours} h` : "protected operations run at once" },
      "approvals ", h("span", { class: "approvals" }, badge(v.approvals, APPROVALS_TONE[v.approvals])),
      v.approvals === "delay" ? ` ${v.approval_delay_hours} h` : null)) },
    { title: "Soft-deleted", class: "num soft-deleted", cell: (v) => s(v, (x) => `${x.soft_deleted_points || 0} · ${bytes(x.soft_deleted_logical_bytes || 0)}`) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
  ], vaults, { caption: "Vaults", key: (v) => v.name })));
}

// Delete a vault: refused while VMs or policies use it (VAULT_IN_USE); the points it holds go
// only when asked (with_points, a box to tick: permanent). Held for approval where the
// vault's approvals are on (202: attempt() shows the request).
async function remove(v, figures, status) {
  const points = figures ? figures.points + (figures.soft_deleted_points || 0) : 0;
  const ok = await confirm(`Delete vault ${v.name}?`, [
    h("p", {}, `Removes the vault from vmvault and every object of its storage (${v.storage === "s3" ? "the bucket's prefix" : "its directory"}). `
      + "Refused while VMs or policies use it."),
    points ? h("p", {}, `It holds ${points} point(s): they are purged with it (a point with a copy elsewhere lives on there).`) : null,
    v.approvals !== "off" ? h("p", {}, "Its approvals are on: an admin approves the deletion first.") : null,
  ], { action: "Delete vault", acknowledge: points ? `I understand: its ${points} point(s) are gone for good` : null });
  if (!ok) return;
  const done = await attempt(status, `Delete of vault ${v.name}`,
    () => api.del(`/vaults/${encodeURIComponent(v.name)}`, points ? { with_points: true } : {}));
  if (done) {
    vaultsChanged();
    told = [`Vault ${done.deleted} deleted${done.points_purged ? `, ${done.points_purged} point(s) purged` : ""}.`];
    go("#/vaults?deleted=1");
  }
}

async function gc(v, status) {
  const ok = await confirm(`Garbage collection of ${v.name}`, [
    h("p", {}, "Purges the soft-deleted points whose period has ended, then removes the chunks no point uses."),
    h("p", {}, "It runs as a job beside backups (safe against a backup running at the same time).")],
  { action: "Run GC", danger: false });
  if (ok) await attempt(status, `GC of vault ${v.name}`, () => api.post("/gc", { vault: v.name }));
}

// Where a vault is: a directory of the server, or an S3 bucket (the keys are the server's).
// For a new vault and an attached one; `body()` answers {path?} or {s3}.
function storageFields(idPrefix, pathHelp, { objectLock = false } = {}) {
  const kind = select([["local", "A directory of the server"], ["s3", "An S3 bucket (Ceph RGW, AWS, MinIO…)"]], "local", { name: "storage", id: `${idPrefix}-storage` });
  const path = h("input", { name: "path", autocomplete: "off", placeholder: pathHelp[0] });
  const endpoint = h("input", { name: "endpoint", autocomplete: "off", placeholder: "the service's URL: scheme, host, port" });
  const bucket = h("input", { name: "bucket", autocomplete: "off" });
  const prefix = h("input", { name: "prefix", autocomplete: "off", placeholder: "optional" });
  const region = h("input", { name: "region", autocomplete: "off", placeholder: "optional" });
  const creds = h("input", { name: "credentials_file", autocomplete: "off", placeholder: "optional: an absolute path on the server" });
  const lock = h("input", { type: "checkbox", name: "object_lock" });
  const lockMode = select([["", "compliance once the vault is locked immutable, else governance"], ["governance", "governance"],
    ["compliance", "compliance"]], "", { name: "lock_mode" });
  const local = h("div", {}, field("Directory", path, pathHelp[1]));
  const s3 = h("div", { hidden: true },
    h("div", { class: "row" }, field("Endpoint", endpoint), field("Bucket", bucket), field("Prefix", prefix), field("Region", region)),
    field("Credentials file", creds),
    objectLock ? h("div", { class: "row" }, h("label", { class: "check" }, lock, "The bucket has S3 Object Lock (retained points' objects get one)"),
      field("Lock mode", lockMode)) : null,
    h("div", { class: "notice", role: "note" }, "The keys are the server's, never typed here: its environment's ",
      h("code", {}, "AWS_ACCESS_KEY_ID"), " and ", h("code", {}, "AWS_SECRET_ACCESS_KEY"), ", or the credentials file above (on the server)."));
  kind.addEventListener("change", () => { local.hidden = kind.value !== "local"; s3.hidden = kind.value !== "s3"; });
  const body = () => {
    if (kind.value === "local") return path.value.trim() ? { path: path.value.trim() } : {};
    const b = { endpoint: endpoint.value.trim(), bucket: bucket.value.trim() };
    for (const [k, el] of [["prefix", prefix], ["region", region], ["credentials_file", creds]]) {
      if (el.value.trim()) b[k] = el.value.trim();
    }
    if (objectLock && lock.checked) {
      b.object_lock = true;
      if (lockMode.value) b.lock_mode = lockMode.value;
    }
    return { s3: b };
  };
  return { nodes: [field("Storage", kind), local, s3], body };
}

const nameInput = () => h("input", { name: "name", required: true, autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9._-]*" });
const locationInput = () => h("input", { name: "location", required: true, value: "local", autocomplete: "off" });

async function create() {
  const name = nameInput();
  const location = locationInput();
  const storage = storageFields("vault", ["default: under the server's home", "An absolute path on the server; empty: a directory under its home."],
    { objectLock: true });
  const encrypt = h("input", { type: "checkbox", name: "encrypt" });
  const made = await formDialog("New vault", "vault-form", [
    h("div", { class: "row" }, field("Name", name), field("Location", location, "The hosts of this location are the vault's.")),
    storage.nodes,
    h("label", { class: "check" }, encrypt, "Encrypt (AES-256-GCM; the passphrase is the server's VMVAULT_PASSPHRASE)"),
  ], () => api.post("/vaults", { name: name.value.trim(), location: location.value.trim(), encrypt: encrypt.checked, ...storage.body() }),
  { action: "Create vault" });
  if (made) {
    vaultsChanged(); // the header's picker lists it
    go(`#/vaults?saved=${encodeURIComponent(made.name)}`);
  }
}

// Attach an existing vault (disaster recovery, docs/disaster-recovery.md): its VMs and points
// are rebuilt from the manifests in its storage; nothing is written to the vault.
async function attach() {
  const name = nameInput();
  const location = locationInput();
  const storage = storageFields("attach", ["/mnt/backup/vaults/main", "The vault's absolute directory on the server (required)."]);
  const paper = h("textarea", { name: "paper_key", rows: "3", autocomplete: "off", spellcheck: "false",
    placeholder: "encrypted vault without its key file: the paper key's text" });
  const keyFile = h("input", { name: "key_file", autocomplete: "off", placeholder: "optional: an absolute path on the server" });
  const found = await formDialog("Attach a vault", "attach-form", [
    h("p", {}, "A vault written by another vmvault (or this one before its catalog was lost): its VMs and points are read from its manifests. Nothing is written to the vault."),
    h("div", { class: "row" }, field("Name", name, "Usually the name it had; the vault's own record says it."),
      field("Location", location, "The hosts of this location are the vault's.")),
    storage.nodes,
    h("fieldset", { class: "choice" }, h("legend", {}, "Encrypted vault: its key"),
      field("Paper key", paper, "The new key file is wrapped with the server's VMVAULT_NEW_PASSPHRASE."),
      field("Key file", keyFile, "A copy of the vault's key file, opened with the server's VMVAULT_PASSPHRASE.")),
  ], () => {
    const body = { name: name.value.trim(), location: location.value.trim(), ...storage.body() };
    if (paper.value.trim()) body.paper_key = paper.value.trim();
    if (keyFile.value.trim()) body.key_file = keyFile.value.trim();
    return api.post("/vaults/attach", body);
  }, { action: "Attach vault" });
  if (!found) return;
  vaultsChanged();
  told = [`Vault ${found.vault.name} attached: ${found.vms} VM(s) (${found.vms_new} new), ${found.points} point(s)`,
    found.copies ? `, ${found.copies} copies` : "", `, ${bytes(found.bytes_logical)} logical, ${bytes(found.bytes_stored)} stored`,
    found.skipped && found.skipped.length ? `; ${found.skipped.length} manifest(s) skipped` : "",
    found.incomplete && found.incomplete.length ? `; ${found.incomplete.length} incomplete point(s)` : "", ". ",
    h("a", { href: "#/vms?tab=registered" }, "Its VMs")];
  go(`#/vaults?attached=${encodeURIComponent(found.vault.name)}`);
}
