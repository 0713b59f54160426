// The moderation log, for administrators: the deployment's mode, counts per category and action,
// and the recent flagged inputs and outputs (their text only where the policy keeps it).

import { api } from "./api.js";
import { $, h, toast } from "./dom.js";
import { t } from "./i18n.js";

async function openLog() {
  const body = await api("GET", "/api/moderation/events?limit=100");
  $("#mod-mode").textContent = t("mod.mode", { mode: body.mode, total: body.total });
  const actions = ["block", "warn", "log", "none"].filter((a) => Object.values(body.counts).some((c) => c[a]));
  $("#mod-counts").replaceChildren(
    h("thead", {}, h("tr", {}, h("th", {}, t("mod.col.category")), ...actions.map((a) => h("th", {}, a)))),
    h("tbody", {}, ...Object.entries(body.counts).map(([category, c]) =>
      h("tr", {}, h("td", {}, category), ...actions.map((a) => h("td", {}, String(c[a] || 0)))))));
  $("#mod-events").replaceChildren(...body.data.map((e) => h("tr", {},
    h("td", {}, new Date(e.created_at).toLocaleString()), h("td", {}, t(`mod.source.${e.source}`)),
    h("td", {}, e.categories.join(", ")), h("td", {}, h("span", { class: `badge ${e.action === "block" ? "err" : "warn"}` }, e.action)),
    h("td", {}, e.model || ""), h("td", { class: "mod-text" }, e.text ?? t("mod.not_kept")))));
  if (!body.data.length) $("#mod-events").append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, t("mod.none"))));
  $("#moderation-dialog").showModal();
}

export async function initModeration() {
  try {
    await api("GET", "/api/moderation/events?limit=1");
  } catch {
    return; // not an administrator: no button
  }
  const button = $("#open-moderation");
  button.hidden = false;
  button.addEventListener("click", () => openLog().catch((e) => toast(e.message, true)));
}
