// Recovery points of a VM: consistency, method, sizes, the vaults holding each, retain-until;
// a restore wizard for every mode (as a new VM, replace the VM, disks only, a restore test)
// and all its options, a restore test, verify (a point, the VM, the vault), copy the VM's
// points to another vault, pin, lock until a date, delete; and the vault's soft-deleted points
// with undelete and purge (the Deleted tab); "Browse files…" opens a point's files (files.js).
import { api, can } from "../api.js";
import { h, clear, table, empty, pageHeader, button, badge, errorBox, when, short, bytes, dialog,
  field, select, attempt, confirm, formDialog, notice, tabs } from "../ui.js";
import { go } from "../app.js";
import { copyDialog } from "./vms.js";
import * as files from "./files.js";

let told = null; // what the last action did, shown once on the page drawn again after it
const rowOf = (key) => document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
const small = (label, onclick, attrs) => button(label, onclick, { class: "btn btn-secondary btn-small", ...attrs });

const MODES = [
  ["as-new", "As a new VM", "A new VM (new name and uuid) with the point's disks in a directory you choose. The original VM is not touched."],
  ["replace", "Replace the VM", "The existing VM is shut off and overwritten by the point, after every disk has been restored and verified next to it."],
  ["disks-only", "Disks only", "The point's disk images and its domain XML are written to a directory; no VM is defined."],
  ["test", "Restore test", "A new VM booted isolated from the network, checked (it boots, its guest agent answers), then removed."],
];

export async function render(view, route) {
  if (route.rest[1] === "files") return files.render(view, route); // #/points/ID/files
  const vms = (await api.all("/vms")).filter((v) => v.state !== "discovered")
    .sort((a, b) => a.name.localeCompare(b.name));
  const ref = route.params.get("vm") || "";
  const tab = route.params.get("tab") === "deleted" ? "deleted" : "points";
  const vm = vms.find((v) => v.uuid === ref || v.name === ref) || null;
  const link = (t, uuid) => {
    const q = new URLSearchParams();
    if (uuid) q.set("vm", uuid);
    if (t === "deleted") q.set("tab", t);
    return `#/points${q.toString() ? `?${q}` : ""}`;
  };
  const picker = select([["", tab === "deleted" ? "— every VM —" : "— choose a VM —"], ...vms.map((v) => [v.uuid, `${v.name} (${v.host})`])],
    vm ? vm.uuid : "", { name: "vm", id: "points-vm" });
  picker.addEventListener("change", () => go(link(tab, picker.value)));
  const vaults = can("operator") && vm && tab === "points" ? await api.vaults().catch(() => []) : [];
  const headerActions = can("operator") && tab === "points" ? [
    vm ? button("Verify this VM", () => attempt(status, `Verify of ${vm.name}`, () => api.post("/verify", { vm: vm.uuid })),
      { id: "act-verify-vm", title: "read and check every point of the VM" }) : null,
    vm && vaults.length > 1 ? button("Copy to vault…", () => copyDialog({ vms: [vm] }, status, vaults), { id: "act-copy-vm",
      title: "copy the VM's points the other vault lacks" }) : null,
    button("Verify the vault", () => attempt(status, "Verify of the vault", () => api.post("/verify", {})), { id: "act-verify-vault" }),
  ] : null;
  view.append(pageHeader(vm ? `Recovery points of ${vm.name}` : "Recovery points",
    "Restore a point as a new VM, over the VM, or as disk images; or boot it in a restore test.", headerActions),
  tabs("Points by state", tab, [["points", "Points"], ["deleted", "Deleted"]], (t) => link(t, vm && vm.uuid)),
  h("div", { class: "card filters" }, field("Virtual machine", picker)));
  const status = h("div", { class: "status-area" });
  view.append(status);
  if (told) { notice(status, told); told = null; }
  if (tab === "deleted") return deletedList(view, vm, status);
  if (!vm) {
    view.append(h("div", { class: "card" }, empty(vms.length ? "Choose a VM" : "No registered VMs",
      vms.length ? "Its recovery points are listed here." : "Register and back up VMs from the Virtual machines page.")));
    return;
  }
  const points = await api.all("/points", { vm: vm.uuid });
  if (!points.length) {
    view.append(h("div", { class: "card" }, empty("No recovery points yet",
      "Back up the VM (Virtual machines → Back up now) or wait for its policy's next run.")));
    return;
  }
  const browse = (p) => h("a", { href: `#/points/${encodeURIComponent(p.id)}/files`, class: "btn btn-secondary btn-small",
    "aria-label": `Browse files of point ${p.id}`, title: "list, find and download the point's files" }, "Browse files…");
  const actions = (p) => {
    if (!can("operator")) return h("div", { class: "row-actions" }, browse(p));
    return h("div", { class: "row-actions" }, browse(p),
      small("Restore…", () => wizard(vm, p), { "aria-label": `Restore point ${p.id}` }),
      small("Test", () => restoreTest(vm, p, status), { "aria-label": `Restore test of point ${p.id}` }),
      small("Verify", () => attempt(status, `Verify of point ${p.id}`, () => api.post("/verify", { point: p.id })),
        { "aria-label": `Verify point ${p.id}` }),
      can("contributor") ? [
        small(p.protected ? "Unpin" : "Pin", () => pin(p, status), { "aria-label": `${p.protected ? "Unpin" : "Pin"} point ${p.id}`,
          title: p.protected ? "let retention prune it again" : "retention never prunes a pinned point" }),
        small("Lock…", () => lock(p, status), { "aria-label": `Lock point ${p.id}`, title: "keep it until a date (its retain-until)" }),
        button("Delete…", () => remove(vm, p, status), { class: "btn btn-danger-outline btn-small", "aria-label": `Delete point ${p.id}` }),
      ] : null);
  };
  view.append(h("div", { class: "card table-wrap" }, table([
    { title: "Created", class: "nowrap", cell: (p) => h("span", { title: `${when(p.created_at)} · ${p.id}` }, short(p.created_at)) },
    { title: "Consistency", cell: (p) => badge(p.consistency) },
    { title: "Method", class: "nowrap", cell: (p) => h("span", { title: p.method_reason || "" }, p.method) },
    { title: "Frozen", class: "num", cell: (p) => (p.paused_ms ? `${p.frozen_ms} ms, paused ${p.paused_ms} ms` : `${p.frozen_ms} ms`) },
    { title: "Logical", class: "num", cell: (p) => bytes(p.bytes_logical) },
    { title: "New", class: "num", cell: (p) => bytes(p.bytes_new) },
    { title: "Disks", cell: (p) => h("div", { class: "disk-list" }, p.disks.map((d) =>
      h("span", { class: d.excluded ? "muted" : null }, `${d.target} ${bytes(d.size)}${d.excluded ? " (excluded)" : ""}`))) },
    { title: "Held in", cell: (p) => h("div", { class: "disk-list" }, p.vaults.join(", "),
      h("span", {}, p.protected ? badge("pinned", "info") : null, p.set_id ? badge("set", "info") : null,
        p.retain_until ? h("span", { class: "badge badge-ok retain", title: `retained until ${when(p.retain_until)}` }, `until ${short(p.retain_until)}`) : null,
        p.damaged ? badge("damaged", "bad") : null,
        p.warnings && p.warnings.length ? badge(`${p.warnings.length} warning(s)`, "warn") : null)) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
  ], points, { caption: `Recovery points of ${vm.name}`, key: (p) => p.id })));
}

// Lock: the point's retain-until moves to a date (never earlier: RETENTION_SHORTENED); an
// immutable vault keeps it until then, and retention keeps it in any vault.
async function lock(point, status) {
  const tomorrow = new Date(Date.now() + 86400e3).toISOString().slice(0, 10);
  const current = point.retain_until ? point.retain_until.slice(0, 10) : null;
  const date = h("input", { type: "date", name: "keep_until", required: true, min: current && current > tomorrow ? current : tomorrow,
    value: current && current > tomorrow ? current : "", id: "lock-until" });
  const locked = await formDialog(`Lock the point of ${when(point.created_at)}`, "lock-form", [
    h("p", {}, point.retain_until ? `Retained until ${when(point.retain_until)} now.` : "It has no retain-until yet."),
    field("Keep until", date, "00:00 UTC of that day; never earlier than its retain-until now. Retention keeps it until then; an immutable vault refuses to delete it."),
  ], () => api.post(`/points/${encodeURIComponent(point.id)}/lock`, { keep_until: `${date.value}T00:00:00Z` }), { action: "Lock" });
  if (locked) {
    told = `Point ${point.id} is retained until ${when(locked.retain_until)}.`;
    go(location.hash);
  }
}

async function pin(point, status) {
  const done = await attempt(status, `${point.protected ? "Unpin" : "Pin"} point ${point.id}`,
    () => api.post(`/points/${encodeURIComponent(point.id)}/protect`, { protected: !point.protected }));
  if (done) go(location.hash);
}

// Delete from every vault holding the point, or from one; soft-deleted where the vault keeps
// deleted points (then the Deleted tab undeletes it).
async function remove(vm, point, status) {
  const vaults = await api.vaults().catch(() => []);
  const soft = Object.fromEntries(vaults.map((v) => [v.name, v.soft_delete !== "off" ? v.soft_delete_days : 0]));
  const where = select([["", point.vaults.length > 1 ? `every vault holding it (${point.vaults.join(", ")})` : point.vaults[0]],
    ...(point.vaults.length > 1 ? point.vaults.map((v) => [v, `${v} only`]) : [])], "", { name: "vault", id: "delete-where" });
  const fate = (v) => (soft[v] ? `kept soft-deleted for ${soft[v]} day(s) in ${v}, then purged` : `deleted at once from ${v}`);
  const ok = await confirm(`Delete the point of ${when(point.created_at)}`, [
    h("p", {}, `${vm.name}, ${point.consistency}, ${bytes(point.bytes_logical)}.`),
    point.vaults.length > 1 ? field("From", where) : null,
    h("ul", {}, point.vaults.map((v) => h("li", {}, fate(v))))], { action: "Delete point" });
  if (!ok) return;
  const done = await attempt(status, `Delete of point ${point.id}`,
    () => api.del(`/points/${encodeURIComponent(point.id)}`, { vault: where.value || null }));
  if (!done) return;
  if (where.value) go(location.hash); // still held elsewhere: its vaults change
  else rowOf(point.id)?.remove(); // the notice with the prune job stays
}

// The vault's soft-deleted points (GET /points/deleted), each undeletable until purged.
async function deletedList(view, vm, status) {
  const found = await api.all("/points/deleted", vm ? { vm: vm.uuid } : {});
  if (!found.length) {
    view.append(h("div", { class: "card" }, empty("No soft-deleted points",
      "A point deleted while its vault keeps deleted points (soft delete on) waits here until it is purged.")));
    return;
  }
  const undelete = async (p) => {
    const back = await attempt(status, `Undelete of point ${p.id}`,
      () => api.post(`/points/${encodeURIComponent(p.id)}/undelete`, { vault: p.deleted_vault }));
    if (back) {
      rowOf(`${p.id}/${p.deleted_vault}`)?.remove();
      notice(status, `Point ${p.id} is back in vault ${p.deleted_vault}.`);
    }
  };
  view.append(h("div", { class: "card table-wrap", id: "deleted-points" }, table([
    { title: "VM", class: "nowrap", cell: (p) => p.vm_name },
    { title: "Created", class: "nowrap", cell: (p) => h("span", { title: `${when(p.created_at)} · ${p.id}` }, short(p.created_at)) },
    { title: "Consistency", cell: (p) => badge(p.consistency) },
    { title: "Logical", class: "num", cell: (p) => bytes(p.bytes_logical) },
    { title: "Vault", cell: (p) => p.deleted_vault },
    { title: "Deleted", class: "nowrap", cell: (p) => short(p.deleted_at) },
    { title: "Purged after", class: "nowrap", cell: (p) => short(p.purge_after) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: (p) => (can("contributor")
      ? h("div", { class: "row-actions" }, small("Undelete", () => undelete(p), { "aria-label": `Undelete point ${p.id}` }),
        button("Purge…", () => purge(p, status), { class: "btn btn-danger-outline btn-small", "aria-label": `Purge point ${p.id}` })) : null) },
  ], found, { caption: "Soft-deleted recovery points", key: (p) => `${p.id}/${p.deleted_vault}` })));
}

// Purge a soft-deleted point before its period ends: gone for good. Where the vault's
// approvals are on it is held (202): attempt() shows the request, the row stays.
async function purge(p, status) {
  const ok = await confirm(`Purge the point of ${when(p.created_at)}?`, [
    h("p", {}, `${p.vm_name}, ${bytes(p.bytes_logical)}, soft-deleted from vault ${p.deleted_vault} (purged by GC after ${when(p.purge_after)} anyway).`),
    h("p", {}, "Purged now, it can never be undeleted. Where the vault's approvals are on, an admin approves it first.")],
  { action: "Purge now" });
  if (!ok) return;
  const gone = await attempt(status, `Purge of point ${p.id}`,
    () => api.post(`/points/${encodeURIComponent(p.id)}/purge`, { vault: p.deleted_vault }));
  if (gone) {
    rowOf(`${p.id}/${p.deleted_vault}`)?.remove();
    notice(status, `Point ${p.id} purged from vault ${p.deleted_vault}.`);
  }
}

async function restoreTest(vm, point, status) {
  try {
    const job = await api.post("/restore-tests", { vm: vm.uuid, point: point.id });
    go(`#/jobs/${job.id}`);
  } catch (err) {
    status.prepend(errorBox(err, "The restore test was refused"));
  }
}

// The wizard: 1 mode → 2 options → 3 review; submits POST /api/v1/restores with every option
// the route takes for the mode (RestoreRequest in api/requests.py).
async function wizard(vm, point) {
  const hosts = await api.all("/hosts").catch(() => []);
  return dialog(`Restore ${vm.name}`, (close) => {
    const state = { step: 1, mode: "as-new" };
    const name = h("input", { name: "name", value: `${vm.name}-restored`, autocomplete: "off" });
    const directory = h("input", { name: "directory", placeholder: "an absolute directory on the server", autocomplete: "off" });
    const host = select([["", `the VM's host (${vm.host})`], ...hosts.map((x) => [x.uri, `${x.uri} (${x.location})`])], "",
      { name: "host", id: "restore-host" });
    const start = h("input", { type: "checkbox", name: "start" });
    const keep = h("input", { type: "checkbox", name: "keep_previous", checked: true });
    const instant = h("input", { type: "checkbox", name: "instant", id: "restore-instant" });
    const timeout = h("input", { type: "number", name: "shutdown_timeout", min: "0", step: "1", placeholder: "the server's default", id: "restore-timeout" });
    const format = select([["qcow2", "qcow2 (default)"], ["raw", "raw"]], "qcow2", { name: "format", id: "restore-format" });
    const overwrite = h("input", { type: "checkbox", name: "overwrite", id: "restore-overwrite" });
    const vault = select(point.vaults.map((v) => [v, v === point.vault ? `${v} (its own)` : `${v} (a copy)`]), point.vault, { name: "from_vault" });
    const body = h("div", { class: "wizard-step" });
    const err = h("div", { "aria-live": "polite" });
    const steps = h("ol", { class: "steps", "aria-label": "Restore steps" });
    const nav = h("div", { class: "form-actions" });
    const is = (...modes) => modes.includes(state.mode);

    const request = () => {
      const r = { vm: vm.uuid, point: point.id, mode: state.mode };
      if (is("as-new") || (is("test") && name.value.trim())) r.name = name.value.trim();
      if (!is("replace") && directory.value.trim()) r.directory = directory.value.trim();
      if (is("as-new", "test") && host.value) r.host = host.value;
      if (is("as-new", "replace")) r.start = start.checked;
      if (is("replace")) r.keep_previous = keep.checked;
      if (is("replace") && timeout.value !== "") r.shutdown_timeout = Number(timeout.value);
      if (is("disks-only")) { r.format = format.value; r.overwrite = overwrite.checked; }
      if (vault.value !== point.vault) r.from_vault = vault.value;
      if (is("as-new", "replace") && instant.checked) r.instant = true;
      return r;
    };
    const draw = () => {
      clear(steps, ["Mode", "Options", "Review"].map((s, i) =>
        h("li", { class: i + 1 === state.step ? "current" : i + 1 < state.step ? "done" : "", "aria-current": i + 1 === state.step ? "step" : null }, s)));
      clear(err);
      if (state.step === 1) {
        clear(body, h("p", {}, "Point of ", when(point.created_at), " · ", badge(point.consistency), " · ", point.method),
          h("fieldset", { class: "choice" }, h("legend", {}, "How to restore"),
            MODES.map(([m, label, text]) => h("label", { class: "mode" },
              h("input", { type: "radio", name: "mode", value: m, checked: state.mode === m,
                onchange: () => { state.mode = m; } }),
              h("span", {}, h("strong", {}, label), h("span", { class: "help" }, text))))));
      } else if (state.step === 2) {
        clear(body,
          is("as-new", "test") ? field(is("test") ? "Name of the test VM" : "Name of the new VM", name,
            is("test") ? "Empty: a name made from the VM's." : null) : null,
          !is("replace") ? field("Directory for the disks", directory,
            is("disks-only") ? "Where the images and the domain XML go (required)." : "Empty: the default storage pool; elsewhere, a link in the pool points to each file.") : null,
          is("as-new", "test") && hosts.length ? field("Target host", host, "The libvirt host the VM is defined on.") : null,
          is("disks-only") ? h("div", { class: "row" }, field("Disk format", format),
            h("label", { class: "check" }, overwrite, "Overwrite files already in the directory")) : null,
          is("as-new", "replace") ? h("label", { class: "check" }, start, "Start the VM when it is restored") : null,
          is("as-new", "replace") ? h("label", { class: "check" }, instant, "Instant: run it from the vault at once, copy its disks while it runs") : null,
          is("replace") ? h("label", { class: "check" }, keep, "Keep the replaced VM's disks as *.previous files") : null,
          is("replace") ? field("Shutdown timeout (seconds)", timeout, "How long the VM may shut down cleanly before it is forced off.") : null,
          point.vaults.length > 1 ? field("Read from vault", vault) : null,
          is("replace") ? h("div", { class: "warn-box", role: "note" }, `${vm.name} will be shut off and overwritten.`) : null);
      } else {
        const r = request();
        clear(body, h("p", {}, "The restore runs as a job; you can follow it on its page."),
          h("dl", { class: "facts", id: "restore-review" }, Object.entries(r).map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
      }
      clear(nav,
        state.step > 1 ? button("Back", () => { state.step--; draw(); }, { id: "wizard-back" }) : button("Cancel", () => close(null)),
        state.step < 3 ? h("button", { type: "submit", class: "btn btn-primary", id: "wizard-next" }, "Next")
          : h("button", { type: "submit", class: `btn ${is("replace") ? "btn-danger" : "btn-primary"}`, id: "wizard-submit" },
            is("replace") ? `Replace ${vm.name}` : is("test") ? "Start restore test" : "Start restore"));
      const first = body.querySelector("input, select");
      if (first) first.focus();
    };
    const missing = (input, message, remedy) => {
      clear(err, errorBox({ code: "INVALID_INPUT", message, remedy }, "Missing option"));
      input.focus();
    };
    const form = h("form", { class: "dialog-body wizard", id: "restore-wizard" }, steps, body, err, nav);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (state.step === 2 && is("disks-only") && !directory.value.trim()) {
        missing(directory, "disks only needs a directory", "enter the directory for the images");
        return;
      }
      if (state.step === 2 && is("as-new") && !name.value.trim()) {
        missing(name, "a new VM needs a name", "enter the new VM's name");
        return;
      }
      if (state.step < 3) { state.step++; draw(); return; }
      try {
        const job = await api.post("/restores", request());
        close(job);
        go(`#/jobs/${job.id}`);
      } catch (error) {
        clear(err, errorBox(error, "The restore was refused"));
      }
    });
    draw();
    return form;
  });
}
