// Recovery points of a VM: consistency, method, sizes, the vaults holding each; a restore
// wizard for the three modes (as a new VM, replace the VM, disks only), a restore test, verify,
// pin, delete; and the vault's soft-deleted points with undelete (the Deleted tab).
import { api, can } from "../api.js";
import { h, clear, table, empty, pageHeader, button, badge, errorBox, when, short, bytes, dialog,
  field, select, attempt, confirm, notice, tabs } from "../ui.js";
import { go } from "../app.js";

const rowOf = (key) => document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
const small = (label, onclick, attrs) => button(label, onclick, { class: "btn btn-secondary btn-small", ...attrs });

const MODES = [
  ["as-new", "As a new VM", "A new VM (new name and uuid) with the point's disks in a directory you choose. The original VM is not touched."],
  ["replace", "Replace the VM", "The existing VM is shut off and overwritten by the point, after every disk has been restored and verified next to it."],
  ["disks-only", "Disks only", "The point's disk images and its domain XML are written to a directory; no VM is defined."],
];

export async function render(view, route) {
  const vms = (await api.get("/vms")).filter((v) => v.state !== "discovered")
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
  const verifyAll = can("operator") && tab === "points"
    ? button("Verify the vault", () => attempt(status, "Verify of the vault", () => api.post("/verify", {})), { id: "act-verify-vault" }) : null;
  view.append(pageHeader(vm ? `Recovery points of ${vm.name}` : "Recovery points",
    "Restore a point as a new VM, over the VM, or as disk images; or boot it in a restore test.", verifyAll),
  tabs("Points by state", tab, [["points", "Points"], ["deleted", "Deleted"]], (t) => link(t, vm && vm.uuid)),
  h("div", { class: "card filters" }, field("Virtual machine", picker)));
  const status = h("div", { class: "status-area" });
  view.append(status);
  if (tab === "deleted") return deletedList(view, vm, status);
  if (!vm) {
    view.append(h("div", { class: "card" }, empty(vms.length ? "Choose a VM" : "No registered VMs",
      vms.length ? "Its recovery points are listed here." : "Register and back up VMs from the Virtual machines page.")));
    return;
  }
  const points = await api.get("/points", { vm: vm.uuid });
  if (!points.length) {
    view.append(h("div", { class: "card" }, empty("No recovery points yet",
      "Back up the VM (Virtual machines → Back up now) or wait for its policy's next run.")));
    return;
  }
  const actions = (p) => {
    if (!can("operator")) return null;
    return h("div", { class: "row-actions" },
      small("Restore…", () => wizard(vm, p, status), { "aria-label": `Restore point ${p.id}` }),
      small("Test", () => restoreTest(vm, p, status), { "aria-label": `Restore test of point ${p.id}` }),
      small("Verify", () => attempt(status, `Verify of point ${p.id}`, () => api.post("/verify", { point: p.id })),
        { "aria-label": `Verify point ${p.id}` }),
      can("contributor") ? [
        small(p.protected ? "Unpin" : "Pin", () => pin(p, status), { "aria-label": `${p.protected ? "Unpin" : "Pin"} point ${p.id}`,
          title: p.protected ? "let retention prune it again" : "retention never prunes a pinned point" }),
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
        p.damaged ? badge("damaged", "bad") : null,
        p.warnings && p.warnings.length ? badge(`${p.warnings.length} warning(s)`, "warn") : null)) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
  ], points, { caption: `Recovery points of ${vm.name}`, key: (p) => p.id })));
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
  const found = await api.get("/points/deleted", vm ? { vm: vm.uuid } : {});
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
      ? small("Undelete", () => undelete(p), { "aria-label": `Undelete point ${p.id}` }) : null) },
  ], found, { caption: "Soft-deleted recovery points", key: (p) => `${p.id}/${p.deleted_vault}` })));
}

async function restoreTest(vm, point, status) {
  try {
    const job = await api.post("/restore-tests", { vm: vm.uuid, point: point.id });
    go(`#/jobs/${job.id}`);
  } catch (err) {
    status.prepend(errorBox(err, "The restore test was refused"));
  }
}

// The wizard: 1 mode → 2 options → 3 review; submits POST /api/v1/restores.
function wizard(vm, point, status) {
  return dialog(`Restore ${vm.name}`, (close) => {
    const state = { step: 1, mode: "as-new" };
    const name = h("input", { name: "name", value: `${vm.name}-restored`, required: true, autocomplete: "off" });
    const directory = h("input", { name: "directory", placeholder: "the storage pool's directory", autocomplete: "off" });
    const start = h("input", { type: "checkbox", name: "start" });
    const keep = h("input", { type: "checkbox", name: "keep_previous", checked: true });
    const vault = select(point.vaults.map((v) => [v, v === point.vault ? `${v} (its own)` : `${v} (a copy)`]), point.vault, { name: "from_vault" });
    const body = h("div", { class: "wizard-step" });
    const err = h("div", { "aria-live": "polite" });
    const steps = h("ol", { class: "steps", "aria-label": "Restore steps" });
    const nav = h("div", { class: "form-actions" });

    const request = () => {
      const r = { vm: vm.uuid, point: point.id, mode: state.mode };
      if (state.mode === "as-new") r.name = name.value.trim();
      if (state.mode !== "replace" && directory.value.trim()) r.directory = directory.value.trim();
      if (state.mode !== "disks-only") r.start = start.checked;
      if (state.mode === "replace") r.keep_previous = keep.checked;
      if (vault.value !== point.vault) r.from_vault = vault.value;
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
          state.mode === "as-new" ? field("Name of the new VM", name) : null,
          state.mode !== "replace" ? field("Directory for the disks", directory,
            state.mode === "disks-only" ? "Where the images and the domain XML go (required)." : "Empty: the default storage pool; elsewhere, a link in the pool points to each file.") : null,
          state.mode !== "disks-only" ? h("label", { class: "check" }, start, "Start the VM when it is restored") : null,
          state.mode === "replace" ? h("label", { class: "check" }, keep, "Keep the replaced VM's disks as *.previous files") : null,
          point.vaults.length > 1 ? field("Read from vault", vault) : null,
          state.mode === "replace" ? h("div", { class: "warn-box", role: "note" }, `${vm.name} will be shut off and overwritten.`) : null);
      } else {
        const r = request();
        clear(body, h("p", {}, "The restore runs as a job; you can follow it on its page."),
          h("dl", { class: "facts" }, Object.entries(r).map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
      }
      clear(nav,
        state.step > 1 ? button("Back", () => { state.step--; draw(); }, { id: "wizard-back" }) : button("Cancel", () => close(null)),
        state.step < 3 ? h("button", { type: "submit", class: "btn btn-primary", id: "wizard-next" }, "Next")
          : h("button", { type: "submit", class: `btn ${state.mode === "replace" ? "btn-danger" : "btn-primary"}`, id: "wizard-submit" },
            state.mode === "replace" ? `Replace ${vm.name}` : "Start restore"));
      const first = body.querySelector("input, select");
      if (first) first.focus();
    };
    const form = h("form", { class: "dialog-body wizard", id: "restore-wizard" }, steps, body, err, nav);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (state.step === 2 && state.mode === "disks-only" && !directory.value.trim()) {
        clear(err, errorBox({ code: "INVALID_INPUT", message: "disks only needs a directory", remedy: "enter the directory for the images" }, "Missing directory"));
        directory.focus();
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
