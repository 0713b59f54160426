// Entry point: language, tabs, then the chat, studio, knowledge and support views.

import { initAccount, showLogin, whoAmI } from "./account.js";
import { $ } from "./dom.js";
import { applyStatic, lang, setLanguage } from "./i18n.js";
import { applyIcons } from "./icons.js";
import { initChat, openConversation, refreshList, showError } from "./chat.js";
import { initKnowledge, loadKnowledge } from "./knowledge.js";
import { initStudio, loadTemplates } from "./studio.js";
import { initModeration } from "./moderation.js";
import { hideSupport, initSupport, loadSupport } from "./support.js";
import { initCompare, loadCompare } from "./arena.js";
import { hideDashboard, initDashboard, showDashboard } from "./dashboard.js";

let studioLoaded = false;

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("#chat-view").hidden = name !== "chat";
  $("#studio-view").hidden = name !== "studio";
  $("#knowledge-view").hidden = name !== "knowledge";
  $("#support-view").hidden = name !== "support";
  $("#compare-view").hidden = name !== "compare";
  $("#dashboard-view").hidden = name !== "dashboard";
  if (name === "dashboard") showDashboard().catch(showError);
  else hideDashboard();
  if (name === "compare") loadCompare().catch(showError);
  if (name === "knowledge") loadKnowledge().catch(showError);
  if (name === "support") loadSupport().catch(showError);
  else hideSupport();
  document.body.dataset.tab = name;
  if (name === "studio" && !studioLoaded) {
    studioLoaded = true;
    loadTemplates().catch(showError);
  }
}

async function main() {
  applyStatic();
  applyIcons();
  $("#lang-toggle").addEventListener("click", () => setLanguage(lang() === "zh" ? "en" : "zh"));
  const me = await whoAmI();
  initAccount(me);
  if (me === null) {
    showLogin();
    document.body.dataset.ready = "1";
    return;
  }
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  $("#sidebar-toggle").addEventListener("click", () => document.body.classList.toggle("sidebar-open"));
  window.addEventListener("conversationsaved", async (e) => {
    showTab("chat");
    await refreshList();
    await openConversation(e.detail);
  });
  initStudio();
  initKnowledge();
  initSupport();
  initModeration();
  initCompare();
  initDashboard(me);
  await initChat();
  document.body.dataset.ready = "1";
}

main();
