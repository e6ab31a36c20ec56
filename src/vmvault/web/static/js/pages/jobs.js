// Jobs: the list (filters type, state, VM, since; pages of 25 counted by X-Total-Count) with
// live progress (polled every 2 s while a job is active, rows updated in place), cancel, and
// the detail of one job with its log, error and remedy.
import { api, can } from "../api.js";
import { h, clear, table, empty, pageHeader, button, badge, errorBox, progress, when, short, duration,
  bytes, select, field } from "../ui.js";
import { go } from "../app.js";

const TYPES = ["discovery", "register", "configure-protection", "backup", "backup-set", "restore",
  "verify", "prune", "gc", "copy", "stop-protection", "unregister"];
const STATES = ["queued", "in-progress", "completed", "completed-with-warnings", "failed", "cancelling", "cancelled"];
const SINCE = [["", "Any time"], ["1h", "Last hour"], ["24h", "Last 24 h"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]];
const PAGE = 25;
const POLL_MS = 2000;
const ACTIVE = new Set(["queued", "in-progress", "cancelling"]);

function progressCell(j) {
  if (j.state === "in-progress" || j.state === "cancelling") return progress(j.percent, `job ${j.id} progress`);
  if (j.bytes_total) return `${bytes(j.bytes_done)} of ${bytes(j.bytes_total)}`;
  return "–";
}

async function cancel(job, where) {
  try {
    await api.post(`/jobs/${job.id}/cancel`);
  } catch (err) {
    where.prepend(errorBox(err, `Job ${job.id} was not cancelled`));
  }
}

function cancelButton(j, where) {
  if (!can("operator") || !ACTIVE.has(j.state) || j.state === "cancelling") return null;
  return button("Cancel", (e) => { e.target.disabled = true; cancel(j, where); },
    { kind: "danger-outline", "aria-label": `Cancel job ${j.id}`, class: "btn btn-danger-outline btn-small" });
}

// --- the list ----------------------------------------------------------------------------------

async function list(view, route) {
  const p = route.params;
  const filters = { type: p.get("type") || "", state: p.get("state") || "", vm: p.get("vm") || "",
    since: p.get("since") || "", vault: p.get("vault") || "" };
  const offset = Math.max(0, Number(p.get("offset") || 0));
  view.append(pageHeader("Jobs", filters.vault ? `The jobs of vault ${filters.vault}.`
    : "Every operation is a job: its state, progress, error and remedy."));

  const typeSel = select([["", "All types"], ...TYPES.map((t) => [t, t])], filters.type, { name: "type" });
  const stateSel = select([["", "All states"], ...STATES.map((s) => [s, s])], filters.state, { name: "state" });
  const vm = h("input", { name: "vm", value: filters.vm, placeholder: "name or uuid", autocomplete: "off" });
  const since = select(SINCE, filters.since, { name: "since" });
  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter jobs" },
    field("Type", typeSel), field("State", stateSel), field("VM", vm), field("Created", since),
    h("div", { class: "filter-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Apply"),
      h("a", { class: "btn btn-secondary", href: "#/jobs" }, "Clear")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (filters.vault) q.set("vault", filters.vault);  // from the dashboard's links
    for (const [k, el] of [["type", typeSel], ["state", stateSel], ["vm", vm], ["since", since]]) {
      if (el.value.trim()) q.set(k, el.value.trim());
    }
    go(`#/jobs${q.toString() ? `?${q}` : ""}`);
  });
  view.append(form);
  const status = h("div", { class: "status-area" });
  const holder = h("div", { class: "card", id: "jobs-list" });
  view.append(status, holder);

  const params = { ...filters, limit: PAGE, offset };
  const link = (off) => {
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    if (off) q.set("offset", off);
    return `#/jobs?${q}`;
  };
  let rows = [];
  const columns = [
    { title: "Job", cell: (j) => h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`) },
    { title: "Type", class: "nowrap", cell: (j) => j.type },
    { title: "VM", class: "nowrap", cell: (j) => (j.vm ? h("a", { href: `#/points?vm=${encodeURIComponent(j.vm)}` }, j.vm_name || j.vm) : "–") },
    { title: "State", class: "state", cell: (j) => badge(j.state) },
    { title: "Progress", class: "progress-cell", cell: progressCell },
    { title: "Created", class: "nowrap", cell: (j) => h("span", { title: when(j.created_at) }, short(j.created_at)) },
    { title: "Duration", class: "duration", cell: (j) => duration(j.duration_s) },
    { title: "Error", class: "error", cell: (j) => (j.error_code ? h("code", { title: j.message || "" }, j.error_code) : "–") },
    { title: h("span", { class: "visually-hidden" }, "Actions"), class: "actions-cell", cell: (j) => cancelButton(j, status) },
  ];

  const draw = (doc, total) => {
    rows = doc;
    if (!doc.length) {
      clear(holder, empty("No jobs match", "Change the filters, or clear them to see every job."));
      return;
    }
    const last = Math.min(offset + doc.length, total ?? offset + doc.length);
    clear(holder, table(columns, doc, { caption: "Jobs", key: (j) => j.id }),
      h("nav", { class: "pager", "aria-label": "Pages of jobs" },
        h("span", { id: "jobs-range" }, `${offset + 1}–${last} of ${total ?? "?"}`),
        offset > 0 ? h("a", { class: "btn btn-secondary", href: link(Math.max(0, offset - PAGE)) }, "‹ Newer") : null,
        total !== null && last < total ? h("a", { class: "btn btn-secondary", href: link(offset + PAGE) }, "Older ›") : null));
  };
  // Same jobs as on screen: update their cells in place (focus and scrolling stay put).
  const patch = (doc) => {
    const tbody = holder.querySelector("tbody");
    if (!tbody || doc.length !== rows.length || doc.some((j, i) => j.id !== rows[i].id)) return false;
    doc.forEach((j, i) => {
      const tr = tbody.children[i];
      const old = rows[i];
      if (JSON.stringify(old) === JSON.stringify(j)) return;
      columns.forEach((c, n) => {
        if (n === 8 && old.state === j.state) return; // keep the cancel button (and its focus)
        clear(tr.children[n], c.cell(j));
      });
    });
    rows = doc;
    return true;
  };
  const { doc, total } = await api.page("/jobs", params);
  draw(doc, total);
  let timer = null, stopped = false;
  const poll = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const next = await api.page("/jobs", params);
        if (stopped) return;
        if (!patch(next.doc)) draw(next.doc, next.total);
      } catch (err) { /* keep the last good list; a 401 signs out */ }
    }
    timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  return () => { stopped = true; clearTimeout(timer); };
}

// --- one job -------------------------------------------------------------------------------

async function detail(view, id) {
  const holder = h("div");
  view.append(holder);
  let stopped = false, timer = null;
  const draw = (j) => {
    const status = h("div", { class: "status-area" });
    clear(holder,
      pageHeader(`Job #${j.id}`, `${j.type}${j.vm_name ? ` of ${j.vm_name}` : ""} · vault ${j.vault}`,
        cancelButton(j, status), h("a", { class: "btn btn-secondary", href: "#/jobs" }, "All jobs")),
      status,
      h("section", { class: "card job-summary", "aria-labelledby": "js-h" },
        h("h2", { id: "js-h", class: "visually-hidden" }, "Summary"),
        h("dl", { class: "facts" },
          h("dt", {}, "State"), h("dd", { id: "job-state" }, badge(j.state)),
          h("dt", {}, "Progress"), h("dd", {}, ACTIVE.has(j.state) || j.percent !== null
            ? progress(j.state === "completed" ? 100 : j.percent, "job progress") : "–",
          j.bytes_total ? h("span", { class: "muted" }, ` ${bytes(j.bytes_done)} of ${bytes(j.bytes_total)}`) : null),
          h("dt", {}, "VM"), h("dd", {}, j.vm ? h("a", { href: `#/points?vm=${encodeURIComponent(j.vm)}` }, j.vm_name || j.vm) : "–"),
          h("dt", {}, "Created"), h("dd", {}, when(j.created_at)),
          h("dt", {}, "Started"), h("dd", {}, when(j.started_at)),
          h("dt", {}, "Ended"), h("dd", {}, when(j.ended_at)),
          h("dt", {}, "Duration"), h("dd", {}, duration(j.duration_s)),
          h("dt", {}, "Origin"), h("dd", {}, j.origin || "–"),
          j.parent ? [h("dt", {}, "Part of"), h("dd", {}, h("a", { href: `#/jobs/${j.parent}` }, `set job #${j.parent}`))] : null)),
      j.error_code ? errorBox({ code: j.error_code, message: j.message, remedy: j.remedy }, "The job failed")
        : j.message ? h("div", { class: "notice" }, j.message) : null,
      j.warnings && j.warnings.length ? h("section", { class: "card warn-card", "aria-labelledby": "jw-h" },
        h("h2", { id: "jw-h" }, "Warnings"), h("ul", {}, j.warnings.map((w) => h("li", {}, w)))) : null,
      h("section", { class: "card", "aria-labelledby": "jl-h" }, h("h2", { id: "jl-h" }, "Log"),
        j.log && j.log.length ? h("pre", { class: "log", tabindex: "0", "aria-label": "Job log" }, j.log.join("\n"))
          : empty("No log lines yet")));
  };
  const load = async () => {
    const j = await api.get(`/jobs/${encodeURIComponent(id)}`);
    if (stopped) return;
    const focusInside = holder.contains(document.activeElement) && document.activeElement !== document.body;
    draw(j);
    if (focusInside) holder.querySelector("h1").focus({ preventScroll: true });
    if (ACTIVE.has(j.state)) timer = setTimeout(() => load().catch(() => {}), POLL_MS);
  };
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}

export async function render(view, route) {
  if (route.rest[0]) return detail(view, route.rest[0]);
  return list(view, route);
}
