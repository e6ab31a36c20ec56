// Error codes: every error a user can meet, with its message and remedy (GET /errors, as
// `vmvault errors`); a filter on code, message and remedy (#/errors?q=TEXT).
import { api } from "../api.js";
import { h, clear, table, empty, pageHeader, field, badge } from "../ui.js";

export async function render(view, route) {
  const errors = await api.get("/errors");
  const q = h("input", { type: "search", name: "q", id: "errors-filter", value: route.params.get("q") || "",
    placeholder: "a code or a word", autocomplete: "off" });
  const holder = h("div", { class: "card table-wrap", id: "errors-list" });
  view.append(pageHeader("Error codes", `Every error vmvault reports: a stable code, what happened and the remedy (${errors.length} codes).`),
    h("div", { class: "card filters", role: "search" }, field("Filter", q)), holder);
  const draw = () => {
    const words = q.value.trim().toLowerCase();
    const shown = errors.filter((e) => !words || `${e.code} ${e.message} ${e.remedy}`.toLowerCase().includes(words));
    clear(holder, shown.length ? table([
      { title: "Code", class: "nowrap", cell: (e) => h("code", {}, e.code) },
      { title: "Kind", cell: (e) => badge(e.kind, e.kind === "usage" ? "info" : "bad") },
      { title: "Message", cell: (e) => e.message },
      { title: "Remedy", cell: (e) => e.remedy },
    ], shown, { caption: "Error codes", key: (e) => e.code }) : empty("No code matches", "Try another word."));
  };
  q.addEventListener("input", () => {
    draw();
    history.replaceState(null, "", `#/errors${q.value.trim() ? `?q=${encodeURIComponent(q.value.trim())}` : ""}`);
  });
  draw();
}
