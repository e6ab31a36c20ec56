// Virtual machines: discovered / registered / protected tabs, a selection of many VMs, and
// the actions on it — discover, register, protect with a policy (existing or new), backup now,
// copy to another vault, stop and resume protection, unregister.
import { api, can, session } from "../api.js";
import { h, clear, table, empty, pageHeader, button, badge, errorBox, notice, jobsQueued, dialog,
  field, select, ago, attempt, confirm, formDialog, tabs } from "../ui.js";
import { go } from "../app.js";
import { policyForm, policyBody, retentionText } from "./policies.js";

const TABS = [
  ["discovered", "Discovered", "Every VM discovery found on the vault's hosts, not registered yet."],
  ["registered", "Registered", "Registered with the vault, without a policy."],
  ["protected", "Protected", "With a policy (or protection stopped, data retained)."],
];

function tabOf(vm) {
  if (vm.state === "protected" || vm.state === "protection-stopped") return "protected";
  return vm.state;
}

export async function render(view, route) {
  const tab = TABS.some(([t]) => t === route.params.get("tab")) ? route.params.get("tab") : "protected";
  const [vms, protection, vaults] = await Promise.all([
    api.all("/vms"),
    api.all("/protection").catch(() => []),
    api.vaults().catch(() => []),
  ]);
  const health = Object.fromEntries((protection || []).map((p) => [p.uuid, p]));
  const selected = new Set();
  const status = h("div", { class: "status-area" });

  const actions = [button("Refresh", () => go(`#/vms?tab=${tab}`), { id: "act-refresh" })];
  if (can("contributor")) actions.push(button("Discover VMs", () => discover(status), { id: "act-discover" }));
  if (can("operator") && vaults.length > 1) {
    actions.push(button("Copy all VMs…", () => copyDialog({}, status, vaults), { id: "act-copy-all", title: "copy every VM's points to another vault" }));
  }
  view.append(pageHeader("Virtual machines", "Select VMs, then act on all of them at once.", actions));
  view.append(status);

  const counts = Object.fromEntries(TABS.map(([t]) => [t, vms.filter((v) => tabOf(v) === t).length]));
  view.append(tabs("VMs by state", tab, TABS.map(([t, label]) => [t, label, counts[t]]), (t) => `#/vms?tab=${t}`));

  const rows = vms.filter((v) => tabOf(v) === tab).sort((a, b) => a.name.localeCompare(b.name));
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Actions on the selected VMs" });
  const chosen = () => rows.filter((v) => selected.has(v.uuid));
  const countLabel = h("span", { class: "muted", "aria-live": "polite" }, "No VM selected");
  const actionButtons = [];
  const act = (label, needed, tabs, run, id) => {
    if (!can(needed) || !tabs.includes(tab)) return;
    actionButtons.push(button(label, () => run(chosen(), status), { id, disabled: true }));
  };
  act("Register", "contributor", ["discovered"], register, "act-register");
  act("Protect…", "contributor", ["registered", "protected"], protect, "act-protect");
  act("Back up now", "operator", ["registered", "protected"], backupNow, "act-backup");
  act("Back up…", "operator", ["registered", "protected"], backupWith, "act-backup-options");
  act("Disks…", "contributor", ["registered", "protected"], disks, "act-disks");
  if (vaults.length > 1) {
    act("Copy to vault…", "operator", ["registered", "protected"], (list, where) => copyDialog({ vms: list }, where, vaults), "act-copy");
  }
  act("Stop protection…", "contributor", ["protected"], stop, "act-stop");
  act("Resume", "contributor", ["protected"], resume, "act-resume");
  act("Unregister", "contributor", ["registered"], unregister, "act-unregister");
  const refresh = () => {
    const n = selected.size;
    countLabel.textContent = n ? `${n} selected` : "No VM selected";
    actionButtons.forEach((b) => { b.disabled = n === 0; });
  };
  if (actionButtons.length) toolbar.append(countLabel, ...actionButtons);

  const panel = h("section", { class: "card", "aria-labelledby": `tab-${tab}` },
    h("p", { class: "muted tab-help" }, TABS.find(([t]) => t === tab)[2]));
  view.append(panel);
  if (!rows.length) {
    panel.append(empty(`No ${tab} VMs`, tab === "discovered"
      ? "Run a discovery to list the VMs of the vault's hosts." : "Register VMs from the Discovered tab, then protect them.",
    tab === "discovered" && can("contributor") ? button("Discover VMs", () => discover(status), { kind: "primary" }) : null));
    return;
  }
  if (actionButtons.length) panel.append(toolbar);
  const selectable = actionButtons.length > 0;
  const all = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all VMs" });
  all.addEventListener("change", () => {
    panel.querySelectorAll("input[name=vm]").forEach((c) => { c.checked = all.checked; c.dispatchEvent(new Event("change")); });
  });
  const columns = [
    { title: "Name", class: "nowrap", cell: (v) => h("a", { href: `#/points?vm=${encodeURIComponent(v.uuid)}` }, v.name) },
    { title: "Host / group", class: "nowrap", cell: (v) => `${v.host} / ${v.group}` },
    { title: "Power", cell: (v) => badge(v.vanished ? "vanished" : v.power_state, v.vanished ? "bad" : null) },
    { title: "Agent", class: "nowrap", cell: (v) => (v.agent_version ? v.agent_version : v.agent_channel ? "no answer" : "none") },
    { title: "Disks", class: "nowrap", cell: (v) => v.disks.map((d) => d.target + (d.excluded ? " (excluded)" : "")).join(", ") },
  ];
  if (tab !== "discovered") {
    columns.push({ title: "State", cell: (v) => badge(v.state) });
    columns.push({ title: "Policy", cell: (v) => (v.policy ? h("a", { href: `#/policies/${encodeURIComponent(v.policy)}` }, v.policy) : "–") });
  }
  if (tab === "protected") {
    columns.push({ title: "Health", cell: (v) => {
      const item = health[v.uuid];
      if (!item || !item.health || item.health === "-") return "–";
      return badge(item.health, item.health === "ok" ? "ok" : item.health === "overdue" ? "warn" : "bad");
    } });
    columns.push({ title: "Last point", class: "nowrap", cell: (v) => {
      const item = health[v.uuid];
      return item ? h("span", { title: `${item.points} point(s)` }, ago(item.last_point_at)) : "–";
    } });
  }
  if (selectable) {
    columns.unshift({ title: all, class: "select-cell", cell: (v) => {
      const box = h("input", { type: "checkbox", name: "vm", value: v.uuid, "aria-label": `Select ${v.name}` });
      box.addEventListener("change", () => { if (box.checked) selected.add(v.uuid); else selected.delete(v.uuid); refresh(); });
      return box;
    } });
  }
  panel.append(h("div", { class: "table-wrap" }, table(columns, rows, { caption: `${tab} VMs`, key: (v) => v.uuid })));
}

// --- actions ---------------------------------------------------------------------------------

const some = (vms) => `${vms.length} VM${vms.length === 1 ? "" : "s"}`;
const names = (vms) => vms.map((v) => v.name).join(", ");

async function discover(status) {
  const job = await attempt(status, "Discovery", () => api.post("/vms/discover", {}));
  if (job) setTimeout(() => go(`#/jobs/${job.id}`), 600);
}

async function register(vms, status) {
  const what = `Register ${vms.length} VM${vms.length === 1 ? "" : "s"}`;
  const agentless = vms.filter((v) => !v.agent_channel);
  let crash = false;
  if (agentless.length) {
    // a VM without a guest agent channel is refused unless crash-consistent points are accepted
    const answer = await dialog(what, (close) => {
      const box = h("input", { type: "checkbox", name: "crash_consistent", id: "crash-consistent" });
      const f = h("form", { class: "dialog-body", id: "register-form" },
        h("div", { class: "warn-box", role: "note" }, `Without a guest agent channel: ${agentless.map((v) => v.name).join(", ")}. `,
          "Their backups cannot freeze the file systems."),
        h("label", { class: "check" }, box, "Accept crash-consistent backups for them"),
        h("div", { class: "form-actions" }, button("Cancel", () => close(null)),
          h("button", { type: "submit", class: "btn btn-primary", id: "register-submit" }, "Register")));
      f.addEventListener("submit", (e) => { e.preventDefault(); close({ crash: box.checked }); });
      return f;
    });
    if (!answer) return;
    crash = answer.crash;
  }
  await attempt(status, what, () => api.post("/vms/register",
    { vms: vms.map((v) => v.uuid), ...(crash ? { crash_consistent: true } : {}) }));
}

async function backupNow(vms, status) {
  await attempt(status, `Backup of ${vms.length} VM${vms.length === 1 ? "" : "s"}`,
    () => api.post("/backups", { vms: vms.map((v) => v.uuid) }));
}

async function protect(vms, status) {
  const policies = await api.all("/policies");
  const done = await dialog(`Protect ${vms.length} VM${vms.length === 1 ? "" : "s"}`, (close) => {
    const choice = policies.length ? "existing" : "new";
    const existing = select(policies.map((p) => [p.name, `${p.name} — ${p.schedule}, ${retentionText(p.retention)}`]),
      policies[0] && policies[0].name, { name: "policy" });
    const form = policyForm(null);
    const radios = h("fieldset", { class: "choice" }, h("legend", {}, "Policy"),
      h("label", { class: "check" }, h("input", { type: "radio", name: "which", value: "existing",
        checked: choice === "existing", disabled: !policies.length }), "An existing policy"),
      h("label", { class: "check" }, h("input", { type: "radio", name: "which", value: "new",
        checked: choice === "new", id: "policy-new" }), "A new policy"));
    const existingPart = field("Existing policy", existing);
    const newPart = h("div", {}, form.element);
    const backup = h("input", { type: "checkbox", name: "backup_now" });
    const err = h("div", { "aria-live": "polite" });
    const sync = () => {
      const which = radios.querySelector("input:checked").value;
      existingPart.hidden = which !== "existing";
      newPart.hidden = which !== "new";
    };
    radios.addEventListener("change", sync);
    sync();
    const f = h("form", { class: "dialog-body", id: "protect-form" },
      h("p", {}, "VMs: ", vms.map((v) => v.name).join(", ")),
      radios, existingPart, newPart,
      can("operator") ? h("label", { class: "check" }, backup, "Back up now (the initial backup)") : null,
      err,
      h("div", { class: "form-actions" }, button("Cancel", () => close(null)),
        h("button", { type: "submit", class: "btn btn-primary", id: "protect-submit" }, "Protect")));
    let created = null; // a new policy made by an earlier try of this dialog
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      clear(err);
      try {
        let policy = existing.value;
        if (radios.querySelector("input:checked").value === "new") {
          created = created || (await api.post("/policies", policyBody(form.values()))).name;
          policy = created;
        }
        const refs = vms.map((v) => v.uuid);
        const jobs = await api.post("/protection", { vms: refs, policy });
        const backups = backup.checked ? await api.post("/backups", { vms: refs }) : [];
        close({ policy, jobs: [...jobs, ...backups] });
      } catch (error) {
        clear(err, errorBox(error, "Protection was refused"));
      }
    });
    return f;
  });
  if (done) notice(status, ...jobsQueued(done.jobs, `Protect with policy ${done.policy}`));
}

async function unregister(vms, status) {
  const ok = await confirm(`Unregister ${some(vms)}`, [h("p", {}, `VMs: ${names(vms)}.`),
    h("p", {}, "They go back to the Discovered tab; their recovery points stay in the vault.")],
  { action: "Unregister" });
  if (ok) await attempt(status, `Unregister ${some(vms)}`, () => api.post("/vms/unregister", { vms: vms.map((v) => v.uuid) }));
}

// Stop protection: the points are kept unless "delete data" is chosen and confirmed.
async function stop(vms, status) {
  const keep = h("input", { type: "radio", name: "data", value: "retain", checked: true });
  const drop = h("input", { type: "radio", name: "data", value: "delete", id: "stop-delete-data" });
  const ack = h("input", { type: "checkbox", name: "acknowledge", id: "stop-ack" });
  const ackLabel = h("label", { class: "check ack", hidden: true }, ack,
    "I understand: every recovery point of these VMs is deleted (soft-deleted where the vault keeps deleted points)");
  const data = h("fieldset", { class: "choice" }, h("legend", {}, "Their recovery points"),
    h("label", { class: "check" }, keep, "Keep them (protection can be resumed)"),
    h("label", { class: "check" }, drop, "Delete them"));
  data.addEventListener("change", () => { ackLabel.hidden = !drop.checked; });
  const jobs = await formDialog(`Stop protection of ${some(vms)}`, "stop-form",
    [h("p", {}, `VMs: ${names(vms)}. No more scheduled backups.`), data, ackLabel],
    async () => {
      if (drop.checked && !ack.checked) {
        throw { code: "INVALID_INPUT", message: "deleting the points needs the box ticked",
          remedy: "tick the box, or keep the points" };
      }
      return api.post("/protection/stop", { vms: vms.map((v) => v.uuid), delete_data: drop.checked });
    }, { action: "Stop protection", danger: true });
  if (jobs) notice(status, ...jobsQueued(jobs, `Stop protection of ${some(vms)}`));
}

async function resume(vms, status) {
  const policies = await api.all("/policies");
  const policy = select([["", "each VM's own policy"], ...policies.map((p) => [p.name, p.name])], "", { name: "policy" });
  const jobs = await formDialog(`Resume protection of ${some(vms)}`, "resume-form",
    [h("p", {}, `VMs: ${names(vms)} (protection stopped, data retained).`), field("Policy", policy)],
    () => api.post("/protection/resume", { vms: vms.map((v) => v.uuid), ...(policy.value ? { policy: policy.value } : {}) }),
    { action: "Resume" });
  if (jobs) notice(status, ...jobsQueued(jobs, `Resume protection of ${some(vms)}`));
}

// Copy now (docs/copies.md): the points the source vault holds and the other one lacks, of
// some VMs (their vault is the source) or of every VM with points in a vault chosen here.
export async function copyDialog({ vms = null }, status, vaults) {
  const all = !vms;
  const fromPick = select(vaults.map((v) => [v.name, v.name]), session.vault || vaults[0].name, { name: "from_vault", id: "copy-from" });
  const source = () => (all ? fromPick.value : vms[0].vault || session.vault || vaults[0].name);
  const to = select([], "", { name: "to_vault", id: "copy-to" });
  const targets = () => {
    const others = vaults.filter((v) => v.name !== source());
    clear(to, others.map((v) => h("option", { value: v.name }, `${v.name} (${v.storage}${v.location ? `, ${v.location}` : ""})`)));
  };
  fromPick.addEventListener("change", targets);
  targets();
  const what = all ? "every VM" : some(vms);
  const jobs = await formDialog(all ? "Copy every VM to another vault" : `Copy ${some(vms)} to another vault`, "copy-form", [
    all ? [h("p", {}, "Every VM with points in the source vault: one copy job each. Only the chunks the other vault lacks travel."),
      field("From vault", fromPick)]
      : h("p", {}, `VMs: ${names(vms)}. From vault ${source()}: only the chunks the other vault lacks travel.`),
    field("To vault", to),
  ], () => api.post("/copies", { from_vault: source(), to_vault: to.value, ...(all ? { all: true } : { vms: vms.map((v) => v.uuid) }) }),
  { action: "Copy now" });
  if (jobs) notice(status, ...jobsQueued(jobs, `Copy of ${what} to ${to.value}`));
}

// A backup with options: as one set (one point in time for every VM or none, docs/sets.md),
// a least consistency, points kept until a date whatever the retention.
async function backupWith(vms, status) {
  const asSet = h("input", { type: "checkbox", name: "set", disabled: vms.length < 2 });
  const require = select([["", "any"], ["file-system-consistent", "file-system-consistent"],
    ["application-consistent", "application-consistent"]], "", { name: "require" });
  const keep = h("input", { type: "date", name: "keep_until" });
  asSet.addEventListener("change", () => { require.disabled = asSet.checked; });
  const jobs = await formDialog(`Back up ${some(vms)}`, "backup-form", [
    h("p", {}, `VMs: ${names(vms)}.`),
    h("label", { class: "check" }, asSet, "As one all-or-nothing set (two VMs or more; each VM's policy says its consistency)"),
    h("div", { class: "row" }, field("Least consistency", require, "a VM that cannot give it fails, no point kept"),
      field("Keep until", keep, "retention leaves these points alone until then")),
  ], () => api.post("/backups", { vms: vms.map((v) => v.uuid), ...(asSet.checked ? { set: true } : {}),
    ...(require.value && !asSet.checked ? { require: require.value } : {}),
    ...(keep.value ? { keep_until: `${keep.value}T23:59:59Z` } : {}) }), { action: "Back up now" });
  if (jobs) notice(status, ...jobsQueued(jobs, asSet.checked ? `Backup set of ${some(vms)}` : `Backup of ${some(vms)}`));
}

// Which disks the VMs' backups leave out (from their next backup on): PATCH /vms/REF each.
async function disks(vms, status) {
  const boxes = vms.map((v) => [v, v.disks.map((d) => h("input", { type: "checkbox", name: `disk-${v.uuid}`, value: d.target,
    checked: !d.excluded, "aria-label": `Back up ${d.target} of ${v.name}` }))]);
  const changed = await formDialog(`Disks of ${some(vms)}`, "disks-form", [
    h("p", {}, "Ticked disks are backed up; an unticked one is left out of every backup from the next one on."),
    boxes.map(([v, list]) => h("fieldset", {}, h("legend", {}, v.name), list.length ? list.map((b, i) =>
      h("label", { class: "check" }, b, `${b.value} (${v.disks[i].device}, ${v.disks[i].format || v.disks[i].type})`)) : "no disks")),
  ], async () => {
    const done = [];
    for (const [v, list] of boxes) {
      const exclude = list.filter((b, i) => !b.checked && !v.disks[i].excluded).map((b) => b.value);
      const include = list.filter((b, i) => b.checked && v.disks[i].excluded).map((b) => b.value);
      if (exclude.length || include.length) {
        done.push(await api.patch(`/vms/${encodeURIComponent(v.uuid)}`, { exclude_disks: exclude, include_disks: include }));
      }
    }
    return done;
  }, { action: "Save" });
  if (changed) notice(status, changed.length ? `Disks changed for ${changed.map((v) => v.name).join(", ")}.` : "Nothing changed.");
}
