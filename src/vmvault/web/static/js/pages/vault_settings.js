// A vault's settings (PATCH /vaults/NAME): soft delete (docs/soft-delete.md), approvals
// (docs/approvals.md) and immutability (docs/immutability.md; in a request of its own). What is
// permanent — soft delete "always", immutability locked — asks a second time, with a box to
// tick. Weakening soft delete or the approvals where approvals are on is held (202): the
// dialog closes and the page says "held for approval" (ui.js formDialog).
import { api } from "../api.js";
import { h, field, select, confirm, formDialog } from "../ui.js";
import { go } from "../app.js";

export const IMMUTABLE_TONE = { off: "muted", on: "ok", locked: "info" };
export const APPROVALS_TONE = { off: "muted", delay: "ok", "second-admin": "ok" };

const patch = (v, body) => api.patch(`/vaults/${encodeURIComponent(v.name)}`, body);
const saved = (v) => go(`#/vaults?saved=${encodeURIComponent(v.name)}`);

export async function softDelete(v) {
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
    return patch(v, body);
  }, { action: "Save" });
  if (changed) saved(v);
}

// Approvals: off, a delay anyone may reject during, or a second admin's approval.
export async function approvals(v) {
  const mode = select([["off", "off: protected operations run at once"],
    ["delay", "delay: held for some hours, then run unless an admin rejects them"],
    ["second-admin", "second admin: held until an admin other than the requester approves"]],
  v.approvals, { name: "approvals", id: "approvals-mode" });
  const delay = h("input", { type: "number", name: "approval_delay_hours", min: "1", max: "720", value: String(v.approval_delay_hours), id: "approval-delay" });
  const expiry = h("input", { type: "number", name: "approval_expiry_hours", min: "1", max: "720", value: String(v.approval_expiry_hours), id: "approval-expiry" });
  const delayField = field("Delay (hours)", delay, "1 … 720: how long a request waits before it runs by itself.");
  const expiryField = field("Expiry (hours)", expiry, "1 … 720: an undecided request lapses after this.");
  const sync = () => { delayField.hidden = mode.value !== "delay"; expiryField.hidden = mode.value !== "second-admin"; };
  mode.addEventListener("change", sync);
  sync();
  const changed = await formDialog(`Approvals of ${v.name}`, "approvals-form", [
    h("p", {}, "Deleting the vault, purging soft-deleted points, turning soft delete off or shortening it, lowering a retention, "
      + "stopping protection with its data deleted and weakening this setting wait for approval (docs/approvals.md)."),
    field("Approvals", mode), h("div", { class: "row" }, delayField, expiryField),
    v.approvals !== "off" ? h("div", { class: "warn-box", role: "note" },
      "A weaker setting (off < delay < second admin, or a shorter delay) is itself held for approval under the current one.") : null,
  ], () => {
    const body = {};
    if (mode.value !== v.approvals) body.approvals = mode.value;
    if (mode.value === "delay" && Number(delay.value) !== v.approval_delay_hours) body.approval_delay_hours = Number(delay.value);
    if (mode.value === "second-admin" && Number(expiry.value) !== v.approval_expiry_hours) body.approval_expiry_hours = Number(expiry.value);
    return Object.keys(body).length ? patch(v, body) : v;
  }, { action: "Save" });
  if (changed) saved(v);
}

// Immutability: off → on → locked (for good). Turning it on checks the storage first
// (IMMUTABLE_UNSUPPORTED); a locked vault's setting never changes again (IMMUTABLE_LOCKED).
export async function immutability(v) {
  const mode = select([["off", "off: points may be deleted at any time"],
    ["on", "on: no point leaves before its retain-until; can be turned off"],
    ["locked", "locked: on, for good (permanent)"]], v.immutable, { name: "immutable", id: "immutable-mode" });
  const warn = h("div", { class: "warn-box", role: "note", hidden: true },
    "Locked is permanent: nobody can turn immutability off for this vault again, through any interface, and its points stay until their retain-until dates.");
  mode.addEventListener("change", () => { warn.hidden = mode.value !== "locked"; });
  const changed = await formDialog(`Immutability of ${v.name}`, "immutable-form", [
    h("p", {}, "An immutable vault keeps every point until its retain-until date: no delete, retention, purge or GC removes it, "
      + "and retention and soft delete can only grow. The storage enforces it too (a local directory's immutable attribute, S3 Object Lock)."),
    field("Immutability", mode), warn,
  ], async () => {
    if (mode.value === v.immutable) return v;
    if (mode.value === "locked" && !(await confirm(`Lock ${v.name} immutable?`,
      h("p", {}, "This cannot be undone: the vault stays immutable for good, and no point leaves it before its retain-until date."),
      { action: "Lock for good", acknowledge: "I understand this is permanent" }))) {
      return null;
    }
    return patch(v, { immutable: mode.value !== "off", lock: mode.value === "locked" });
  }, { action: "Save" });
  if (changed) saved(v);
}
