// Psychiq dashboard: live figures, the live chart, live page refresh, confirmations and
// select-all. No inline scripts anywhere (the Content-Security-Policy forbids them).
"use strict";
(function () {
  const base = document.body.dataset.base || "";
  const statsUrl = base + "/api/stats";
  const samples = []; // {at, processed, failed}
  // Servers flush their counters every 5 s: sampling faster would draw each flush as a
  // spike between zeros.
  const SAMPLE_MS = 5000;
  const canvas = document.getElementById("live");

  function setFigures(s) {
    document.querySelectorAll("[data-stat]").forEach(function (el) {
      const v = s[el.dataset.stat];
      if (v !== undefined) el.textContent = Number(v).toLocaleString("en");
    });
  }

  function drawChart() {
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 30;
    ctx.clearRect(0, 0, w, h);
    const rates = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = samples[i].at - samples[i - 1].at || 1;
      rates.push({
        p: Math.max(0, (samples[i].processed - samples[i - 1].processed) / dt),
        f: Math.max(0, (samples[i].failed - samples[i - 1].failed) / dt),
      });
    }
    const max = Math.max(1, ...rates.map(function (r) { return Math.max(r.p, r.f); }));
    ctx.strokeStyle = "#98a2b3";
    ctx.beginPath(); ctx.moveTo(pad, h - pad); ctx.lineTo(w - pad, h - pad); ctx.stroke();
    ctx.fillStyle = "#667085"; ctx.font = "11px sans-serif";
    ctx.fillText(Math.round(max).toLocaleString("en") + " jobs/s", pad, 14);
    ctx.fillText("last " + Math.max(0, rates.length) * SAMPLE_MS / 1000 + " s", w - pad - 60, h - 8);
    const step = (w - 2 * pad) / 60;
    [["p", "#3556d4"], ["f", "#c0362c"]].forEach(function (line) {
      ctx.strokeStyle = line[1]; ctx.lineWidth = 2; ctx.beginPath();
      rates.forEach(function (r, i) {
        const x = pad + i * step, y = h - pad - (r[line[0]] / max) * (h - 2 * pad);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
    canvas.dataset.points = String(rates.length);
  }

  function poll() {
    fetch(statsUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        setFigures(s);
        samples.push({ at: s.at, processed: s.processed, failed: s.failed });
        if (samples.length > 61) samples.shift();
        drawChart();
      })
      .catch(function () { /* Redis or the server is away; try again next tick. */ });
  }

  // Pages marked data-live swap in fresh content every 5 s (not while a form is in use).
  function refreshMain() {
    const main = document.querySelector("main[data-live]");
    if (!main || document.activeElement && document.activeElement.closest("form")) return;
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        const fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        if (!fresh) return;
        // Keep the live chart's canvas (and its samples) in place.
        const oldCanvas = main.querySelector("#live"), newCanvas = fresh.querySelector("#live");
        if (oldCanvas && newCanvas) newCanvas.replaceWith(oldCanvas);
        // A notice is shown once by the server: keep it through refreshes.
        const notice = main.querySelector(".notice");
        main.replaceChildren(...fresh.childNodes);
        if (notice && !main.querySelector(".notice")) main.prepend(notice);
      })
      .catch(function () {});
  }

  document.addEventListener("submit", function (e) {
    const msg = e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
  document.addEventListener("change", function (e) {
    if (e.target.id !== "select-all") return;
    document.querySelectorAll("#selection input[name=key], #selection input[name=jid]").forEach(function (box) {
      box.checked = e.target.checked;
    });
  });

  // The notice id is spent once shown: drop it from the address (reloads, refreshes).
  if (new URLSearchParams(location.search).has("notice")) {
    const url = new URL(location.href);
    url.searchParams.delete("notice");
    history.replaceState(null, "", url);
  }

  poll();
  setInterval(poll, SAMPLE_MS);
  setInterval(refreshMain, 5000);
})();
