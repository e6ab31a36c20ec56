// Recovery points of a VM: consistency, method, sizes, the vaults holding each; a restore
// wizard for the three modes (as a new VM, replace the VM, disks only) and a restore test.
import { api, can } from "../api.js";
import { h, clear, table, empty, pageHeader, button, badge, errorBox, when, short, bytes, dialog,
  field, select } from "../ui.js";
import { go } from "../app.js";

const MODES = [
  ["as-new", "As a new VM", "A new VM (new name and uuid) with the point's disks in a directory you choose. The original VM is not touched."],
  ["replace", "Replace the VM", "The existing VM is shut off and overwritten by the point, after every disk has been restored and verified next to it."],
  ["disks-only", "Disks only", "The point's disk images and its domain XML are written to a directory; no VM is defined."],
];

export async function render(view, route) {
  const vms = (await api.get("/vms")).filter((v) => v.state !== "discovered")
    .sort((a, b) => a.name.localeCompare(b.name));
  const ref = route.params.get("vm") || "";
  const vm = vms.find((v) => v.uuid === ref || v.name === ref) || null;
  const picker = select([["", "— choose a VM —"], ...vms.map((v) => [v.uuid, `${v.name} (${v.host})`])],
    vm ? vm.uuid : "", { name: "vm", id: "points-vm" });
  picker.addEventListener("change", () => go(`#/points${picker.value ? `?vm=${encodeURIComponent(picker.value)}` : ""}`));
  view.append(pageHeader(vm ? `Recovery points of ${vm.name}` : "Recovery points",
    "Restore a point as a new VM, over the VM, or as disk images; or boot it in a restore test."),
  h("div", { class: "card filters" }, field("Virtual machine", picker)));
  const status = h("div", { class: "status-area" });
  view.append(status);
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
      button("Restore…", () => wizard(vm, p, status), { class: "btn btn-secondary btn-small", "aria-label": `Restore point ${p.id}` }),
      button("Test", () => restoreTest(vm, p, status), { class: "btn btn-secondary btn-small", "aria-label": `Restore test of point ${p.id}` }));
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
