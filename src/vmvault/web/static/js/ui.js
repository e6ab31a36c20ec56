// Small DOM helpers shared by the pages. Text always goes in as text nodes (never HTML), so
// nothing the server returns can inject markup.
import { Held } from "./api.js";

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") Object.assign(el.style, v); // an object: the page's CSP allows no style attribute
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// --- formats ------------------------------------------------------------------------------

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });
}

// Compact, for table cells: "Dec 02, 08:27".
export function short(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
}

export function ago(iso) {
  if (!iso) return "never";
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// --- pieces -------------------------------------------------------------------------------

const TONES = {
  completed: "ok", protected: "ok", "application-consistent": "ok", running: "ok",
  "completed-with-warnings": "warn", "file-system-consistent": "info", registered: "info",
  "in-progress": "active", queued: "muted", cancelling: "warn", cancelled: "muted",
  failed: "bad", "crash-consistent": "warn", "protection-stopped": "muted",
  discovered: "muted", "shut-off": "muted", paused: "warn",
};

export function badge(text, tone) {
  return h("span", { class: `badge badge-${tone || TONES[text] || "muted"}` }, text);
}

export function progress(percent, label) {
  const p = percent === null || percent === undefined ? null : Math.max(0, Math.min(100, percent));
  return h("div", { class: "progress", role: "progressbar", "aria-label": label || "progress",
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": p === null ? null : p.toFixed(0) },
  h("div", { class: "progress-bar", style: { width: `${p === null ? 0 : p}%` } }),
  h("span", { class: "progress-text" }, p === null ? "–" : `${p.toFixed(0)} %`));
}

// An error as the API gave it: code, message and remedy.
export function errorBox(err, title) {
  return h("div", { class: "error-box", role: "alert" },
    h("div", { class: "error-title" }, title || "The request was refused"),
    h("div", {}, h("code", { class: "error-code" }, err.code || "ERROR"), " ", err.message),
    err.remedy ? h("div", { class: "error-remedy" }, h("strong", {}, "Remedy: "), err.remedy) : null);
}

export function empty(title, text, action) {
  return h("div", { class: "empty" }, h("div", { class: "empty-title" }, title),
    text ? h("p", {}, text) : null, action || null);
}

export function loading() {
  return h("div", { class: "loading", role: "status" }, "Loading…");
}

// A table: columns are [{title, cell(row) -> node|text, class?}]; rows keyed by `key(row)`.
export function table(columns, rows, { key, caption, rowClass } = {}) {
  return h("table", { class: "table" },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.title)))),
    h("tbody", {}, rows.map((r) => h("tr", {
      dataset: key ? { key: String(key(r)) } : undefined, class: rowClass ? rowClass(r) : null,
    }, columns.map((c) => h("td", { class: c.class }, c.cell(r)))))));
}

export function pageHeader(title, subtitle, ...actions) {
  return h("div", { class: "page-header" },
    h("div", {}, h("h1", { id: "page-title", tabindex: "-1" }, title),
      subtitle ? h("p", { class: "subtitle" }, subtitle) : null),
    h("div", { class: "actions" }, actions));
}

export function button(text, onclick, { kind = "secondary", ...attrs } = {}) {
  return h("button", { type: "button", class: `btn btn-${kind}`, onclick, ...attrs }, text);
}

// A notice at the top of the page (e.g. "3 jobs queued"), with links.
export function notice(where, ...content) {
  const box = h("div", { class: "notice", role: "status" }, content,
    button("Dismiss", () => box.remove(), { kind: "link", "aria-label": "Dismiss notice" }));
  where.prepend(box);
  return box;
}

export function jobsQueued(jobs, what) {
  const list = Array.isArray(jobs) ? jobs : [jobs];
  return [`${what}: ${list.length} job${list.length === 1 ? "" : "s"} queued `,
    list.slice(0, 8).map((j, i) => [i ? ", " : "", h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`)]),
    list.length > 8 ? "…" : "", " — ", h("a", { href: "#/jobs?since=1h" }, "follow them on the Jobs page")];
}

// A modal dialog (<dialog>): `build(close)` returns its body; resolves when closed.
export function dialog(title, build) {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title" });
    const close = (value) => { dlg.close(); dlg.remove(); resolve(value); };
    dlg.append(h("div", { class: "dialog-head" }, h("h2", { id: "dialog-title" }, title),
      button("×", () => close(null), { kind: "link", "aria-label": "Close", class: "btn btn-link close" })),
    build(close));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); close(null); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function field(label, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    help ? h("div", { class: "help" }, help) : null);
}

export function select(options, value, attrs) {
  return h("select", attrs || {}, options.map(([v, text]) =>
    h("option", { value: v, selected: String(v) === String(value ?? "") }, text)));
}

// Ask before an action that changes or removes something: resolves true when confirmed.
// `text` may be nodes; with `acknowledge` a checkbox must be ticked first (what is permanent).
export function confirm(title, text, { action = "Confirm", danger = true, acknowledge = null } = {}) {
  return dialog(title, (close) => {
    const box = acknowledge ? h("input", { type: "checkbox", id: "confirm-ack", name: "acknowledge" }) : null;
    const ok = h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}`,
      id: "confirm-submit", disabled: Boolean(box) }, action);
    if (box) box.addEventListener("change", () => { ok.disabled = !box.checked; });
    const form = h("form", { class: "dialog-body", id: "confirm-form" },
      h("div", {}, text),
      box ? h("label", { class: "check ack" }, box, acknowledge) : null,
      h("div", { class: "form-actions" }, button("Cancel", () => close(false), { id: "confirm-cancel" }), ok));
    form.addEventListener("submit", (e) => { e.preventDefault(); close(true); });
    setTimeout(() => (box || ok).focus(), 0);
    return form;
  }).then((answer) => answer === true);
}

// A call held for approval (api.js `Held`): a notice of its own, neither success nor error,
// with a link to the Approvals page where an admin decides it.
export function showHeld(where, held, what) {
  const box = notice(where || pageStatus(), h("strong", {}, "Held for approval: ",
    h("a", { href: "#/approvals", class: "held-link" }, `request ${held.id}`)),
  ` — ${what ? `${what}: ` : ""}${held.summary}. `,
  held.due_at ? `It runs at ${when(held.due_at)} unless an admin rejects it first.`
    : `An admin other than ${held.requested_by} approves or rejects it${held.expires_at ? ` before ${when(held.expires_at)}` : ""}.`);
  box.classList.add("notice-held");
  return box;
}

// The current page's status area (where its notices go), else the page itself.
function pageStatus() {
  return document.querySelector("#main .page .status-area") || document.querySelector("#main .page") || document.body;
}

// Run an action; the job(s) it answers become a notice with links, a refusal an error box, a
// call held for approval its own notice (then it answers null: nothing was done yet).
export async function attempt(status, what, run) {
  try {
    const result = await run();
    if (result instanceof Held) {
      showHeld(status, result, what);
      return null;
    }
    const isJob = (j) => j && typeof j.id === "number" && typeof j.type === "string" && typeof j.state === "string";
    if (Array.isArray(result) ? result.length && result.every(isJob) : isJob(result)) {
      notice(status, ...jobsQueued(result, what));
    }
    return result;
  } catch (err) {
    status.prepend(errorBox(err, `${what} was refused`));
    return null;
  }
}

// A form in a dialog: `fields` are nodes; `submit(values)` runs the request (errors shown in
// the dialog, which stays open); resolves with what it returned, or null when cancelled or
// held for approval (then the page's status area says so: `showHeld`).
export function formDialog(title, id, fields, submit, { action = "Save", danger = false } = {}) {
  return dialog(title, (close) => {
    const err = h("div", { "aria-live": "polite" });
    const form = h("form", { class: "dialog-body", id }, fields, err,
      h("div", { class: "form-actions" }, button("Cancel", () => close(null)),
        h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}`, id: `${id}-submit` }, action)));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clear(err);
      try {
        const result = await submit();
        if (result instanceof Held) {
          close(null);
          showHeld(null, result, title);
          return;
        }
        close(result);
      } catch (error) {
        clear(err, errorBox(error, `${title} was refused`));
      }
    });
    setTimeout(() => { const first = form.querySelector("input, select, textarea"); if (first) first.focus(); }, 0);
    return form;
  });
}

// Tabs as links (the URL's fragment keeps the tab): [[value, label, count?]].
export function tabs(label, current, items, href) {
  return h("nav", { class: "tabs", "aria-label": label },
    items.map(([t, text, count]) => h("a", { href: href(t), id: `tab-${t}`,
      "aria-current": t === current ? "page" : null, class: t === current ? "tab active" : "tab" },
    text, count === undefined ? null : [" ", h("span", { class: "count", "aria-label": `(${count})` }, String(count))])));
}
