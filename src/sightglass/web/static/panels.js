// Pages that show other features' answers (cost, incidents, drift): a generic renderer for what
// their APIs return, and the "not available on this server" notice when a feature is absent.
"use strict";
const Panels = (() => {
  const { el, fmt } = SG;
  const isObj = v => v !== null && typeof v === "object" && !Array.isArray(v);
  function cell(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return fmt(v, 2);
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "string") return /^[a-z_]+:[^\s]+$/.test(v) && !v.startsWith("http") ? SG.entityLink(v) : v;
    if (Array.isArray(v)) return v.length && typeof v[0] !== "object" ? v.map(String).join(", ") : `${v.length} items`;
    return Object.entries(v).slice(0, 4).map(([k, x]) => `${k}=${typeof x === "object" ? JSON.stringify(x) : x}`).join(" ");
  }
  // any JSON value → DOM: arrays of objects become tables, objects key/value lists
  function render(v, depth = 0) {
    if (Array.isArray(v)) {
      if (!v.length) return el("div", { class: "empty" }, "None.");
      if (v.every(isObj)) {
        const cols = [...new Set(v.slice(0, 50).flatMap(Object.keys))].slice(0, 10);
        return SG.table(cols.map(c => [c.replaceAll("_", " "), r => cell(r[c]), { num: typeof v[0][c] === "number" }]), v.slice(0, 200));
      }
      return el("div", {}, v.map(cell).join(", "));
    }
    if (isObj(v)) {
      if (depth > 1) return el("pre", { class: "json" }, JSON.stringify(v, null, 1));
      return el("dl", { class: "kv" }, Object.entries(v).map(([k, x]) => [el("dt", {}, k.replaceAll("_", " ")),
        el("dd", {}, (Array.isArray(x) && x.length && x.every(isObj)) || isObj(x) ? render(x, depth + 1) : cell(x))]));
    }
    return el("div", {}, cell(v));
  }
  // part = {path, available, status, data, error} from the twin
  function part(title, p, draw) {
    const body = !p.available ? SG.notAvailable(title, `(${p.path})`)
      : p.error ? el("div", { class: "sev-error" }, `${title}: ${p.error}`)
      : (draw ? draw(p.data) : render(p.data));
    return el("section", { class: "panel" }, el("h2", {}, title), body);
  }
  return { render, part, cell };
})();
