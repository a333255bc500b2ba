// The workbench's one script: live urgent alerts, "new tickets" on the list, the live group count of a
// notice, and the refresh of a notice's delivery report. No framework, no build step.
"use strict";

(function () {
  const signed = document.body.dataset.signed === "1";
  const POLL_MS = 5000;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // --- urgent tickets: a red banner on every page, and the tab's title, until they are closed
  const box = document.getElementById("alerts");
  const title = document.title;
  const seen = new Set(JSON.parse(sessionStorage.getItem("doorstep-urgent-seen") || "[]"));
  const newer = document.getElementById("newer");

  async function poll() {
    try {
      const r = await fetch("/staff/alerts.json", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location.href = "/staff/login"; return; }
      if (!r.ok) return;
      const data = await r.json();
      showAlerts(data);
      if (newer && data.latest > Number(newer.dataset.latest || 0)) newer.hidden = false;
    } catch (e) { /* offline for a moment: the next poll tries again */ }
  }

  function showAlerts(data) {
    if (!box) return;
    box.replaceChildren();
    if (!data.urgent_count) { box.hidden = true; document.title = title; return; }
    let fresh = false;
    box.append(el("strong", {}, `紧急工单 ${data.urgent_count} 件未办结：`));
    for (const t of data.urgent) {
      if (!seen.has(t.id)) { fresh = true; seen.add(t.id); }
      const a = el("a", { href: `/staff/tickets/${t.id}` }, `#${t.id} ${t.title}${t.place ? "（" + t.place + "）" : ""}`);
      box.append(a);
    }
    sessionStorage.setItem("doorstep-urgent-seen", JSON.stringify([...seen]));
    box.hidden = false;
    if (fresh) { box.classList.remove("flash"); void box.offsetWidth; box.classList.add("flash"); }
    document.title = `【紧急${data.urgent_count}】${title}`;
  }

  if (signed) { poll(); setInterval(poll, POLL_MS); }

  // --- the compose form: how many groups the ticked targets reach, while choosing
  const compose = document.getElementById("compose");
  const count = document.getElementById("count");
  let timer = null;
  async function recount() {
    const params = new URLSearchParams();
    for (const c of compose.querySelectorAll("input[name=target]:checked")) params.append("target", c.value);
    const more = compose.querySelector("input[name=more]").value;
    for (const w of more.split(/[、,，\s]+/)) if (w.trim()) params.append("target", w.trim());
    if (![...params.keys()].length) { count.textContent = "还没有选发送对象"; count.className = "count"; return; }
    const r = await fetch("/staff/notices/count.json?" + params.toString(), { credentials: "same-origin" });
    if (!r.ok) return;
    const d = await r.json();
    if (d.error) { count.textContent = d.error; count.className = "count err"; return; }
    count.textContent = `共 ${d.count} 个群：${d.groups.join("、")}${d.count > d.groups.length ? "等" : ""}`;
    count.className = "count ok";
  }
  if (compose && count) {
    compose.addEventListener("change", recount);
    compose.addEventListener("input", (e) => {
      if (e.target.name !== "more") return;
      clearTimeout(timer); timer = setTimeout(recount, 300);
    });
  }

  // --- a delivery report still moving: reload it every few seconds
  const live = document.querySelector("[data-refresh]");
  if (live) setTimeout(() => window.location.reload(), Number(live.dataset.refresh) * 1000);
})();
