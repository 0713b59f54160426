// Compare: one prompt to two models at once, side by side; or a blind arena battle, where the names
// show only after the vote. Below them, the leaderboard the votes make (server: arena_routes.py).

import { api, stream } from "./api.js";
import { $, h, toast } from "./dom.js";
import { t } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";

let battle = null; // {id, blind, models, texts: [..], done: [..]}
let controller = null;

function setBusy(busy) {
  $("#cmp-send").disabled = busy;
  $("#cmp-stop").hidden = !busy;
}

function sideLabel(side) {
  if (battle && battle.models) return battle.models[side];
  return t(side === 0 ? "cmp.model_a" : "cmp.model_b");
}

function renderSides() {
  for (const side of [0, 1]) {
    const pane = $(`#cmp-side-${side}`);
    pane.replaceChildren(
      h("div", { class: "cmp-side-head" }, h("strong", { class: "cmp-name", text: sideLabel(side) }),
        battle && battle.finish[side] ? h("span", { class: "muted small", text: battle.finish[side] }) : null),
      h("div", { class: "msg-body cmp-text" + (battle && !battle.finish[side] ? " cursor" : "") },
        renderMarkdown(battle ? battle.texts[side] : "")),
    );
  }
  const votes = $("#cmp-votes");
  const canVote = battle && battle.finish[0] && battle.finish[1] && !battle.winner;
  votes.hidden = !canVote;
  $("#cmp-result").textContent = battle && battle.winner
    ? t("cmp.voted", { a: battle.models[0], b: battle.models[1], winner: t(`cmp.winner.${battle.winner}`) })
    : "";
}

async function send() {
  const prompt = $("#cmp-prompt").value.trim();
  if (!prompt) return;
  const blind = $("#cmp-mode").value === "arena";
  const body = { prompt };
  const path = blind ? "/api/arena/battles" : "/api/compare";
  if (!blind) body.models = [$("#cmp-model-0").value, $("#cmp-model-1").value];
  battle = { id: null, blind, models: blind ? null : body.models, texts: ["", ""], finish: [null, null], winner: null };
  renderSides();
  setBusy(true);
  controller = new AbortController();
  try {
    await stream(path, body, (e) => {
      if (e.type === "battle") {
        battle.id = e.id;
        battle.models = e.models;
      } else if (e.type === "delta") {
        battle.texts[e.side] += e.text;
      } else if (e.type === "done") {
        battle.finish[e.side] = e.finish_reason;
      } else if (e.type === "error") {
        battle.finish[e.side] = "error";
        battle.texts[e.side] += `\n\n${e.error.message}`;
      }
      renderSides();
    }, controller.signal);
  } catch (e) {
    toast(e.message, true);
  } finally {
    setBusy(false);
    for (const side of [0, 1]) battle.finish[side] = battle.finish[side] || "stopped";
    renderSides();
  }
}

async function vote(winner) {
  if (!battle || battle.id == null) return;
  try {
    const result = await api("POST", `/api/arena/battles/${battle.id}/vote`, { winner });
    battle.models = result.models;
    battle.winner = result.winner;
    renderSides();
    await loadLeaderboard();
  } catch (e) {
    toast(e.message, true);
  }
}

async function loadLeaderboard() {
  const { data, votes } = await api("GET", "/api/arena/leaderboard");
  $("#cmp-board-count").textContent = t("cmp.votes", { n: votes });
  $("#cmp-board").replaceChildren(...(data.length
    ? data.map((s, i) => h("tr", {}, h("td", { text: String(i + 1) }), h("td", { text: s.model }),
      h("td", { class: "num", text: s.rating.toFixed(0) }), h("td", { class: "num", text: `${s.wins}/${s.losses}/${s.ties}` })))
    : [h("tr", {}, h("td", { colspan: "4", class: "muted", text: t("cmp.no_votes") }))]));
}

function updateMode() {
  const blind = $("#cmp-mode").value === "arena";
  $("#cmp-pickers").hidden = blind;
}

export async function loadCompare() {
  const { data } = await api("GET", "/api/models");
  const ready = data.filter((m) => m.ready).map((m) => m.id);
  for (const side of [0, 1]) {
    const select = $(`#cmp-model-${side}`);
    const current = select.value;
    select.replaceChildren(...ready.map((id) => h("option", { value: id, text: id })));
    select.value = ready.includes(current) ? current : ready[Math.min(side, ready.length - 1)] || "";
  }
  $("#cmp-few").hidden = ready.length >= 2;
  renderSides();
  await loadLeaderboard();
}

export function initCompare() {
  $("#cmp-mode").addEventListener("change", updateMode);
  $("#cmp-send").addEventListener("click", () => send());
  $("#cmp-stop").addEventListener("click", () => controller && controller.abort());
  $("#cmp-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  for (const button of document.querySelectorAll("#cmp-votes button")) {
    button.addEventListener("click", () => vote(button.dataset.winner));
  }
  window.addEventListener("languagechange", () => {
    if (battle) renderSides();
    if (!$("#compare-view").hidden) loadLeaderboard().catch(() => {});
  });
  updateMode();
}
