// Policies: the list, the editor (schedule + retention) with a live preview of the next runs
// and of which existing points retention would keep (POST /api/v1/policies/preview).
import { api, can, Held } from "../api.js";
import { h, clear, table, empty, pageHeader, field, select, errorBox, when, short, badge, loading, button,
  confirm, showHeld } from "../ui.js";
import { go } from "../app.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LEVELS = ["daily", "weekly", "monthly", "yearly"];

export function retentionText(r) {
  const parts = LEVELS.filter((k) => r && r[k]).map((k) => `${r[k]} ${k}`);
  return parts.length ? parts.join(", ") : "keep all";
}

// --- the editor (also used inline by the VMs page's "Protect" dialog) ----------------------

// Parse a schedule string into the builder's fields (the inverse of scheduleText).
function parseSchedule(text) {
  const t = (text || "daily@02:00").toLowerCase();
  let m = t.match(/^daily@(\d\d:\d\d)$/);
  if (m) return { kind: "daily", at: m[1] };
  m = t.match(/^weekly:([a-z,-]+)@(\d\d:\d\d)$/);
  if (m) return { kind: "weekly", days: m[1].split(","), at: m[2] };
  m = t.match(/^every:(\d+)h(?:@(\d\d:\d\d)-(\d\d:\d\d))?$/);
  if (m) return { kind: "every", hours: m[1], from: m[2] || "", to: m[3] || "" };
  return { kind: "daily", at: "02:00" };
}

function scheduleText(f) {
  if (f.kind === "weekly") return `weekly:${(f.days.length ? f.days : ["mon"]).join(",")}@${f.at}`;
  if (f.kind === "every") return `every:${f.hours}h${f.from && f.to ? `@${f.from}-${f.to}` : ""}`;
  return `daily@${f.at}`;
}

// The request body of POST /policies and /policies/preview; with `existing` (the PolicyDoc
// edited), of PATCH /policies/NAME: "any" clears the requirement, no_copy stops the copies.
export function policyBody(values, existing = null) {
  const retention = Object.fromEntries(LEVELS.map((k) => [k, Number(values[k] || 0)]));
  const body = { schedule: values.schedule, timezone: values.timezone, retention };
  if (values.name !== undefined && !existing) body.name = values.name;
  if (values.as_set !== undefined) body.as_set = values.as_set;
  if (existing) {
    if (values.require !== undefined) body.require = values.require || "any";
    if (values.copy_to) body.copy_to = values.copy_to;
    else if (values.copy_to === "" && existing.copy_to) body.no_copy = true;
  } else {
    if (values.require) body.require = values.require;
    if (values.copy_to) body.copy_to = values.copy_to;
  }
  return body;
}

// A policy form: returns {element, values(), onChange(fn)}; `policy` is a PolicyDoc to edit.
// With `vaults` (GET /vaults) it also offers copying each new point to another vault.
export function policyForm(policy, { nameEditable = true, vaults = null } = {}) {
  const s = parseSchedule(policy && policy.schedule);
  const r = (policy && policy.retention) || { daily: 7, weekly: 4, monthly: 12, yearly: 0 };
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._-]*",
    value: policy ? policy.name : "", disabled: !nameEditable, autocomplete: "off" });
  const kind = select([["daily", "Daily"], ["weekly", "Weekly"], ["every", "Every N hours"]], s.kind, { name: "kind" });
  const at = h("input", { type: "time", name: "at", value: s.at || "02:00", required: true });
  const days = h("fieldset", { class: "days" }, h("legend", {}, "Days"),
    DAYS.map((d) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "day", value: d,
      checked: (s.days || ["mon"]).includes(d) }), d)));
  const hours = select([["4", "4 h"], ["6", "6 h"], ["8", "8 h"], ["12", "12 h"]], s.hours || "4", { name: "hours" });
  const from = h("input", { type: "time", name: "from", value: s.from || "" });
  const to = h("input", { type: "time", name: "to", value: s.to || "" });
  const tz = h("input", { name: "timezone", value: (policy && policy.timezone) ||
    Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", required: true, list: "tz-list" });
  const counts = Object.fromEntries(LEVELS.map((k) => [k,
    h("input", { type: "number", name: k, min: "0", max: "1000", value: String(r[k] || 0), class: "num" })]));
  const text = h("code", { class: "schedule-text", "aria-live": "polite" });
  const asSet = h("input", { type: "checkbox", name: "as_set", checked: Boolean(policy && policy.as_set) });
  const require = select([["", "any"], ["file-system-consistent", "file-system-consistent"],
    ["application-consistent", "application-consistent"]], (policy && policy.require) || "", { name: "require" });
  const own = policy ? policy.vault : null;
  const copyTo = vaults ? select([["", "no copy"], ...vaults.filter((v) => v.name !== own).map((v) => [v.name, v.name])],
    policy && policy.copy_to ? policy.copy_to.vault : "", { name: "copy_to" }) : null;

  const atField = field("At", at), daysField = days;
  const everyFields = h("div", { class: "row" }, field("Every", hours), field("Window from", from, "optional"), field("to", to));
  const el = h("div", { class: "policy-form" },
    field("Name", name, "Letters, digits, dot, dash, underscore."),
    h("fieldset", {}, h("legend", {}, "Schedule"),
      h("div", { class: "row" }, field("Runs", kind), atField, field("Time zone", tz, "IANA name, e.g. Europe/Berlin")),
      daysField, everyFields, h("div", { class: "help" }, "Schedule: ", text)),
    h("fieldset", {}, h("legend", {}, "Retention (newest point of each bucket)"),
      h("div", { class: "row" }, LEVELS.map((k) => field(k[0].toUpperCase() + k.slice(1), counts[k])))),
    h("fieldset", {}, h("legend", {}, "Options"),
      h("div", { class: "row" }, field("Least consistency", require, "a VM that cannot give it fails its backup"),
        copyTo ? field("Copy each new point to", copyTo, "docs/copies.md: only missing chunks travel") : null),
      h("label", { class: "check" }, asSet, "Back up its VMs as one all-or-nothing set at each slot")),
    h("datalist", { id: "tz-list" }, ["UTC", "Europe/Berlin", "Europe/Rome", "Europe/London",
      "America/New_York", "America/Los_Angeles", "Asia/Tokyo"].map((z) => h("option", { value: z }))));

  const listeners = [];
  const fields = () => ({
    kind: kind.value, at: at.value, hours: hours.value, from: from.value, to: to.value,
    days: [...days.querySelectorAll("input:checked")].map((c) => c.value),
  });
  const sync = () => {
    const f = fields();
    atField.hidden = f.kind === "every";
    daysField.hidden = f.kind !== "weekly";
    everyFields.hidden = f.kind !== "every";
    text.textContent = scheduleText(f);
  };
  el.addEventListener("input", () => { sync(); listeners.forEach((fn) => fn()); });
  el.addEventListener("change", () => { sync(); listeners.forEach((fn) => fn()); });
  sync();
  return {
    element: el,
    name,
    values: () => ({ name: name.value.trim(), schedule: scheduleText(fields()), timezone: tz.value.trim(),
      ...Object.fromEntries(LEVELS.map((k) => [k, counts[k].value])),
      as_set: asSet.checked, require: require.value, ...(copyTo ? { copy_to: copyTo.value } : {}) }),
    onChange: (fn) => listeners.push(fn),
  };
}

// A time as the wall clock of the policy's zone shows it.
function inZone(iso, zone) {
  try {
    return `${new Date(iso).toLocaleString(undefined, { timeZone: zone, weekday: "short", month: "short",
      day: "2-digit", hour: "2-digit", minute: "2-digit" })}`;
  } catch {
    return when(iso);
  }
}

// The preview: next runs and the retention verdict on the vault's existing points.
function previewPanel(form, vmSelect) {
  const out = h("div", { class: "preview", "aria-live": "polite" });
  let timer = null, seq = 0;
  const run = async () => {
    const mine = ++seq;
    const body = policyBody(form.values());
    delete body.name;
    if (vmSelect && vmSelect.value) body.vm = vmSelect.value;
    try {
      const p = await api.post("/policies/preview", body);
      if (mine !== seq) return;
      const kept = (p.retention || []).filter((x) => x.kept).length;
      clear(out,
        h("h3", {}, `Next runs (${p.timezone || body.timezone})`),
        p.next_runs && p.next_runs.length
          ? h("ol", { class: "runs" }, p.next_runs.map((t) => h("li", {}, inZone(t, p.timezone || body.timezone))))
          : empty("No run scheduled"),
        h("h3", {}, "Retention on existing points ", (p.retention || []).length
          ? h("span", { class: "muted" }, `(${kept} kept of ${p.retention.length})`) : null),
        (p.retention || []).length === 0
          ? empty("No points to judge", vmSelect ? "Choose a VM with recovery points to see what would be kept." : null)
          : table([
            { title: "Created", class: "nowrap", cell: (x) => h("span", { title: String(x.point) }, short(x.created_at)) },
            { title: "Verdict", cell: (x) => badge(x.kept ? "kept" : "pruned", x.kept ? "ok" : "bad") },
            { title: "Why", cell: (x) => (x.reasons || []).join(", ") || "–" },
          ], p.retention, { caption: "Retention preview" }));
    } catch (err) {
      if (mine === seq) clear(out, errorBox(err, "No preview for these settings"));
    }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(run, 300); };
  form.onChange(schedule);
  if (vmSelect) vmSelect.addEventListener("change", schedule);
  run();
  return out;
}

// The policy's first VM (the preview judges its points), by uuid.
function firstVm(vms, policy) {
  const ref = policy && policy.vms[0];
  const vm = ref && vms.find((v) => v.uuid === ref || v.name === ref || `${v.host}/${v.name}` === ref);
  return vm ? vm.uuid : "";
}

async function editor(view, name) {
  const existing = name ? await api.get(`/policies/${encodeURIComponent(name)}`) : null;
  const editable = can("contributor");
  view.append(pageHeader(existing ? `Policy ${existing.name}` : "New policy",
    existing ? `Protects ${existing.vms.length} VM${existing.vms.length === 1 ? "" : "s"} · vault ${existing.vault}`
      : "A schedule and a retention; protect VMs with it from the VMs page.",
    h("a", { class: "btn btn-secondary", href: "#/policies" }, "Back to policies")));
  const form = policyForm(existing, { nameEditable: !existing, vaults: await api.vaults().catch(() => null) });
  const vms = await api.all("/vms").catch(() => []);
  const vmSelect = select([["", "— any VM —"], ...vms.filter((v) => v.state !== "discovered")
    .map((v) => [v.uuid, v.name])], firstVm(vms, existing), { name: "preview-vm" });
  const status = h("div", { "aria-live": "polite" });
  const formEl = h("form", { class: "card", id: "policy-form" }, form.element, status,
    editable ? h("div", { class: "form-actions" },
      existing ? button("Delete policy…", () => removePolicy(existing, status), { kind: "danger-outline", id: "delete-policy" }) : null,
      h("button", { type: "submit", class: "btn btn-primary" }, existing ? "Save changes" : "Create policy")) : null);
  if (!editable) form.element.querySelectorAll("input, select").forEach((i) => { i.disabled = true; });
  formEl.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(status);
    try {
      if (existing) {
        const held = await api.patch(`/policies/${encodeURIComponent(existing.name)}`, policyBody(form.values(), existing));
        if (held instanceof Held) { // 202: a lower retention waits for approval
          showHeld(status, held);
          return;
        }
      } else {
        await api.post("/policies", policyBody(form.values()));
      }
      go(`#/policies?saved=${encodeURIComponent(form.values().name || existing.name)}`);
    } catch (err) {
      clear(status, errorBox(err, "The policy was not saved"));
    }
  });
  view.append(h("div", { class: "grid-2 editor" }, formEl,
    h("section", { class: "card", "aria-labelledby": "pv-h" }, h("h2", { id: "pv-h" }, "Preview"),
      field("Judge the points of", vmSelect), previewPanel(form, vmSelect))));
}

async function removePolicy(policy, status) {
  const ok = await confirm(`Delete policy ${policy.name}?`, h("p", {},
    policy.vms.length ? `${policy.vms.length} VM(s) use it: the server refuses (POLICY_IN_USE) until they use another or their protection is stopped.`
      : "No VM uses it. Points it made stay."), { action: "Delete policy" });
  if (!ok) return;
  try {
    await api.del(`/policies/${encodeURIComponent(policy.name)}`);
    go(`#/policies?deleted=${encodeURIComponent(policy.name)}`);
  } catch (err) {
    clear(status, errorBox(err, "The policy was not deleted"));
  }
}

async function list(view, params) {
  const policies = await api.all("/policies");
  view.append(pageHeader("Policies", "When backups run and how long their points are kept.",
    can("contributor") ? h("a", { class: "btn btn-primary", href: "#/policies/new", id: "new-policy" }, "New policy") : null));
  if (params.get("saved")) view.append(h("div", { class: "notice", role: "status" }, `Policy ${params.get("saved")} saved.`));
  if (params.get("deleted")) view.append(h("div", { class: "notice", role: "status" }, `Policy ${params.get("deleted")} deleted.`));
  if (!policies.length) {
    view.append(h("div", { class: "card" }, empty("No policies yet",
      "A policy says when a VM is backed up and which points are kept.",
      can("contributor") ? h("a", { class: "btn btn-primary", href: "#/policies/new" }, "Create the first policy") : null)));
    return;
  }
  view.append(h("div", { class: "card" }, table([
    { title: "Name", cell: (p) => h("a", { href: `#/policies/${encodeURIComponent(p.name)}` }, p.name) },
    { title: "Schedule", cell: (p) => h("code", {}, p.schedule) },
    { title: "Time zone", cell: (p) => p.timezone },
    { title: "Retention", cell: (p) => retentionText(p.retention) },
    { title: "VMs", class: "num", cell: (p) => String(p.vms.length) },
    { title: "Copies to", cell: (p) => (p.copy_to ? p.copy_to.vault : "–") },
    { title: "Warnings", cell: (p) => (p.warnings.length ? badge(p.warnings.join("; "), "warn") : "–") },
  ], policies, { caption: "Policies", key: (p) => p.name })));
}

export async function render(view, route) {
  view.append(loading());
  const target = route.rest[0];
  view.replaceChildren();
  if (target === "new") return editor(view, null);
  if (target) return editor(view, target);
  return list(view, route.params);
}
