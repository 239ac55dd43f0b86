// lookalike search page: pick or drop an image, POST it to /search, show the ranked thumbnails.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { metric: "cosine", tokenNeeded: false };

function token() {
  return $("token").value.trim();
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

async function errorText(response) {
  try {
    const body = await response.json();
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    return "error " + response.status + ": " + detail;
  } catch (e) {
    return "error " + response.status + ": " + response.statusText;
  }
}

async function loadSummary() {
  try {
    const response = await fetch("/health");
    if (!response.ok) throw new Error(await errorText(response));
    const h = await response.json();
    state.metric = h.metric;
    state.tokenNeeded = h.read_token;
    $("token-row").hidden = !h.read_token;
    $("k").max = h.max_k;
    $("summary").textContent = h.count + " items · descriptor " + (h.descriptor || "none (vectors only)") +
      " · metric " + h.metric;
  } catch (e) {
    $("summary").textContent = String(e.message || e);
  }
}

async function thumbnailSource(url) {
  if (!state.tokenNeeded) return url;
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) return "";
  return URL.createObjectURL(await response.blob());
}

async function render(results) {
  const list = $("results");
  list.replaceChildren();
  const label = state.metric === "l2" ? "distance" : "score";
  for (const [i, hit] of results.entries()) {
    const item = document.createElement("li");
    item.className = "result";
    item.dataset.id = hit.id;
    const img = document.createElement("img");
    img.className = "thumb";
    img.alt = hit.id;
    img.src = await thumbnailSource(hit.thumbnail);
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = "#" + (i + 1);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = hit.id;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = label + " " + hit.score.toFixed(4);
    item.append(img, rank, id, score);
    list.append(item);
  }
}

async function search(file) {
  if (!file) return;
  $("query").src = URL.createObjectURL(file);
  $("query").hidden = false;
  $("results").replaceChildren();
  setStatus("searching…", false);
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("k").value || "10");
  try {
    const response = await fetch("/search", { method: "POST", body: form, headers: authHeaders() });
    if (!response.ok) {
      setStatus(await errorText(response), true);
      return;
    }
    const body = await response.json();
    await render(body.results);
    setStatus(body.results.length + " results in " + body.took_ms.toFixed(1) + " ms", false);
  } catch (e) {
    setStatus("error: " + String(e.message || e), true);
  }
}

function setup() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => search(event.target.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    search(event.dataTransfer.files[0]);
  });
  loadSummary();
}

setup();
