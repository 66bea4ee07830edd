// ringkv dashboard: polls /api/cluster twice a second and redraws the ring.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const R = 180;
const POLL_MS = 500;
let since = 0;
let previous = new Map();
let keyInfo = null;

// Token fraction: the first 8 bytes of SHA-1 as a fraction of 2^64.
function fraction(hex) {
  return parseInt(hex.slice(0, 8), 16) / 2 ** 32 + parseInt(hex.slice(8, 16), 16) / 2 ** 64;
}

function point(f, r) {
  const a = 2 * Math.PI * f;
  return [r * Math.sin(a), -r * Math.cos(a)];
}

// Distinct arc colours, by the node's place in the (name-sorted) table.
const PALETTE = ["#58a6ff", "#d2a8ff", "#56d4dd", "#f0883e", "#a5d6ff", "#7ee787", "#ff7b72", "#e3b341"];
let colourOf = new Map();

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Where a node's dot sits: its first token (SHA-1 of its name when it has
// one token, of NAME#0 when it has more).
function dotToken(n) {
  return n.tokens && n.tokens.length ? n.tokens[0] : n.token;
}

function stateOf(n) {
  if (n.state === "down" || n.state === "leaving" || n.state === "left") return n.state;
  return n.suspect ? "suspect" : "up";
}

function arcPath(start, end, r) {
  let span = end - start;
  if (span <= 0) span += 1;
  if (span >= 0.9999) {
    const [x, y] = point(0, r);
    return `M ${x} ${y} A ${r} ${r} 0 1 1 ${x - 0.01} ${y} Z`;
  }
  const [x1, y1] = point(start, r);
  const [x2, y2] = point(start + span, r);
  return `M ${x1} ${y1} A ${r} ${r} 0 ${span > 0.5 ? 1 : 0} 1 ${x2} ${y2}`;
}

function drawRing(view) {
  const svg = document.getElementById("ring");
  svg.replaceChildren();
  colourOf = new Map(view.status.nodes.map((n, i) => [n.name, PALETTE[i % PALETTE.length]]));
  svg.appendChild(el("circle", { class: "track", r: R, cx: 0, cy: 0 }));
  for (const a of view.arcs) {
    svg.appendChild(el("path", {
      class: "arc", "data-node": a.node, d: arcPath(a.start, a.end, R),
      stroke: colourOf.get(a.node) || PALETTE[0],
    }));
  }
  const nodes = view.status.nodes;
  const up = nodes.filter((n) => n.state === "up").length;
  svg.appendChild(el("text", { x: 0, y: -6, "text-anchor": "middle" }, `${up} / ${nodes.length} up`));
  svg.appendChild(el("text", { x: 0, y: 14, "text-anchor": "middle", class: "label-sub" },
    `N = ${view.replication} · view ${view.epoch}`));
  if (keyInfo) {
    const [kx, ky] = point(keyInfo.position, R - 34);
    for (const name of keyInfo.nodes) {
      const n = nodes.find((m) => m.name === name);
      if (!n) continue;
      const [nx, ny] = point(fraction(dotToken(n)), R);
      svg.appendChild(el("line", { class: "keyline", x1: kx, y1: ky, x2: nx, y2: ny }));
    }
    svg.appendChild(el("circle", { class: "keypos", cx: kx, cy: ky, r: 5 }));
  }
  for (const n of nodes) {
    const f = fraction(dotToken(n));
    const st = stateOf(n);
    const self = n.name === view.status.name ? " self" : "";
    const g = el("g", { class: `node ${st}${self}`, "data-name": n.name, "data-state": st });
    const [x, y] = point(f, R);
    g.appendChild(el("circle", { cx: x, cy: y, r: 11 }));
    const [lx, ly] = point(f, R + 38);
    const anchor = Math.abs(lx) < 20 ? "middle" : lx > 0 ? "start" : "end";
    g.appendChild(el("text", { x: lx, y: ly, "text-anchor": anchor }, n.name));
    g.appendChild(el("text", { x: lx, y: ly + 14, "text-anchor": anchor, class: "label-sub" },
      `${n.keys} keys`));
    g.appendChild(el("title", {}, `${n.name} ${st} · token ${n.token.slice(0, 10)} · ${n.peer}`));
    svg.appendChild(g);
  }
}

function drawTable(view) {
  const body = document.querySelector("#nodes tbody");
  const rows = [];
  const now = new Map();
  for (const n of view.status.nodes) {
    const st = stateOf(n);
    now.set(n.name, st);
    const tr = document.createElement("tr");
    tr.dataset.name = n.name;
    if (previous.size && previous.get(n.name) !== st) tr.className = "changed";
    const hb = n.last_heartbeat_ms == null ? "never" : `${n.last_heartbeat_ms} ms`;
    // The peer's wall clock against this node's: skewed past clock_warn_ms,
    // refused past max_clock_skew_ms.
    const clock = (view.status.clocks || {})[n.name];
    const clockText = clock ? `${clock.offset_ms >= 0 ? "+" : ""}${clock.offset_ms.toFixed(0)} ms` : "";
    // A node whose commit log cannot be written serves reads only.
    const shownState = n.write_fenced ? `${st}, write-fenced` : st;
    // Its share of the replicas over the mean (1.00x: balanced).
    const balance = n.state === "up" ? `${(n.balance || 0).toFixed(2)}x` : "";
    const cells = [n.name, shownState, `${(n.share * 100).toFixed(1)}%`, balance, String(n.keys), hb, clockText];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (i === 1) td.className = `state ${st}`;
      if (i === 1 && n.write_fenced) {
        td.classList.add("fenced");
        td.title = `takes no writes: ${n.write_fenced}`;
      }
      if (i >= 2) td.classList.add("num");
      if (i === 6 && clock) td.classList.add("clock", clock.standing);
      tr.appendChild(td);
    });
    rows.push(tr);
  }
  // Keep the flash of rows that changed recently.
  for (const tr of rows) {
    const old = body.querySelector(`tr[data-name="${CSS.escape(tr.dataset.name)}"]`);
    if (old && old.className === "changed" && !tr.className && old.dataset.until > Date.now()) {
      tr.className = "changed";
      tr.dataset.until = old.dataset.until;
    } else if (tr.className) {
      tr.dataset.until = Date.now() + 1500;
    }
  }
  body.replaceChildren(...rows);
  previous = now;
}

function addEvents(events) {
  const list = document.getElementById("events");
  for (const e of events) {
    since = Math.max(since, e.seq);
    const li = document.createElement("li");
    li.className = e.kind;
    const t = document.createElement("time");
    t.textContent = new Date(e.unix_ms).toLocaleTimeString();
    li.append(t, e.text);
    list.prepend(li);
  }
  while (list.children.length > 100) list.lastChild.remove();
}

async function lookupKey() {
  const key = document.getElementById("key").value;
  const out = document.getElementById("preflist");
  if (!key) {
    keyInfo = null;
    out.replaceChildren();
    return;
  }
  const r = await fetch(`/preflist?key=${encodeURIComponent(key)}`);
  keyInfo = await r.json();
  out.replaceChildren(...keyInfo.nodes.map((n, i) => {
    const li = document.createElement("li");
    li.textContent = i === 0 ? `${n} (owner)` : n;
    if (i === 0) li.className = "owner";
    return li;
  }));
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const r = await fetch(`/api/cluster?since=${since}`, { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const view = await r.json();
    // Operations in progress here: a leave, strays held for a node down.
    const ops = [];
    const lv = view.status.leaving;
    if (lv) ops.push(`leaving: ${lv.phase}${lv.phase === "streaming" ? ` (pass ${lv.pass}, ${Math.round(lv.leaves_done / 655.36)}%, ${lv.bytes_sent} bytes sent, about ${lv.bytes_left || 0} left to look at)` : ""}`);
    if (view.status.handoff_backlog) ops.push(`${view.status.handoff_backlog} writes held for a node that is down`);
    document.getElementById("me").textContent =
      `as seen by ${view.status.name} · generation ${view.status.generation} · ${view.status.keys} keys here` +
      ops.map((o) => ` · ${o}`).join("");
    if (document.getElementById("key").value) await lookupKey();
    drawRing(view);
    drawTable(view);
    addEvents(view.events);
    conn.textContent = `updated ${new Date().toLocaleTimeString()}`;
    conn.classList.remove("bad");
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    conn.textContent = `node unreachable: ${e.message}`;
    conn.classList.add("bad");
  }
}

let typing = null;
document.getElementById("keyform").addEventListener("submit", (e) => e.preventDefault());
document.getElementById("key").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(lookupKey, 150);
});

async function loop() {
  await poll();
  setTimeout(loop, POLL_MS);
}
loop();
