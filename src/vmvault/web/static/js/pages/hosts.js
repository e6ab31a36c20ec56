// Hosts: the libvirt connections of each location (a vault discovers the VMs of its location's
// hosts) — add one, mark the VMs a cluster manager owns, remove one.
import { api, can } from "../api.js";
import { h, table, empty, pageHeader, button, field, confirm, formDialog, notice, short, attempt } from "../ui.js";
import { go } from "../app.js";

export async function render(view, route) {
  const [hosts, vaults] = await Promise.all([api.all("/hosts"), api.vaults().catch(() => [])]);
  const status = h("div", { class: "status-area" });
  view.append(pageHeader("Hosts", "The libvirt hosts of each location; a vault backs up the VMs of its location's hosts.",
    can("contributor") ? button("Add host", () => add(vaults), { kind: "primary", id: "add-host" }) : null), status);
  const done = route.params.get("done");
  if (done) notice(status, done);
  if (!hosts.length) {
    view.append(h("div", { class: "card" }, empty("No hosts yet",
      "Creating a vault adds qemu:///system to its location; add remote hosts (qemu+ssh://HOST/system) here.")));
    return;
  }
  const actions = (x) => (can("contributor") ? h("div", { class: "row-actions" },
    button("Cluster-managed…", () => update(x), { class: "btn btn-secondary btn-small", "aria-label": `Update host ${x.uri}` }),
    button("Remove…", () => remove(x, status), { class: "btn btn-danger-outline btn-small", "aria-label": `Remove host ${x.uri}` })) : null);
  view.append(h("div", { class: "card table-wrap" }, table([
    { title: "URI", class: "nowrap", cell: (x) => h("code", {}, x.uri) },
    { title: "Location", cell: (x) => x.location },
    { title: "Host name", cell: (x) => x.hostname || "–" },
    { title: "Cluster-managed VMs", cell: (x) => x.cluster_managed.join(", ") || "–" },
    { title: "Added", class: "nowrap", cell: (x) => short(x.created_at) },
    { title: h("span", { class: "visually-hidden" }, "Actions"), cell: actions },
  ], hosts, { caption: "Hosts", key: (x) => x.uri })));
}

const path = (uri) => `/hosts/${encodeURIComponent(uri)}`;

async function add(vaults) {
  const uri = h("input", { name: "uri", required: true, autocomplete: "off", placeholder: "qemu+ssh://host2/system" });
  const location = h("input", { name: "location", required: true, autocomplete: "off", list: "host-locations",
    value: vaults.length ? vaults[0].location : "local" });
  const check = h("input", { type: "checkbox", name: "check", checked: true });
  const added = await formDialog("Add a host", "host-form", [
    field("libvirt URI", uri, "A URI that makes libvirt run a local command is refused."),
    field("Location", location, "A vault serves the VMs of its own location."),
    h("datalist", { id: "host-locations" }, [...new Set(vaults.map((v) => v.location))].map((l) => h("option", { value: l }))),
    h("label", { class: "check" }, check, "Connect to it first (it must answer)"),
  ], () => api.post("/hosts", { uri: uri.value.trim(), location: location.value.trim(), check: check.checked }), { action: "Add host" });
  if (added) go(`#/hosts?done=${encodeURIComponent(`Host ${added.uri} added to location ${added.location}.`)}`);
}

// The VMs a cluster manager owns: never paused, shut off or replaced by vmvault.
async function update(host) {
  const boxes = host.cluster_managed.map((vm) => h("input", { type: "checkbox", name: "keep", value: vm, checked: true }));
  const more = h("input", { name: "cluster_managed", autocomplete: "off", placeholder: "names or uuids, comma-separated" });
  const changed = await formDialog(`Cluster-managed VMs of ${host.uri}`, "host-update-form", [
    h("p", {}, "vmvault never pauses, shuts off or replaces a VM a cluster manager owns."),
    boxes.length ? h("fieldset", {}, h("legend", {}, "Marked (untick to unmark)"),
      boxes.map((b) => h("label", { class: "check" }, b, b.value))) : null,
    field("Mark", more),
  ], () => api.patch(path(host.uri), {
    cluster_managed: more.value.split(",").map((x) => x.trim()).filter(Boolean),
    not_cluster_managed: boxes.filter((b) => !b.checked).map((b) => b.value),
  }), { action: "Save" });
  if (changed) go(`#/hosts?done=${encodeURIComponent(`Host ${host.uri}: ${changed.cluster_managed.length} cluster-managed VM(s).`)}`);
}

async function remove(host, status) {
  const ok = await confirm(`Remove host ${host.uri}?`,
    h("p", {}, "vmvault forgets the host; its VMs' recovery points stay in the vault."), { action: "Remove host" });
  if (!ok) return;
  const gone = await attempt(status, `Removing ${host.uri}`, () => api.del(path(host.uri)));
  if (gone) go(`#/hosts?done=${encodeURIComponent(`Host ${host.uri} removed.`)}`);
}
