// The dashboard's only script: fetch server-rendered fragments when the watch says
// something changed, and send actions with the page's CSRF token. No framework, no build.
"use strict";

const body = document.body;
const kind = body.dataset.kind;
const target = body.dataset.target;
// Each part encoded on its own: a name never becomes a path.
const targetPath = target.split("/").map(encodeURIComponent).join("/");
const readOnly = body.dataset.readOnly === "true";
const csrf = document.querySelector('meta[name="sprintops-csrf"]').content;
const content = document.getElementById("content");
const live = document.getElementById("live");

function fragmentUrl() {
  return kind === "release" ? `/fragments/releases/${targetPath}` : "/fragments/releases";
}

let pending = null;
async function refresh() {
  if (pending) return pending;
  pending = (async () => {
    try {
      const response = await fetch(fragmentUrl(), { headers: { Accept: "text/html" } });
      const text = await response.text();
      content.innerHTML = response.ok ? text : `<p class="error">${escapeHtml(text)}</p>`;
    } catch (err) {
      content.innerHTML = `<p class="error">cannot reach the dashboard server</p>`;
    } finally {
      pending = null;
    }
  })();
  return pending;
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function listen() {
  const events = new EventSource("/api/events");
  events.onopen = () => { live.textContent = "live"; refresh(); };
  events.onerror = () => { live.textContent = "reconnecting…"; };
  events.onmessage = (message) => {
    const changed = JSON.parse(message.data);
    if (kind !== "release" || `${changed.namespace}/${changed.name}` === target) refresh();
  };
}

async function act(button) {
  const verb = button.dataset.verb;
  const force = button.dataset.force === "true";
  const result = document.getElementById("result");
  if (force && !window.confirm(`Promote ${target} now, skipping failing checks?`)) return;
  result.textContent = `${verb}${force ? " --force" : ""}…`;
  try {
    const response = await fetch(`/api/releases/${targetPath}/${encodeURIComponent(verb)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ force }),
    });
    const answer = await response.json().catch(() => ({ error: response.statusText }));
    result.className = response.ok ? "ok" : "error";
    result.textContent = response.ok ? answer.message : `refused (HTTP ${response.status}): ${answer.error}`;
  } catch (err) {
    result.className = "error";
    result.textContent = "cannot reach the dashboard server";
  }
}

document.getElementById("mode").textContent = readOnly ? "read-only" : "";
for (const button of document.querySelectorAll("#actions button")) {
  button.addEventListener("click", () => act(button));
}
refresh();
listen();
