// Shared by every page: header (navigation, time range, live updates, theme), URL state for deep
// links, JSON fetching with the Prometheus envelope, formatting, tables and line charts.
"use strict";
const SG = (() => {
  const root = document.documentElement;
  const saved = localStorage.getItem("sg-theme");
  if (saved) root.dataset.theme = saved;
  const PAGES = [
    ["overview", "Overview", "/"], ["topology", "Topology"], ["heatmap", "Heatmap"],
    ["inference", "Inference"], ["training", "Training"], ["pipelines", "Pipelines"],
    ["network", "Network"], ["cost", "Cost"], ["incidents", "Incidents"],
    ["drift", "Drift"], ["explore", "Explore"],
  ];
  const RANGES = ["15m", "1h", "6h", "24h", "7d"];
  const KEEP = ["range", "time"];  // carried from page to page

  function isDark() { return root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches; }
  function toggleTheme() {
    root.dataset.theme = isDark() ? "light" : "dark";
    localStorage.setItem("sg-theme", root.dataset.theme);
    dispatchEvent(new Event("sg-theme"));
  }
  function param(name, fallback) { return new URLSearchParams(location.search).get(name) ?? fallback; }
  function setParam(name, value) {
    const u = new URL(location.href);
    if (value === null || value === undefined || value === "") u.searchParams.delete(name); else u.searchParams.set(name, value);
    history.replaceState(null, "", u);
    for (const a of document.querySelectorAll("header nav a")) a.href = link(a.dataset.path);
  }
  function link(path, extra) {
    const u = new URL(path, location.origin);
    const cur = new URLSearchParams(location.search);
    for (const k of KEEP) if (cur.get(k)) u.searchParams.set(k, cur.get(k));
    for (const [k, v] of Object.entries(extra || {})) u.searchParams.set(k, v);
    return u.pathname + u.search;
  }
  function windowParams() {
    const p = { range: param("range", "1h") };
    if (param("time")) p.time = param("time");
    return p;
  }
  async function api(path, params) {
    const u = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, v);
    const r = await fetch(u);
    let body;
    try { body = await r.json(); } catch (e) { throw new Error("HTTP " + r.status + " (not JSON)"); }
    if (body.status !== "success") throw new Error(body.error || ("HTTP " + r.status));
    return body.data;
  }
  let dataAt = null;  // the instant the last twin answer is about (answers are shared for a few seconds)
  const twin = async (page, extra) => {
    const d = await api("/api/v1/ui/" + page, { ...windowParams(), ...(extra || {}) });
    if (d && d.window) dataAt = d.window.at_ms;
    return d;
  };

  // ---- formatting: null/undefined/NaN is missing and shows as "—", never 0
  const missing = v => v === null || v === undefined || (typeof v === "number" && Number.isNaN(v));
  function fmt(v, digits = 1) {
    if (missing(v)) return "—";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(digits) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(digits) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(digits) + "k";
    return Number(v).toFixed(digits).replace(/\.0+$/, "");
  }
  const pct = (v, d = 1) => missing(v) ? "—" : fmt(100 * v, d) + " %";
  function secs(v) {
    if (missing(v)) return "—";
    if (v === 0) return "0";
    if (Math.abs(v) < 0.01) return fmt(v * 1000, 2) + " ms";
    if (Math.abs(v) < 1) return fmt(v * 1000, 0) + " ms";
    if (Math.abs(v) < 120) return fmt(v, 2) + " s";
    if (Math.abs(v) < 7200) return fmt(v / 60, 1) + " min";
    return fmt(v / 3600, 1) + " h";
  }
  function bytes(v, suffix = "") {
    if (missing(v)) return "—";
    const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0, x = v;
    while (Math.abs(x) >= 1000 && i < u.length - 1) { x /= 1000; i++; }
    return x.toFixed(i ? 1 : 0) + " " + u[i] + suffix;
  }
  const usd = v => missing(v) ? "—" : "$" + (Math.abs(v) >= 100 ? fmt(v, 0) : Number(v).toFixed(2));
  const time = ms => new Date(ms).toLocaleTimeString();

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  const $ = id => document.getElementById(id);
  const entityLink = (id, text) => el("a", { href: link("/ui/entity", { id }) }, text || id);
  const exploreLink = (q, text) => el("a", { href: link("/ui/explore", { q }), class: "q", title: "open in Explore" }, text || q);

  // table(columns, rows): columns = [[header, row => cell (string|Node), {num: true}], ...]
  function table(columns, rows, empty) {
    if (!rows.length) return el("div", { class: "empty" }, empty || "Nothing to show.");
    return el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, columns.map(([h, , o]) => el("th", { scope: "col", class: o && o.num ? "num" : null }, h)))),
      el("tbody", {}, rows.map(r => el("tr", {}, columns.map(([, f, o]) => el("td", { class: o && o.num ? "num" : null }, f(r))))))));
  }
  function card(label, value, cls, title) {
    return el("div", { class: "card", title }, el("div", { class: "label" }, label), el("div", { class: "value " + (cls || "") }, value));
  }
  function notAvailable(what, detail) {
    return el("div", { class: "unavailable" }, el("strong", {}, what + ": not available on this server."), detail ? " " + detail : "");
  }

  // ---- line chart (SVG): lines = [{name, points: [[t_s, v|null], ...]}]
  const PALETTE = ["#0b6bcb", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#1098ad", "#d6336c", "#5c940d", "#7048e8", "#868e96"];
  function chart(svg, lines, opts) {
    opts = opts || {};
    const W = svg.clientWidth || 600, H = opts.height || 220, L = 68, B = 22, T = 8, R = 8;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.style.height = H + "px";
    let lo = Infinity, hi = -Infinity, t0 = Infinity, t1 = -Infinity;
    for (const s of lines) for (const [t, v] of s.points) {
      t0 = Math.min(t0, t); t1 = Math.max(t1, t);
      if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (opts.start !== undefined) { t0 = opts.start; t1 = opts.end; }
    if (!isFinite(lo)) { svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data in this range</text>`; return; }
    if (opts.zero !== false) lo = Math.min(lo, 0);
    if (lo === hi) { hi = lo + 1; }
    if (t0 === t1) t1 = t0 + 1;
    const f = opts.format || (v => fmt(v, 2));
    const X = t => L + (t - t0) / (t1 - t0) * (W - L - R), Y = v => T + (hi - v) / (hi - lo) * (H - T - B);
    let out = `<line class="axis" x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}"/>`;
    for (let i = 0; i <= 4; i++) { const v = lo + (hi - lo) * i / 4; out += `<line class="grid" x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}"/><text x="${L - 6}" y="${Y(v) + 4}" text-anchor="end">${f(v)}</text>`; }
    for (let i = 0; i <= 4; i++) { const t = t0 + (t1 - t0) * i / 4; out += `<text x="${X(t)}" y="${H - 6}" text-anchor="${i === 0 ? "start" : i === 4 ? "end" : "middle"}">${new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</text>`; }
    const gap = opts.gap || 3 * (lines[0] && lines[0].points.length > 1 ? lines[0].points[1][0] - lines[0].points[0][0] : 60);
    lines.slice(0, 40).forEach((s, i) => {
      let d = "", prev = null;
      for (const [t, v] of s.points) {
        if (v === null || !isFinite(v)) { prev = null; continue; }
        d += (prev === null || t - prev > gap ? "M" : "L") + X(t).toFixed(1) + "," + Y(v).toFixed(1); prev = t;
      }
      out += `<path d="${d}" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="1.6"><title>${esc(s.name)}</title></path>`;
    });
    svg.innerHTML = out;
  }
  function legend(lines) { return el("div", { class: "legend" }, lines.slice(0, 40).map((s, i) => el("span", { style: `--c:${PALETTE[i % PALETTE.length]}` }, s.name || "(all)"))); }
  function chartPanel(title, lines, opts) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "chart"); svg.setAttribute("role", "img"); svg.setAttribute("aria-label", title);
    const p = el("section", { class: "panel chartbox" }, el("h2", {}, title), svg, legend(lines));
    requestAnimationFrame(() => chart(svg, lines, opts));
    return p;
  }
  const esc = s => String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  // ---- header: navigation, time range, "as of", live updates, theme; keyboard shortcuts
  let live = param("live", "1") !== "0";
  function header(active) {
    const nav = el("nav", { "aria-label": "pages" }, PAGES.map(([key, label, path], i) => {
      const p = path || "/ui/" + key;
      return el("a", { href: link(p), "data-path": p, "aria-current": key === active ? "page" : null, title: i < 10 ? `${label} (key ${(i + 1) % 10})` : label }, label);
    }));
    const range = el("select", { "aria-label": "time range", id: "range" });
    for (const k of RANGES) { const o = el("option", { value: k }, "last " + k); if (k === param("range", "1h")) o.selected = true; range.append(o); }
    range.addEventListener("change", () => { setParam("range", range.value); refreshNow(); });
    const at = el("input", { type: "datetime-local", id: "asof-input", "aria-label": "show the factory as of this time (empty: now)", title: "as of (empty: now)", step: "1" });
    if (param("time")) { const d = new Date(Number(param("time")) * 1000 || Date.parse(param("time"))); if (!isNaN(d)) at.value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); }
    at.addEventListener("change", () => { setParam("time", at.value ? String(new Date(at.value).getTime() / 1000) : null); refreshNow(); });
    const liveBtn = el("button", { type: "button", id: "live", "aria-pressed": String(live), title: "live updates (key p)" }, live ? "● live" : "❚❚ paused");
    liveBtn.addEventListener("click", toggleLive);
    const theme = el("button", { type: "button", title: "toggle light/dark theme (key t)", "aria-label": "toggle light or dark theme" }, "◐");
    theme.addEventListener("click", toggleTheme);
    document.body.prepend(el("a", { href: "#main", class: "skip" }, "Skip to content"),
      el("header", {}, el("a", { class: "brand", href: link("/") }, "◉ Sightglass"), nav,
        el("span", { class: "controls" }, range, at, liveBtn, theme)));
    const main = document.querySelector("main"); if (main) { main.id = "main"; main.tabIndex = -1; }
    addEventListener("keydown", e => {
      if (e.ctrlKey || e.metaKey || e.altKey || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
      if (e.key === "t") toggleTheme();
      else if (e.key === "p") toggleLive();
      else if (e.key === "r") refreshNow();
      else if (/^[0-9]$/.test(e.key)) { const i = (Number(e.key) + 9) % 10; if (PAGES[i]) location.href = link(PAGES[i][2] || "/ui/" + PAGES[i][0]); }
    });
  }
  function toggleLive() {
    live = !live; const b = $("live");
    b.textContent = live ? "● live" : "❚❚ paused"; b.setAttribute("aria-pressed", String(live));
    setParam("live", live ? null : "0"); if (live) refreshNow(); else clearTimeout(timer);
  }
  let runner = null, timer = null;
  function refreshNow() { if (runner) { clearTimeout(timer); runner(); } }
  // poll(fn, ms): run fn now and again every ms while live (an "as of" time shows a fixed instant)
  function poll(fn, ms) {
    const status = el("span", { class: "muted", id: "asof", "aria-live": "polite" });
    const main = document.querySelector("main"); if (main) main.prepend(el("div", { class: "status" }, status, el("span", { id: "error", role: "alert" })));
    runner = async () => {
      const t0 = performance.now();
      try {
        dataAt = null; await fn(); $("error").textContent = "";
        const at = dataAt !== null ? new Date(dataAt) : param("time") ? new Date(Number(param("time")) * 1000) : new Date();
        status.textContent = (param("time") ? "as of " + at.toLocaleString() : "data as of " + at.toLocaleTimeString()) + ` · ${Math.round(performance.now() - t0)} ms`;
      }
      catch (e) { $("error").textContent = "Cannot load this page's data: " + e.message; }
      finally { clearTimeout(timer); if (live && !param("time")) timer = setTimeout(runner, ms); }
    };
    runner();
  }
  return { api, twin, fmt, pct, secs, bytes, usd, time, el, $, table, card, notAvailable, chart, chartPanel, legend, header, param, setParam, link, entityLink, exploreLink, poll, missing, PALETTE, isDark };
})();
