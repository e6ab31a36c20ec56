// The console's shell: sign-in, the hash router (#/page?query) and the navigation.
import { api, ApiError, can, session, whenUnauthorized, whenVaultNotChosen } from "./api.js";
import { h, clear, errorBox, field, button, select } from "./ui.js";
import * as dashboard from "./pages/dashboard.js";
import * as vms from "./pages/vms.js";
import * as policies from "./pages/policies.js";
import * as jobs from "./pages/jobs.js";
import * as points from "./pages/points.js";
import * as vaultsPage from "./pages/vaults.js";
import * as hosts from "./pages/hosts.js";
import * as notifications from "./pages/notifications.js";
import * as tokens from "./pages/tokens.js";
import * as audit from "./pages/audit.js";
import * as errors from "./pages/errors.js";
import * as approvals from "./pages/approvals.js";

// The pages by their fragment (#/NAME); the navigation is index.html's (one link each, with
// the least role that uses the page in data-role).
const PAGES = {
  dashboard,
  vms,
  policies,
  jobs,
  points,
  vaults: vaultsPage,
  hosts,
  notifications,
  tokens,
  audit,
  errors,
  approvals,
};
const main = document.getElementById("main");
let leave = null; // the current page's clean-up (stops its polling)
let vaults = null; // the vaults' names (GET /vaults), loaded once per sign-in

export function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "dashboard", rest: parts.slice(1), params: new URLSearchParams(qs || "") };
}

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  if (leave) { leave(); leave = null; }
  // a dialog left open (the browser's Back) belongs to the page left: cancelled
  for (const d of document.querySelectorAll("dialog.dialog")) d.dispatchEvent(new Event("cancel"));
  if (!session.token || !session.principal) {
    if (session.token && !session.principal) {
      try { session.principal = await api.whoami(); } catch { session.token = null; }
    }
    if (!session.principal) return signIn();
  }
  if (vaults === null) await loadVaults();
  const r = route();
  const page = PAGES[r.page];
  showChrome(r.page);
  if (!page) {
    clear(main, errorBox({ code: "PAGE_NOT_FOUND", message: `there is no page '${r.page}'`,
      remedy: "use the navigation on the left" }, "Page not found"));
    return;
  }
  const view = h("div", { class: "page", "data-page": r.page });
  clear(main, view);
  try {
    leave = (await page.render(view, r)) || null;
  } catch (err) {
    if (!(err instanceof ApiError)) console.error(err);
    view.append(errorBox(err, "This page could not be loaded"));
  }
  const title = view.querySelector("h1");
  document.title = `${title ? title.textContent : "vmvault"} · vmvault console`;
  if (title) title.focus({ preventScroll: true });
}

function showChrome(current) {
  const nav = document.getElementById("nav");
  nav.hidden = false;
  // a link (or a heading) for a role above the token's is not drawn; the server refuses the
  // page's calls anyway (403 ROLE_REQUIRED, shown with its remedy)
  for (const el of nav.querySelectorAll("[data-role]")) el.hidden = !can(el.dataset.role);
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const p = session.principal;
  clear(document.getElementById("who"),
    h("span", { class: "who-name" }, p.name), " ",
    h("span", { class: `role role-${p.role}`, title: "the token's role" }, p.role), " ",
    button("Sign out", signOut, { kind: "link", id: "sign-out" }));
  showVaultPicker();
}

// The header's vault picker: every call that takes a vault gets the chosen one (api.js).
// Hidden with fewer than two vaults; with none chosen, the server's default is used.
async function loadVaults() {
  try {
    vaults = (await api.vaults()).map((v) => v.name);
  } catch {
    vaults = null; // tried again on the next page
    return;
  }
  if (session.vault && !vaults.includes(session.vault)) session.vault = null;
}

// A vault was created: the picker's list is loaded again before the next page.
export function vaultsChanged() {
  vaults = null;
}

function showVaultPicker() {
  const box = document.getElementById("vault-pick");
  if (!vaults || vaults.length < 2) {
    box.hidden = true;
    clear(box);
    return;
  }
  const options = (session.vault ? [] : [["", "server's default"]]).concat(vaults.map((n) => [n, n]));
  const pick = select(options, session.vault || "", { id: "vault-picker", name: "vault" });
  pick.addEventListener("change", () => {
    session.vault = pick.value || null;
    showVaultNote(null);
    render();
  });
  clear(box, h("label", { for: "vault-picker" }, "Vault"), pick);
  box.hidden = false;
}

function showVaultNote(text) {
  const note = document.getElementById("vault-note");
  note.textContent = text || "";
  note.hidden = !text;
}

whenVaultNotChosen(async () => {
  if (vaults === null) await loadVaults();
  if (!vaults || vaults.length === 0 || session.vault) return Boolean(session.vault);
  session.vault = vaults[0];
  showVaultPicker();
  showVaultNote(`The server has no default vault: the console shows vault ${vaults[0]}. `
    + "Choose another with the Vault picker at the top.");
  return true;
});

function forget() {
  session.token = null;
  session.principal = null;
  session.vault = null;
  vaults = null;
  showVaultNote(null);
  showVaultPicker();
}

function signOut() {
  forget();
  location.hash = "#/dashboard";
  render();
}

function signIn(problem) {
  document.getElementById("nav").hidden = true;
  clear(document.getElementById("who"));
  const token = h("input", { type: "password", id: "token", name: "token", required: true,
    autocomplete: "current-password", spellcheck: "false" });
  const status = h("div", { "aria-live": "polite" }, problem ? errorBox(problem, "Signed out") : null);
  const form = h("form", { class: "signin card", id: "signin-form" },
    h("h1", { id: "page-title", tabindex: "-1" }, "Sign in to vmvault"),
    h("p", { class: "subtitle" }, "Paste an API token. An administrator creates one with ",
      h("code", {}, "vmvault token create NAME --role reader|operator|contributor|admin"), "."),
    field("API token", token, "Kept in this browser tab only (sessionStorage) until you sign out or close the tab."),
    status,
    h("button", { type: "submit", class: "btn btn-primary" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(status);
    try {
      const who = await api.whoami(token.value.trim());
      session.token = token.value.trim();
      session.principal = who;
      render();
    } catch (err) {
      clear(status, errorBox(err, "Sign-in failed"));
      token.focus();
    }
  });
  clear(main, h("div", { class: "page page-signin" }, form));
  document.title = "Sign in · vmvault console";
  token.focus();
}

whenUnauthorized((err) => {
  forget();
  signIn(err);
});

window.addEventListener("hashchange", render);
render();
