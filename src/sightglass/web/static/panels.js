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
  // an RCA answer (sightglass.rca RcaResult.to_dict): ranked causes, each with its evidence chain
  function rca(r) {
    if (!r) return el("div", { class: "empty" }, "No root cause analysis attached.");
    const s = r.symptom || {};
    const head = el("p", {}, "Symptom ", el("code", { class: "q" }, s.query || "?"), ` at ${s.at || "?"}`,
      s.entities && s.entities.length ? [" on ", s.entities.slice(0, 6).map(e => [SG.entityLink(e), " "]), s.entities.length > 6 ? `and ${s.entities.length - 6} more` : ""] : "",
      el("span", { class: "muted" }, ` — ${r.candidates ?? "?"} candidates in ${fmt((r.seconds || 0) * 1000, 0)} ms`));
    const warn = (r.warnings || []).map(w => el("p", { class: "sev-warning" }, w));
    if (!r.causes || !r.causes.length) return el("div", {}, head, warn, el("div", { class: "empty" }, "No cause found: nothing the symptom depends on changed in the window."));
    return el("div", {}, head, warn, r.causes.map(c => {
      const ev = c.evidence || {};
      return el("div", { class: "chain" },
        el("h3", {}, `#${c.rank} `, SG.entityLink(c.entity.id), ` — ${c.fault} `, el("span", { class: "muted" }, `score ${fmt(c.score, 2)}, explains ${c.explains}, distance ${c.distance}` + (c.onset ? `, since ${c.onset}` : ""))),
        c.summary ? el("p", {}, c.summary) : "",
        (ev.signals || []).length ? SG.table([["signal", x => { const a = SG.exploreLink(x.query, x.metric || x.series); a.title = x.series; return a; }], ["value", x => fmt(x.value, 3), { num: true }],
          ["baseline", x => fmt(x.baseline, 3), { num: true }], ["z", x => fmt(x.z, 1), { num: true }], ["role", x => x.role], ["onset", x => x.onset || "—"]], ev.signals.slice(0, 8)) : "",
        (ev.events || []).length ? SG.table([["event", x => x.kind], ["time", x => x.ts], ["details", x => cell(x.attributes)], ["check", x => x.query ? SG.exploreLink(x.query, "query") : "—"]], ev.events.slice(0, 8)) : "",
        (ev.peers || []).length ? SG.table([["peers", x => x.group], ["metric", x => SG.exploreLink(x.query, x.metric)], ["value", x => fmt(x.value, 3), { num: true }],
          ["peer median", x => fmt(x.peer_median, 3), { num: true }], ["z", x => fmt(x.z, 1), { num: true }]], ev.peers.slice(0, 5)) : "",
        (ev.path || []).length ? el("p", { class: "muted" }, "path: ", ev.path.map(p => [SG.entityLink(p.from || p.src || ""), ` ${p.relation || p.kind || "→"} `]), SG.entityLink((ev.path[ev.path.length - 1].to || ev.path[ev.path.length - 1].dst || ""))) : "",
        c.action ? el("p", {}, el("strong", {}, "Action: "), c.action) : "");
    }));
  }
  return { render, part, cell, rca };
})();
