// Accounts in the UI: the login page (when the server asks for one), who is logged in, logging
// out, and the user's API keys (a key is shown once, right after it is made).

import { ApiError, api, setApiKey } from "./api.js";
import { $, copyText, h, toast } from "./dom.js";
import { formatNumber, t } from "./i18n.js";

// The signed-in user, {user, mode, login_required}, or null when a login is needed.
export async function whoAmI() {
  try {
    return await api("GET", "/api/auth/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export function showLogin() {
  $("#app-main").hidden = true;
  $("#login-view").hidden = false;
  document.body.dataset.view = "login";
  $("#login-username").focus();
}

async function submitLogin(e) {
  e.preventDefault();
  const error = $("#login-error");
  error.hidden = true;
  try {
    await api("POST", "/api/auth/login", {
      username: $("#login-username").value.trim(),
      password: $("#login-password").value,
    });
    location.reload();
  } catch (err) {
    error.textContent = err.status === 401 ? t("login.failed") : err.message;
    error.hidden = false;
    $("#login-password").select();
  }
}

function useKey() {
  setApiKey($("#login-apikey").value.trim());
  location.reload();
}

async function logout() {
  setApiKey("");
  await api("POST", "/api/auth/logout", {});
  location.reload();
}

function keyRow(key) {
  const state = key.revoked
    ? t("keys.revoked")
    : key.last_used_at
      ? t("keys.last_used", { when: new Date(key.last_used_at).toLocaleString() })
      : t("keys.never");
  return h("li", { class: key.revoked ? "revoked" : "" },
    h("code", {}, `${key.prefix}…`), h("span", { class: "key-label" }, key.name || "—"),
    h("span", { class: "key-state" }, state),
    key.revoked ? null : h("button", {
      type: "button", class: "btn ghost small danger-text",
      onclick: async () => {
        await api("DELETE", `/api/keys/${key.id}`);
        await renderKeys();
      },
    }, t("keys.revoke")));
}

async function renderKeys() {
  const [{ data }, usage] = await Promise.all([api("GET", "/api/keys"), api("GET", "/api/usage")]);
  const list = $("#key-list");
  list.replaceChildren(...(data.length ? data.map(keyRow) : [h("li", { class: "empty" }, t("keys.empty"))]));
  const today = new Date().toISOString().slice(0, 10);
  const rows = usage.data.filter((u) => u.day === today);
  const sum = (key) => rows.reduce((n, u) => n + u[key], 0);
  $("#key-usage").textContent = t("keys.usage", {
    requests: formatNumber(sum("requests")),
    tokens: formatNumber(sum("prompt_tokens") + sum("completion_tokens")),
  });
}

async function createKey() {
  const made = await api("POST", "/api/keys", { name: $("#key-name").value.trim() });
  $("#key-name").value = "";
  await renderKeys();
  $("#key-value").textContent = made.key;
  $("#key-shown").hidden = false;
}

async function openKeys() {
  $("#key-shown").hidden = true;
  $("#key-value").textContent = "";
  await renderKeys();
  $("#keys-dialog").showModal();
}

export function initAccount(me) {
  $("#login-form").addEventListener("submit", submitLogin);
  $("#login-use-key").addEventListener("click", useKey);
  window.addEventListener("authrequired", showLogin);
  if (!me?.user || me.mode !== "accounts" || me.user.id == null) return;
  $("#account").hidden = false;
  $("#account-name").textContent = me.user.name + (me.user.role === "admin" ? ` · ${t("account.admin")}` : "");
  $("#logout").hidden = me.user.via !== "session";
  $("#logout").addEventListener("click", () => logout().catch((e) => toast(e.message, true)));
  $("#open-keys").addEventListener("click", () => openKeys().catch((e) => toast(e.message, true)));
  $("#key-create").addEventListener("click", () => createKey().catch((e) => toast(e.message, true)));
  $("#key-copy").addEventListener("click", async () => {
    await copyText($("#key-value").textContent);
    toast(t("keys.copied"));
  });
  $("#keys-close").addEventListener("click", () => {
    $("#key-value").textContent = "";  // the key leaves the page with the dialog
    $("#keys-dialog").close();
  });
}
