// A point's files (file-level restore, docs/files.md): `#/points/POINT/files?disk=V&path=P`
// (or `&find=PATTERN`). Pick a file system of the point (as GET /filesystems lists them), walk
// its directories (breadcrumbs; name, kind, size, mode, owner), find by name, and — an operator
// — download a file, or a selection or a directory as one tar (owners, modes and times kept).
// A reader browses and finds only. Paths are from the chosen file system's root (?disk=).
import { api, can } from "../api.js";
import { h, clear, table, empty, pageHeader, button, errorBox, when, bytes, field, select,
  loading } from "../ui.js";
import { go } from "../app.js";

const DEVICES = ["char", "block"]; // never extracted (docs/files.md): not selectable
const KIND_LETTER = { file: "-", dir: "d", symlink: "l", char: "c", block: "b", fifo: "p", socket: "s" };

// "drwxr-x---" from the kind and the octal permission bits ("0750"), as ls -l shows them.
export function modeText(kind, mode) {
  const bits = parseInt(mode, 8);
  const rwx = [6, 3, 0].map((shift) => {
    const b = (bits >> shift) & 7;
    return `${b & 4 ? "r" : "-"}${b & 2 ? "w" : "-"}${b & 1 ? "x" : "-"}`;
  }).join("");
  return `${KIND_LETTER[kind] || "?"}${rwx}`;
}

const parentOf = (path) => path.replace(/\/[^/]*$/, "") || "/";
const nameOf = (path) => path.split("/").filter(Boolean).pop() || "/";
const order = (a, b) => (a.kind === "dir") !== (b.kind === "dir") ? (a.kind === "dir" ? -1 : 1)
  : nameOf(a.path).localeCompare(nameOf(b.path));

export async function render(view, route) {
  const pointId = route.rest[0];
  const enc = encodeURIComponent(pointId);
  const point = await api.get(`/points/${enc}`);
  const volumes = await api.get(`/points/${enc}/filesystems`);
  const here = (disk, path, find) => {
    const q = new URLSearchParams({ disk });
    if (find) q.set("find", find);
    else if (path && path !== "/") q.set("path", path);
    return `#/points/${enc}/files?${q}`;
  };
  view.append(pageHeader(`Files of ${point.vm_name}`,
    `Point of ${when(point.created_at)} · ${point.consistency} · ${point.id}`,
    h("a", { href: `#/points?vm=${encodeURIComponent(point.vm)}`, class: "btn btn-secondary", id: "files-back" },
      "Back to the points")));
  const status = h("div", { class: "status-area", "aria-live": "polite" });
  if (!volumes.length) {
    view.append(status, h("div", { class: "card" }, empty("No file system found",
      "File-level restore reads ext2/3/4 file systems on whole disks and MBR or GPT partitions; restore the disks to reach other ones.")));
    return;
  }
  const volume = volumes.find((v) => v.volume === route.params.get("disk")) || volumes[0];
  const path = route.params.get("path") || "/";
  const pattern = route.params.get("find") || "";
  const picker = select(volumes.map((v) => [v.volume,
    `${v.volume} — ${v.mounted_on ? `mounted on ${v.mounted_on}` : "not mounted by the guest"} (${bytes(v.size)})`]),
  volume.volume, { name: "disk", id: "files-disk" });
  picker.addEventListener("change", () => go(here(picker.value, "/")));
  const findBox = h("input", { type: "search", name: "find", id: "files-find", value: pattern,
    placeholder: "*.conf or /etc/*/x", autocomplete: "off" });
  const findForm = h("form", { class: "filters", role: "search", id: "files-find-form", "aria-label": "Find files" },
    field("Find by name", findBox),
    h("button", { type: "submit", class: "btn btn-secondary", id: "files-find-submit" }, "Find"),
    pattern ? h("a", { href: here(volume.volume, path), class: "btn btn-link", id: "files-find-clear" }, "Clear") : null);
  findForm.addEventListener("submit", (e) => {
    e.preventDefault();
    go(here(volume.volume, "/", findBox.value.trim()));
  });
  view.append(h("div", { class: "card filters" }, field("File system", picker), findForm), status);
  const listing = h("div", { class: "card table-wrap", id: "files-listing" }, loading());
  view.append(breadcrumbs(volume, pattern ? null : path, (p) => here(volume.volume, p)), listing);
  let entries;
  try {
    entries = pattern
      ? await api.get(`/points/${enc}/files/find`, { pattern, disk: volume.volume })
      : await api.get(`/points/${enc}/files`, { path, disk: volume.volume });
  } catch (err) {
    clear(listing, errorBox(err, pattern ? `Finding ${pattern} was refused` : `Listing ${path} was refused`));
    return;
  }
  entries.sort(order);
  const where = pattern ? `${entries.length} match(es) of ${pattern} in ${volume.volume}`
    : `${volume.volume}:${path}`;
  if (!entries.length) {
    clear(listing, empty(pattern ? "Nothing matches" : "An empty directory",
      pattern ? "A pattern without '/' matches names (*.log); with '/' the whole path." : null));
    return;
  }
  const get = downloader(enc, volume.volume, status);
  const chosen = new Map(); // path -> entry
  const hint = "Tick files and folders to download them as one .tar";
  const selected = h("span", { class: "muted", id: "files-selected" }, hint);
  const getSelected = button("Download selected", () => get([...chosen.values()]), { id: "files-download-selected", disabled: true });
  const tick = (entry, box) => {
    if (box.checked) chosen.set(entry.path, entry); else chosen.delete(entry.path);
    selected.textContent = chosen.size ? `${chosen.size} selected` : hint;
    getSelected.disabled = chosen.size === 0;
  };
  const operator = can("operator");
  const name = (e) => {
    if (e.kind === "dir") {
      return h("a", { href: here(volume.volume, e.path), class: "file-dir" }, pattern ? e.path : `${nameOf(e.path)}/`);
    }
    return h("span", { class: `file-${e.kind}` }, pattern ? e.path : nameOf(e.path),
      pattern ? [" ", h("a", { href: here(volume.volume, parentOf(e.path)), class: "muted",
        "aria-label": `Open the folder of ${e.path}` }, "(folder)")] : null);
  };
  clear(listing,
    operator ? h("div", { class: "toolbar" }, selected, getSelected) : null,
    table([
      operator ? { title: h("span", { class: "visually-hidden" }, "Select"), cell: (e) => (!DEVICES.includes(e.kind)
        ? h("input", { type: "checkbox", name: "select", "aria-label": `Select ${e.path}`,
          onchange: (ev) => tick(e, ev.target) }) : null) } : null,
      { title: pattern ? "Path" : "Name", cell: name },
      { title: "Kind", cell: (e) => e.kind },
      { title: "Size", class: "num", cell: (e) => (e.kind === "file" ? h("span", { title: `${e.size} bytes` }, bytes(e.size)) : "–") },
      { title: "Mode", class: "nowrap", cell: (e) => h("code", { title: e.mode }, modeText(e.kind, e.mode)) },
      { title: "Owner (uid:gid)", class: "num", cell: (e) => `${e.uid}:${e.gid}` },
      operator ? { title: h("span", { class: "visually-hidden" }, "Actions"), cell: (e) => (e.kind === "file" || e.kind === "dir"
        ? button(e.kind === "dir" ? "Download (.tar)" : "Download", () => get([e]),
          { class: "btn btn-secondary btn-small", "aria-label": `Download ${e.path}` }) : null) } : null,
    ].filter(Boolean), entries, { caption: `Files: ${where}`, key: (e) => e.path }));
}

// Breadcrumbs: the file system's root, then each directory of `path` (null: a search).
function breadcrumbs(volume, path, link) {
  const parts = path ? path.split("/").filter(Boolean) : [];
  const crumbs = [[`${volume.volume}${volume.mounted_on ? ` (${volume.mounted_on})` : ""}`, "/"],
    ...parts.map((p, i) => [p, `/${parts.slice(0, i + 1).join("/")}`])];
  return h("nav", { class: "breadcrumbs", "aria-label": "Folder", id: "files-crumbs" },
    h("ol", {}, crumbs.map(([text, p], i) => h("li", {}, i === crumbs.length - 1 && path
      ? h("span", { "aria-current": "page" }, text) : h("a", { href: link(p) }, text)))));
}

// Download one regular file (GET /files/content), or anything else — several entries, a
// directory, a symlink, a FIFO — as a tar (GET /files/archive): the bytes through fetch (with
// the token), saved under the server's name.
function downloader(enc, disk, status) {
  return async (entries) => {
    const paths = entries.map((e) => e.path);
    const one = entries.length === 1 && entries[0].kind === "file";
    const busy = h("div", { class: "notice", role: "status" }, `Downloading ${paths.length === 1 ? paths[0] : `${paths.length} paths`}…`);
    clear(status, busy);
    try {
      const got = one ? await api.blob(`/points/${enc}/files/content`, { path: paths[0], disk })
        : await api.blob(`/points/${enc}/files/archive`, { path: paths, disk });
      saveBlob(got.blob, got.name);
      clear(status, h("div", { class: "notice", role: "status", id: "files-downloaded" },
        `Downloaded ${got.name} (${bytes(got.blob.size)}).`));
    } catch (err) {
      clear(status, errorBox(err, "The download was refused"));
    }
  };
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
