// Shared by every page: theme, time range in the URL, JSON fetching with the Prometheus envelope.
"use strict";
const SG = (() => {
  const root = document.documentElement;
  const saved = localStorage.getItem("sg-theme");
  if (saved) root.dataset.theme = saved;
  function toggleTheme() {
    const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "light" : "dark";
    localStorage.setItem("sg-theme", root.dataset.theme);
  }
  function param(name, fallback) { return new URLSearchParams(location.search).get(name) ?? fallback; }
  function setParam(name, value) {
    const u = new URL(location.href); u.searchParams.set(name, value); history.replaceState(null, "", u);
  }
  const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };
  function rangeSeconds() { return RANGES[param("range", "1h")] || 3600; }
  async function api(path, params) {
    const u = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, v);
    const r = await fetch(u);
    const body = await r.json();
    if (body.status !== "success") throw new Error(body.error || ("HTTP " + r.status));
    return body.data;
  }
  function fmt(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(digits) + "M";
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(digits) + "k";
    return Number(v).toFixed(digits).replace(/\.0+$/, "");
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function header(active) {
    const nav = el("nav", {},
      el("a", { href: "/" + location.search, ...(active === "overview" ? { "aria-current": "page" } : {}) }, "Overview"),
      el("a", { href: "/ui/explore" + location.search, ...(active === "explore" ? { "aria-current": "page" } : {}) }, "Explore"));
    const range = el("select", { "aria-label": "time range" });
    for (const k of Object.keys(RANGES)) { const o = el("option", { value: k }, "last " + k); if (k === param("range", "1h")) o.selected = true; range.append(o); }
    range.addEventListener("change", () => { setParam("range", range.value); dispatchEvent(new Event("sg-range")); });
    const theme = el("button", { type: "button", title: "toggle light/dark theme" }, "◐ theme");
    theme.addEventListener("click", toggleTheme);
    document.body.prepend(el("header", {}, el("span", { class: "brand" }, "◉ Sightglass"), nav, el("span", { class: "spacer" }), range, theme));
  }
  function poll(fn, ms) { let t; const run = async () => { try { await fn(); } finally { t = setTimeout(run, ms); } }; run(); addEventListener("sg-range", () => { clearTimeout(t); run(); }); }
  return { api, fmt, el, header, param, setParam, rangeSeconds, poll };
})();
