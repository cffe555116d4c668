// The 3D consensus graph: one node per answer per round at the projection's fixed
// coordinates, kNN links inside a round, and each seat's trail across rounds.
import ForceGraph3D from "3d-force-graph";
import * as THREE from "three";
import { clusterColor, ECHO, esc, excerpt, seatColor, VOICE } from "./util.js";

// The map has a fixed scale: points arrive in embedding units (unit vectors, so two answers
// are at most sqrt(2 - 2 cos) apart) and 1 unit is SCALE scene units. The view is fitted
// to the points but never to less than MIN_EXTENT around them, so answers that nearly
// agree stay close together instead of filling the canvas.
const SCALE = 200;
const MIN_EXTENT = 0.2 * SCALE; // the smallest view reaches 0.2 (cosine 0.98) either side of the centre
const NICE = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]; // scale bar lengths, embedding units
const FIT_AWAKE_MS = 30_000; // the longest the graph stays awake for a camera still on its way to a fit
const CANDIDATE = "#f8fafc"; // a consensus candidate's node
const VOTE = { accept: "rgba(52,211,153,0.85)", reject: "rgba(255,77,109,0.85)" };

export function webglAvailable() {
  try {
    const c = document.createElement("canvas");
    return !!(c.getContext("webgl2") || c.getContext("webgl"));
  } catch {
    return false;
  }
}

export class ConsensusGraph {
  constructor(container, { onSelect, scaleEl = null } = {}) {
    this.container = container;
    this.onSelect = onSelect;
    this.scaleEl = scaleEl; // the scale bar: what a distance on screen means in embedding space
    this.show = "all"; // "all" or a round number
    this.hoverSeat = null;
    this.autoFit = true;
    this.latestRound = null;
    this.fg = null;
    if (!webglAvailable()) throw new Error("WebGL is not available in this browser");
    const fg = new ForceGraph3D(container, { controlType: "orbit", rendererConfig: { antialias: true, alpha: true } });
    this.fg = fg;
    fg.backgroundColor("rgba(0,0,0,0)")
      .showNavInfo(false)
      .width(container.clientWidth || 600)
      .height(container.clientHeight || 420)
      // Positions are fixed by the projection: no force simulation at all.
      .cooldownTicks(0)
      .warmupTicks(0)
      .d3AlphaDecay(1)
      .enableNodeDrag(false)
      .nodeId("id")
      .nodeVal((n) => n.val)
      .nodeRelSize(3.2)
      .nodeResolution(16)
      .nodeOpacity(1)
      .nodeColor((n) => this.nodeColor(n))
      .nodeLabel((n) => this.label(n))
      .nodeThreeObjectExtend(true)
      .nodeThreeObject((n) => this.decoration(n))
      .nodeVisibility((n) => this.visible(n))
      .linkVisibility((l) => this.visible(l.source) && this.visible(l.target))
      .linkOpacity(1)
      .linkColor((l) => this.linkColor(l))
      .linkWidth((l) => this.linkWidth(l))
      .linkDirectionalArrowLength((l) => (l.kind === "trail" ? 5 : l.kind === "vote" ? 3.5 : 0))
      .linkDirectionalArrowRelPos(0.92)
      .linkDirectionalArrowColor((l) => this.linkColor(l, true))
      .onNodeHover((n) => {
        container.style.cursor = n ? "pointer" : "";
        const seat = n?.seat ?? null;
        if (seat !== this.hoverSeat) {
          this.hoverSeat = seat;
          fg.linkColor(fg.linkColor()).linkWidth(fg.linkWidth()); // re-evaluate accessors
        }
      })
      .onNodeClick((n) => this.onSelect?.(n.seat, n.round))
      .onEngineStop(() => {
        // Called just before the frame that places the nodes: fit once they are in place.
        if (this.autoFit) setTimeout(() => this.autoFit && this.fitView(500), 60);
      });
    fg.cameraPosition({ x: 0, y: 55, z: 340 });
    fg.controls().addEventListener?.("start", () => {
      this.autoFit = false;
    });
    // A faint floor grid gives the space some depth; a square is 0.1 apart in embedding space.
    const grid = new THREE.GridHelper(2.4 * SCALE, 24, 0x334155, 0x1f2937);
    grid.position.y = -0.6 * SCALE;
    grid.material.transparent = true;
    grid.material.opacity = 0.5;
    fg.scene().add(grid);
    this.grid = grid;

    new ResizeObserver(() => {
      const w = container.clientWidth;
      const hgt = container.clientHeight;
      if (w && hgt) {
        this.wake?.();
        fg.width(w).height(hgt);
        if (this.autoFit) this.fitView(0);
      }
    }).observe(container);
    // Render only while something can change: a while after an update or an interaction,
    // and never while scrolled out of view. An idle graph costs nothing.
    this.inView = true;
    this.idleTimer = null;
    for (const type of ["pointerdown", "pointermove", "wheel", "touchstart", "keydown"]) {
      container.addEventListener(type, () => this.wake(), { capture: true, passive: true });
    }
    new IntersectionObserver((entries) => {
      for (const e of entries) {
        this.inView = e.isIntersecting;
        if (this.inView) this.wake();
        else fg.pauseAnimation();
      }
    }).observe(container);
    this.wake();
  }

  wake(ms = 4000) {
    if (!this.inView) return;
    if (this.paused !== false) {
      this.fg.resumeAnimation();
      this.paused = false;
      const follow = () => {
        this.drawScale();
        if (!this.paused) requestAnimationFrame(follow);
      };
      requestAnimationFrame(follow);
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      // The camera still on its way to a fit (frames can take seconds on a busy software
      // renderer): stay awake until it gets there, for at most FIT_AWAKE_MS after the fit.
      if (!this.cameraArrived() && performance.now() < (this.fitAt ?? 0) + FIT_AWAKE_MS) return this.wake(ms);
      this.fg.pauseAnimation();
      this.paused = true;
    }, ms);
  }

  /** The camera got where the last fit sent it (true when there was none). */
  cameraArrived() {
    const target = this.fg.controls()?.target;
    if (this.fitDepth == null || !target) return true;
    return Math.abs(this.fg.camera().position.distanceTo(target) - this.fitDepth) < 0.5;
  }

  visible(n) {
    if (n == null) return false;
    const node = typeof n === "object" ? n : this.byId.get(n);
    return this.show === "all" || node?.round === this.show || !!this.alsoShow?.get(this.show)?.has(node?.id);
  }

  /** Replace the whole node set with round_done's points (every round so far). */
  update(run) {
    const rounds = run.rounds;
    this.latestRound = rounds.length ? Math.max(...rounds) : null;
    const nodes = [];
    this.byId = new Map();
    const colourOf = clusterColours(run);
    // A node's age counts the seat's own later nodes (a consensus draft is its seat's
    // newest node, however many vote rounds follow it).
    const seatRounds = new Map();
    for (const p of run.points ?? []) {
      if (p?.seat == null || p.round == null) continue;
      if (!seatRounds.has(p.seat)) seatRounds.set(p.seat, []);
      seatRounds.get(p.seat).push(p.round);
    }
    for (const list of seatRounds.values()) list.sort((a, b) => b - a);
    for (const p of run.points ?? []) {
      if (p == null || p.seat == null || p.round == null) continue;
      const id = `${p.seat}#${p.round}`;
      const x = (+p.x || 0) * SCALE;
      const y = (+p.y || 0) * SCALE;
      const z = (+p.z || 0) * SCALE;
      if (p.kind === "candidate") {
        const c = run.candidates?.get(p.version);
        const age = seatRounds.get(p.seat).indexOf(p.round);
        const node = {
          id, seat: p.seat, round: p.round, x, y, z, fx: x, fy: y, fz: z,
          kind: "candidate", version: p.version, cluster: -1, centrality: 0, voice: null, echo: false,
          latest: age === 0, age, val: 7, base: CANDIDATE,
          text: c?.done?.text ?? "", stage: c?.stage ?? null, model: c?.model ?? null, similarity: p.similarity ?? {},
        };
        nodes.push(node);
        this.byId.set(id, node);
        continue;
      }
      const answer = run.seats.get(p.seat)?.answers.get(p.round);
      const echo = !!p.echo || answer?.status === "echo";
      const age = seatRounds.get(p.seat).indexOf(p.round);
      const node = {
        id,
        seat: p.seat,
        round: p.round,
        x, y, z, fx: x, fy: y, fz: z,
        cluster: p.cluster,
        centrality: p.centrality ?? 0,
        voice: p.voice ?? null,
        echo,
        latest: age === 0,
        val: 1 + 5 * Math.max(0, Math.min(1, p.centrality ?? 0)) + (p.voice ? 2 : 0),
        age,
        base: echo ? ECHO : clusterColor(p.cluster >= 0 ? colourOf(p.round, p.cluster) : -1),
        text: answer?.text ?? "",
        reason: answer?.reason ?? run.roundDone.get(p.round)?.filtered?.[p.seat] ?? null,
      };
      nodes.push(node);
      this.byId.set(id, node);
    }
    const links = [];
    for (const [round, pairs] of run.links) {
      for (const l of pairs ?? []) {
        const [a, b, sim] = l;
        const s = `${a}#${round}`;
        const t = `${b}#${round}`;
        if (this.byId.has(s) && this.byId.has(t)) links.push({ source: s, target: t, kind: "knn", sim: +sim || 0, round });
      }
    }
    // Consensus votes: from each voter's draft (round 1) to the candidate it voted on, green
    // for accept, red for reject; a vote round shown alone shows its voters' drafts too.
    this.alsoShow = new Map();
    this.votes = { accept: 0, reject: 0 };
    for (const [round, d] of run.roundDone) {
      const target = `synthesizer#${round}`;
      if (!d?.votes || !this.byId.has(target)) continue;
      const extra = new Set();
      for (const [seat, b] of Object.entries(d.votes)) {
        const source = `${seat}#1`;
        if (b.cast === false || b.accept == null || !this.byId.has(source)) continue;
        const kind = b.accept ? "accept" : "reject";
        links.push({ source, target, kind: "vote", accept: b.accept, seat, round, objection: b.objection ?? "" });
        this.votes[kind] += 1;
        extra.add(source);
      }
      this.alsoShow.set(round, extra);
    }
    // Trails: each seat's consecutive rounds (a consensus run: candidate v1 -> v2 -> ...).
    const bySeat = new Map();
    for (const n of nodes) {
      if (!bySeat.has(n.seat)) bySeat.set(n.seat, []);
      bySeat.get(n.seat).push(n);
    }
    for (const [seat, list] of bySeat) {
      list.sort((a, b) => a.round - b.round);
      for (let i = 1; i < list.length; i++) {
        links.push({ source: list[i - 1].id, target: list[i].id, kind: "trail", seat, round: list[i].round });
      }
    }
    this.latestCount = nodes.filter((n) => n.latest).length;
    // Answers that agree sit on top of each other: their name labels stack instead of overlapping.
    this.labelRank = { all: stackLabels(nodes.filter((n) => n.latest)), round: new Map() };
    for (const r of new Set(nodes.map((n) => n.round))) {
      for (const [id, k] of stackLabels(nodes.filter((n) => n.round === r))) this.labelRank.round.set(id, k);
    }
    if (nodes.length) {
      // The floor sits under the points, centred on them.
      const c = centre(nodes);
      this.grid.position.set(c.x, Math.min(...nodes.map((n) => n.y)) - 0.25 * SCALE, c.z);
    }
    // A fresh accessor makes the graph rebuild its decorations (labels follow the latest round).
    this.fg.nodeThreeObject((n) => this.decoration(n)).graphData({ nodes, links });
    this.wake();
  }

  setShow(show) {
    this.wake();
    this.show = show;
    const fg = this.fg;
    fg.nodeVisibility(fg.nodeVisibility()).linkVisibility(fg.linkVisibility()).nodeColor(fg.nodeColor());
    fg.nodeThreeObject((n) => this.decoration(n));
    this.fitView(500);
  }

  fit() {
    this.wake();
    this.autoFit = true;
    this.fitView(500);
  }

  /** Aim at the centre of the visible nodes, just far enough that they all fit, keeping the angle. */
  fitView(ms = 0) {
    this.wake(); // the camera moves on frames: a paused graph would never get there
    const fg = this.fg;
    const nodes = fg.graphData().nodes.filter((n) => this.visible(n));
    if (!nodes.length) return;
    const c = centre(nodes);
    const cam = fg.camera();
    const target = fg.controls()?.target ?? new THREE.Vector3();
    const back = cam.position.clone().sub(target); // from the scene towards the camera
    if (back.lengthSq() < 1e-6) back.set(0, 0.15, 1);
    back.normalize();
    const right = new THREE.Vector3().crossVectors(cam.up, back).normalize();
    const up = new THREE.Vector3().crossVectors(back, right).normalize();
    const tv = Math.tan((cam.fov * Math.PI) / 360);
    const th = tv * cam.aspect;
    const pad = 18; // node radius and label room, in scene units
    // Never closer than MIN_EXTENT: a fixed scale, not "whatever spread there is fills the view".
    let dist = Math.max(60, (MIN_EXTENT + pad) / th, (MIN_EXTENT + pad) / tv);
    for (const n of nodes) {
      const o = new THREE.Vector3(n.x, n.y, n.z).sub(c);
      const w = o.dot(back);
      dist = Math.max(dist, w + (Math.abs(o.dot(right)) + pad) / th, w + (Math.abs(o.dot(up)) + pad) / tv);
    }
    dist *= 1.08;
    const pos = c.clone().add(back.multiplyScalar(dist));
    fg.cameraPosition({ x: pos.x, y: pos.y, z: pos.z }, { x: c.x, y: c.y, z: c.z }, ms);
    this.fitDepth = dist;
    this.fitAt = performance.now();
    this.drawScale(dist); // now, not a frame later: frames are slow on a software renderer
  }

  /** The scale bar: a NICE embedding distance drawn at the depth the camera looks at. */
  drawScale(depthAhead = null) {
    const el = this.scaleEl;
    if (!el) return;
    const nodes = this.fg.graphData().nodes;
    const cam = this.fg.camera();
    const target = this.fg.controls()?.target;
    const hgt = this.container.clientHeight;
    if (!nodes.length || !target || !hgt) {
      el.hidden = true;
      return;
    }
    const depth = depthAhead ?? cam.position.distanceTo(target); // where a transition ends, when known
    const pxPerUnit = (hgt / (2 * depth * Math.tan((cam.fov * Math.PI) / 360))) * SCALE; // px per embedding unit
    const d = NICE.find((x) => x * pxPerUnit >= 48) ?? NICE[NICE.length - 1];
    const px = Math.round(d * pxPerUnit);
    const text = `${d} apart · cosine ${cosineAt(d)}`;
    if (el.dataset.px === String(px) && el.dataset.text === text && !el.hidden) return;
    el.hidden = false;
    el.dataset.px = String(px);
    el.dataset.text = text;
    el.dataset.distance = String(d);
    el.querySelector(".map-scale-bar").style.width = `${px}px`;
    el.querySelector(".map-scale-text").textContent = text;
  }

  /** How far apart the shown nodes are on screen, in px (for tests: is agreement drawn as such). */
  screenSpread() {
    const nodes = this.fg.graphData().nodes.filter((n) => this.visible(n));
    const pts = nodes.map((n) => this.fg.graph2ScreenCoords(n.x, n.y, n.z));
    let max = 0;
    for (const a of pts) for (const b of pts) max = Math.max(max, Math.hypot(a.x - b.x, a.y - b.y));
    // settled: the camera got where the last fit sent it (its transition runs on frames)
    const settled = this.fitDepth != null && this.cameraArrived();
    return { px: max, width: this.container.clientWidth, height: this.container.clientHeight, settled };
  }

  clear() {
    this.wake();
    this.fitDepth = null;
    if (this.scaleEl) this.scaleEl.hidden = true;
    this.latestRound = null;
    this.byId = new Map();
    this.autoFit = true;
    this.show = "all";
    this.fg.graphData({ nodes: [], links: [] });
  }

  counts() {
    const d = this.fg.graphData();
    return { nodes: d.nodes.length, links: d.links.length, votes: { ...(this.votes ?? { accept: 0, reject: 0 }) } };
  }

  /** Cluster colour; earlier rounds fade when all rounds are shown. */
  nodeColor(n) {
    if (n.echo) return withAlpha(n.base, 0.5);
    const alpha = this.show !== "all" || n.age === 0 ? 0.95 : n.age === 1 ? 0.6 : 0.38;
    return withAlpha(n.base, alpha);
  }

  linkColor(l, arrow = false) {
    if (l.kind === "vote") {
      const hot = this.hoverSeat != null && (l.seat === this.hoverSeat || this.hoverSeat === "synthesizer");
      return hot || this.show !== "all" ? VOTE[l.accept ? "accept" : "reject"] : VOTE[l.accept ? "accept" : "reject"].replace("0.85", "0.5");
    }
    if (l.kind === "trail") {
      const hot = this.hoverSeat === l.seat;
      return withAlpha(seatColor(l.seat), hot ? 1 : arrow ? 0.85 : 0.55);
    }
    const hot = this.hoverSeat != null && (l.source?.seat === this.hoverSeat || l.target?.seat === this.hoverSeat);
    return `rgba(160,190,255,${hot ? 0.85 : (0.12 + 0.45 * Math.max(0, Math.min(1, l.sim))).toFixed(2)})`;
  }

  linkWidth(l) {
    if (l.kind === "vote") return this.hoverSeat === l.seat ? 1.4 : 0.8;
    if (l.kind !== "trail") return 0;
    return this.hoverSeat === l.seat ? 1.6 : 0.7;
  }

  label(n) {
    if (n.kind === "candidate") {
      const head = `<b>candidate v${n.version}</b> · ${n.stage === "revise" ? "revision" : "first candidate"}${n.model ? ` by ${esc(n.model)}` : ""} · voted on in round ${n.round}`;
      const sims = Object.entries(n.similarity).sort((a, b) => b[1] - a[1]);
      const near = sims.length ? `<div class="tip-sim">placed among the drafts it resembles: ${sims.map(([s, v]) => `<b style="color:${seatColor(s)}">${esc(s)}</b> ${(+v).toFixed(2)}`).join(" · ")}</div>` : "";
      return `<div class="tip"><div class="tip-head">${head}</div>${near}<div class="tip-text">${esc(excerpt(n.text, 320)) || "<i>(no text)</i>"}</div></div>`;
    }
    const voice = n.voice ? `<span class="tip-voice ${n.voice}">${n.voice} voice</span>` : "";
    const echo = n.echo ? `<span class="tip-echo">echo-filtered${n.reason ? `: ${esc(n.reason)}` : ""}</span>` : "";
    const cluster = n.cluster >= 0 ? `cluster ${n.cluster + 1}` : "filtered";
    return `<div class="tip"><div class="tip-head"><b style="color:${seatColor(n.seat)}">${esc(n.seat)}</b> · round ${n.round} · ${cluster} · centrality ${(+n.centrality).toFixed(2)}</div>${voice}${echo}<div class="tip-text">${esc(excerpt(n.text, 320)) || "<i>(no text)</i>"}</div></div>`;
  }

  /** Extra objects on top of the default sphere: a ring for the voices, a name on the latest round. */
  decoration(n) {
    if (!this.visible(n)) return null;
    // Name labels: every node of a single round; in the all-rounds view the latest round
    // (only its voices once the panel is large, to keep it legible; hover shows the rest).
    const showLabel = this.show !== "all" || (n.latest && (this.latestCount <= 6 || !!n.voice));
    if (!n.voice && !showLabel && !n.echo) return null;
    const group = new THREE.Group();
    const r = Math.cbrt(n.val) * 3.2;
    if (n.voice) group.add(ringSprite(VOICE[n.voice] ?? "#fff", r * 3.4));
    if (n.echo) group.add(ringSprite(ECHO, r * 2.8, true));
    if (showLabel) {
      const s = n.kind === "candidate" ? textSprite(`candidate v${n.version}`, CANDIDATE) : textSprite(n.seat, seatColor(n.seat));
      const rank = (this.show === "all" ? this.labelRank?.all : this.labelRank?.round)?.get(n.id) ?? 0;
      s.position.set(0, r + 7 + 8 * rank, 0);
      group.add(s);
    }
    return group;
  }
}

/**
 * Cluster indices are per round; give a round's cluster the colour of the previous round's
 * cluster it shares most seats with, so a camp keeps its colour as the debate goes on.
 */
function clusterColours(run) {
  const map = new Map(); // "round:index" -> colour index
  let prev = []; // [{seats: Set, colour}]
  let next = 0;
  for (const r of [...run.rounds].sort((a, b) => a - b)) {
    const clusters = run.roundDone.get(r)?.clusters ?? [];
    const used = new Set();
    const cur = [];
    // biggest clusters choose first
    const order = clusters.map((c, i) => [i, c]).sort((a, b) => b[1].length - a[1].length);
    for (const [i, seats] of order) {
      let best = null;
      let bestOverlap = 0;
      for (const p of prev) {
        if (used.has(p.colour)) continue;
        const overlap = seats.filter((s) => p.seats.has(s)).length;
        if (overlap > bestOverlap) [best, bestOverlap] = [p.colour, overlap];
      }
      const colour = best ?? next;
      if (best == null) next += 1;
      else next = Math.max(next, colour + 1);
      used.add(colour);
      map.set(`${r}:${i}`, colour);
      cur.push({ seats: new Set(seats), colour });
    }
    prev = cur;
  }
  return (round, index) => map.get(`${round}:${index}`) ?? index;
}

/** For each node, how many labels below it it must clear: 0 unless another sits within reach. */
function stackLabels(list) {
  const reach = 0.12 * SCALE; // about a label's width
  const rank = new Map();
  list.forEach((n, i) => {
    let k = 0;
    for (let j = 0; j < i; j++) {
      const m = list[j];
      if (Math.hypot(m.x - n.x, m.y - n.y, m.z - n.z) < reach) k = Math.max(k, rank.get(m.id) + 1);
    }
    rank.set(n.id, k);
  });
  return rank;
}

function centre(nodes) {
  const c = new THREE.Vector3();
  for (const n of nodes) c.add(new THREE.Vector3(n.x, n.y, n.z));
  return c.divideScalar(nodes.length);
}

/** The cosine of two unit vectors d apart: 1 - d^2 / 2, with the digits that tell it from 1. */
function cosineAt(d) {
  const cos = 1 - (d * d) / 2;
  return String(parseFloat(cos.toFixed(cos >= 0.9999 ? 5 : cos >= 0.99 ? 4 : 3)));
}

function withAlpha(hex, a) {
  const c = new THREE.Color(hex);
  return `rgba(${Math.round(c.r * 255)},${Math.round(c.g * 255)},${Math.round(c.b * 255)},${a})`;
}

function ringSprite(color, size, dashed = false) {
  const cv = document.createElement("canvas");
  cv.width = cv.height = 128;
  const g = cv.getContext("2d");
  g.strokeStyle = color;
  g.lineWidth = 9;
  if (dashed) g.setLineDash([14, 10]);
  g.beginPath();
  g.arc(64, 64, 52, 0, Math.PI * 2);
  g.stroke();
  const tex = new THREE.CanvasTexture(cv);
  tex.colorSpace = THREE.SRGBColorSpace;
  const sp = new THREE.Sprite(new THREE.SpriteMaterial({ map: tex, transparent: true, depthWrite: false }));
  sp.scale.set(size, size, 1);
  return sp;
}

function textSprite(text, color) {
  const font = 600;
  const cv = document.createElement("canvas");
  const g = cv.getContext("2d");
  const px = 40;
  g.font = `${font} ${px}px system-ui, sans-serif`;
  const w = Math.ceil(g.measureText(text).width) + 24;
  cv.width = w;
  cv.height = px + 20;
  g.font = `${font} ${px}px system-ui, sans-serif`;
  g.fillStyle = "rgba(10,14,22,0.72)";
  roundRect(g, 0, 0, cv.width, cv.height, 14);
  g.fill();
  g.fillStyle = color;
  g.textBaseline = "middle";
  g.fillText(text, 12, cv.height / 2 + 2);
  const tex = new THREE.CanvasTexture(cv);
  tex.colorSpace = THREE.SRGBColorSpace;
  const sp = new THREE.Sprite(new THREE.SpriteMaterial({ map: tex, transparent: true, depthWrite: false }));
  const hgt = 7;
  sp.scale.set((hgt * cv.width) / cv.height, hgt, 1);
  return sp;
}

function roundRect(g, x, y, w, h, r) {
  g.beginPath();
  g.moveTo(x + r, y);
  g.arcTo(x + w, y, x + w, y + h, r);
  g.arcTo(x + w, y + h, x, y + h, r);
  g.arcTo(x, y + h, x, y, r);
  g.arcTo(x, y, x + w, y, r);
  g.closePath();
}
