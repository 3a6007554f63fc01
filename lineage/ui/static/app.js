/* lineage ui: the lineage graph, version panel, cascades and diffs.
 *
 * One script for the served app (data from the JSON endpoints of `lineage ui`) and
 * the HTML export (data embedded in <script type="application/json" id="lineage-data">).
 * Every string that comes from the workspace (names, tags, messages, test names) is
 * put into the page as text (textContent, createTextNode, attribute values): never as
 * markup. Layout: dagre (vendored), one layered layout per connected part of the graph.
 * Formatted with prettier (`--print-width 100`).
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------- constants
  const NODE_W = 212;
  const NODE_H = 66;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KIND_COLOURS = {
    base: "#4c6ef5",
    finetune: "#2f9e44",
    adapter: "#f08c00",
    distill: "#9c36b5",
    quantize: "#1098ad",
    prune: "#e03131",
    merge: "#5c940d",
    other: "#868e96",
  };
  const KNOWN_ALIASES = ["champion", "candidate", "previous"];
  const FONT = getComputedStyle(document.body).fontFamily || "sans-serif";
  const OUTCOME_LABELS = {
    promoted: "promoted",
    candidate: "candidate",
    failed: "failed",
    blocked: "blocked",
    skipped: "skipped",
    upstream: "upstream",
    replaced: "replaced",
  };

  // ---------------------------------------------------------------- DOM helpers
  /** An HTML element; string children become text nodes (never markup). */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  /** An SVG element, the same way. */
  function s(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "on") {
        for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
      } else if (key === "text") {
        node.textContent = String(value);
      } else {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  const $ = (id) => document.getElementById(id);

  /** Only http(s) links are ever made clickable. */
  function safeHref(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  const measureCanvas = document.createElement("canvas").getContext("2d");
  function textWidth(text, font) {
    measureCanvas.font = font;
    return measureCanvas.measureText(text).width;
  }

  /** `text` cut with an ellipsis to fit `width` pixels in `font`. */
  function fit(text, width, font) {
    if (textWidth(text, font) <= width) return text;
    let lo = 0;
    let hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (textWidth(text.slice(0, mid) + "…", font) <= width) lo = mid;
      else hi = mid - 1;
    }
    return text.slice(0, lo) + "…";
  }

  function formatBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = n;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return (unit === 0 ? String(value) : value.toFixed(value < 10 ? 2 : 1)) + " " + units[unit];
  }

  function formatRatio(ratio) {
    return (ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(1)) + "×";
  }

  function formatNumber(value) {
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 0.001 || abs >= 1e6)) return value.toExponential(2);
    return value
      .toFixed(abs < 1 ? 4 : 3)
      .replace(/0+$/, "")
      .replace(/\.$/, "");
  }

  function formatTime(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return date.toLocaleString(undefined, {
      year: "numeric",
      month: "short",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
    });
  }

  function formatDuration(startIso, endIso) {
    if (!startIso || !endIso) return "–";
    const seconds = (new Date(endIso) - new Date(startIso)) / 1000;
    if (!Number.isFinite(seconds) || seconds < 0) return "–";
    if (seconds < 90) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function naturalCompare(a, b) {
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function aliasClass(alias) {
    return "a-" + (KNOWN_ALIASES.includes(alias) ? alias : "other");
  }

  function shortHash(value) {
    if (!value) return "–";
    const text = String(value);
    return text.length > 20 ? text.slice(0, 12) + "…" + text.slice(-6) : text;
  }

  // ---------------------------------------------------------------- data source
  /** Where data comes from: the embedded export, or the server's JSON endpoints. */
  function makeSource() {
    const embedded = $("lineage-data");
    if (embedded) {
      const data = JSON.parse(embedded.textContent);
      return {
        embedded: true,
        initial: data.initial || {},
        graph: async () => data.snapshot,
        statuses: async () => data.snapshot.statuses,
        storage: async () => data.snapshot.storage || null,
        version: async (ref) => {
          if (data.details && data.details[ref]) return data.details[ref];
          throw new Error("this export has no details of " + ref);
        },
        diff: async (a, b) => {
          const key = a + "|" + b;
          if (data.diffs && data.diffs[key]) return data.diffs[key];
          throw new Error(
            "This file is a snapshot: diffs are computed by the server. Run `lineage ui` " +
              "(or `lineage diff " +
              a +
              " " +
              b +
              "`) in the workspace.",
          );
        },
      };
    }
    async function get(path) {
      const response = await fetch(path, { headers: { Accept: "application/json" } });
      let body = null;
      try {
        body = await response.json();
      } catch (err) {
        throw new Error("bad answer from the server (" + response.status + ")");
      }
      if (!response.ok)
        throw new Error(body && body.error ? body.error : "HTTP " + response.status);
      return body;
    }
    const q = encodeURIComponent;
    return {
      embedded: false,
      initial: {},
      graph: () => get("api/graph"),
      statuses: () => get("api/status"),
      storage: () => get("api/storage"),
      version: (ref) => get("api/version?ref=" + q(ref)),
      diff: (a, b) => get("api/diff?a=" + q(a) + "&b=" + q(b)),
    };
  }

  // ---------------------------------------------------------------- state
  const state = {
    snap: null,
    byId: new Map(),
    byRef: new Map(),
    statuses: {},
    storage: null,
    mode: "current",
    dir: "LR",
    collapsed: new Set(),
    selected: null,
    search: "",
    matchIndex: -1,
    cascadeId: null,
    tab: "overview",
    view: { k: 1, x: 0, y: 0 },
    layout: null,
    shown: null,
    detailToken: 0,
    diff: { a: "", b: "" },
  };
  const source = makeSource();
  const timings = {};
  window.lineageUi = { timings, state };

  // ---------------------------------------------------------------- graph model
  function indexSnapshot(snap) {
    state.snap = snap;
    state.byId = new Map(snap.versions.map((v) => [v.id, v]));
    state.byRef = new Map(snap.versions.map((v) => [v.ref, v]));
    state.currentIds = new Set(snap.current);
    if (snap.statuses) state.statuses = snap.statuses;
    if (snap.statuses === null) state.noStatuses = true;
    if (snap.storage) state.storage = snap.storage;
  }

  function statusOf(version) {
    const found = state.statuses[version.ref];
    return found ? found.status : "unknown";
  }

  /** The versions and edges to draw: the mode, minus collapsed subtrees. */
  function visibleGraph() {
    const all = state.mode === "all" || state.cascadeId !== null;
    const ids = all ? new Set(state.byId.keys()) : new Set(state.currentIds);
    // The current family keeps next-version edges between the versions it shows, so an
    // older version kept as a parent stays joined to its model's newest one.
    let edges = state.snap.edges.filter((e) => ids.has(e.parent) && ids.has(e.child));
    const incoming = new Map();
    const outgoing = new Map();
    for (const e of edges) {
      if (!incoming.has(e.child)) incoming.set(e.child, []);
      if (!outgoing.has(e.parent)) outgoing.set(e.parent, []);
      incoming.get(e.child).push(e);
      outgoing.get(e.parent).push(e);
    }
    const derivedChildren = new Map();
    for (const e of edges) {
      if (e.edge_type !== "derivation") continue;
      derivedChildren.set(e.parent, (derivedChildren.get(e.parent) || 0) + 1);
    }
    // Collapsing a version hides what is derived from it, unless reachable otherwise.
    let hidden = new Map();
    if (state.collapsed.size) {
      const seen = new Set();
      const stack = [...ids].filter((id) => !incoming.has(id));
      while (stack.length) {
        const id = stack.pop();
        if (seen.has(id)) continue;
        seen.add(id);
        for (const e of outgoing.get(id) || []) {
          if (state.collapsed.has(id) && e.edge_type === "derivation") continue;
          stack.push(e.child);
        }
      }
      for (const id of state.collapsed) if (!ids.has(id)) state.collapsed.delete(id);
      for (const id of ids) if (!seen.has(id)) hidden.set(id, true);
      for (const id of hidden.keys()) ids.delete(id);
      edges = edges.filter((e) => ids.has(e.parent) && ids.has(e.child));
    }
    const hiddenBelow = new Map();
    if (hidden.size) {
      for (const id of state.collapsed) {
        let count = 0;
        const seen = new Set([id]);
        const stack = [id];
        while (stack.length) {
          const current = stack.pop();
          for (const e of outgoing.get(current) || []) {
            if (seen.has(e.child)) continue;
            seen.add(e.child);
            if (hidden.has(e.child)) {
              count += 1;
              stack.push(e.child);
            }
          }
        }
        hiddenBelow.set(id, count);
      }
    }
    return { ids, edges, derivedChildren, hiddenBelow };
  }

  function edgeLabel(edge) {
    return edge.edge_type === "versioning" ? "next" : edge.kind || "derived";
  }

  // ---------------------------------------------------------------- layout
  const LABEL_FONT = "600 10.5px " + FONT;

  function components(ids, edges) {
    const parent = new Map();
    for (const id of ids) parent.set(id, id);
    const find = (x) => {
      while (parent.get(x) !== x) {
        parent.set(x, parent.get(parent.get(x)));
        x = parent.get(x);
      }
      return x;
    };
    for (const e of edges) {
      const a = find(e.parent);
      const b = find(e.child);
      if (a !== b) parent.set(a, b);
    }
    const groups = new Map();
    for (const id of ids) {
      const root = find(id);
      if (!groups.has(root)) groups.set(root, { ids: [], edges: [] });
      groups.get(root).ids.push(id);
    }
    for (const e of edges) groups.get(find(e.parent)).edges.push(e);
    return [...groups.values()];
  }

  function layoutComponent(part, dir) {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    const big = part.ids.length > 250;
    g.setGraph({
      rankdir: dir,
      nodesep: dir === "LR" ? 26 : 34,
      ranksep: dir === "LR" ? 64 : 58,
      edgesep: 14,
      marginx: 0,
      marginy: 0,
      ranker: big ? "tight-tree" : "network-simplex",
    });
    g.setDefaultEdgeLabel(() => ({}));
    const order = [...part.ids].sort((a, b) => {
      const va = state.byId.get(a);
      const vb = state.byId.get(b);
      return naturalCompare(va.model, vb.model) || va.number - vb.number;
    });
    for (const id of order) g.setNode(String(id), { width: NODE_W, height: NODE_H });
    part.edges.forEach((e, index) => {
      const label = edgeLabel(e);
      // Heavier next-version edges keep a model's versions in one straight row.
      g.setEdge(
        String(e.parent),
        String(e.child),
        {
          width: textWidth(label, LABEL_FONT) + 14,
          height: 18,
          labelpos: "c",
          weight: e.edge_type === "versioning" ? 2 : 1,
        },
        "e" + index,
      );
    });
    dagre.layout(g, big ? { disableOptimalOrderHeuristic: true } : undefined);
    const nodes = new Map();
    for (const id of part.ids) {
      const n = g.node(String(id));
      nodes.set(id, { x: n.x - NODE_W / 2, y: n.y - NODE_H / 2 });
    }
    const edges = part.edges.map((e, index) => {
      const info = g.edge(String(e.parent), String(e.child), "e" + index);
      return { edge: e, points: info.points, lx: info.x, ly: info.y };
    });
    const graph = g.graph();
    return { nodes, edges, width: graph.width || NODE_W, height: graph.height || NODE_H };
  }

  /** Lay out each connected part, then shelve the parts into a block of about the
   * canvas's shape, biggest first. */
  function layout(graph, dir) {
    const started = performance.now();
    const parts = components(graph.ids, graph.edges)
      .map((part) => layoutComponent(part, dir))
      .sort((a, b) => b.width * b.height - a.width * a.height);
    const gap = 70;
    const canvas = $("canvas").getBoundingClientRect();
    const aspect = Math.max(0.5, (canvas.width || 1200) / (canvas.height || 800));
    const area = parts.reduce((sum, p) => sum + (p.width + gap) * (p.height + gap), 0);
    const widest = parts.reduce((m, p) => Math.max(m, p.width), 0);
    const rowWidth = Math.max(widest, Math.sqrt(area * aspect));
    const nodes = new Map();
    const edges = [];
    // Where a view too big to fit starts: the leftmost root of the biggest part.
    let start = null;
    if (parts.length) {
      for (const [id, p] of parts[0].nodes) {
        if (start === null || p.x < start.x || (p.x === start.x && p.y < start.y))
          start = { id, x: p.x, y: p.y };
      }
    }
    let x = 0;
    let y = 0;
    let rowHeight = 0;
    let width = 0;
    for (const part of parts) {
      if (x > 0 && x + part.width > rowWidth) {
        x = 0;
        y += rowHeight + gap;
        rowHeight = 0;
      }
      for (const [id, p] of part.nodes) nodes.set(id, { x: p.x + x, y: p.y + y });
      for (const e of part.edges) {
        edges.push({
          edge: e.edge,
          points: e.points.map((p) => ({ x: p.x + x, y: p.y + y })),
          lx: e.lx + x,
          ly: e.ly + y,
        });
      }
      x += part.width + gap;
      width = Math.max(width, x - gap);
      rowHeight = Math.max(rowHeight, part.height);
    }
    timings.layout_ms = performance.now() - started;
    return { nodes, edges, width, height: y + rowHeight, start: start && start.id };
  }

  /** d3's basis spline through dagre's edge points. */
  function splinePath(points) {
    if (points.length < 3) {
      const [a, b] = [points[0], points[points.length - 1]];
      return `M${a.x},${a.y}L${b.x},${b.y}`;
    }
    let d = `M${points[0].x},${points[0].y}`;
    let [x0, y0, x1, y1] = [points[0].x, points[0].y, points[0].x, points[0].y];
    const bezier = (x, y) => {
      d += `C${(2 * x0 + x1) / 3},${(2 * y0 + y1) / 3} ${(x0 + 2 * x1) / 3},${(y0 + 2 * y1) / 3} ${
        (x0 + 4 * x1 + x) / 6
      },${(y0 + 4 * y1 + y) / 6}`;
    };
    points.forEach((p, i) => {
      if (i === 1) {
        // second point: nothing drawn yet
      } else if (i === 2) {
        d += `L${(5 * x0 + x1) / 6},${(5 * y0 + y1) / 6}`;
        bezier(p.x, p.y);
      } else if (i > 2) {
        bezier(p.x, p.y);
      }
      [x0, y0, x1, y1] = [x1, y1, p.x, p.y];
    });
    bezier(x1, y1);
    d += `L${x1},${y1}`;
    return d;
  }

  // ---------------------------------------------------------------- drawing
  const TITLE_FONT = "650 13px " + FONT;
  const SUB_FONT = "400 11px " + FONT;
  const BADGE_FONT = "700 10px " + FONT;

  function render() {
    const started = performance.now();
    const graph = visibleGraph();
    state.shown = graph;
    const placed = layout(graph, state.dir);
    state.layout = placed;
    const viewport = clear($("viewport"));
    viewport.appendChild(
      s("clipPath", { id: "node-clip" }, s("rect", { width: NODE_W, height: NODE_H, rx: 10 })),
    );
    const edgeLayer = s("g", { class: "edges" });
    const labelLayer = s("g", { class: "edge-labels" });
    const nodeLayer = s("g", { class: "nodes" });
    viewport.append(edgeLayer, labelLayer, nodeLayer);
    state.edgeEls = [];
    for (const placedEdge of placed.edges) {
      const e = placedEdge.edge;
      const type = e.edge_type === "versioning" ? "versioning" : "derivation";
      const path = s("path", {
        class: "edge " + type,
        d: splinePath(placedEdge.points),
        "marker-end": "url(#arrow)",
      });
      const from = state.byId.get(e.parent).ref;
      const to = state.byId.get(e.child).ref;
      path.appendChild(s("title", { text: `${from} → ${to}: ${edgeLabel(e)}` }));
      edgeLayer.appendChild(path);
      const label = edgeLabel(e);
      const w = textWidth(label, LABEL_FONT) + 12;
      const tag = s(
        "g",
        {
          class: "edge-label " + type,
          transform: `translate(${placedEdge.lx - w / 2},${placedEdge.ly - 9})`,
        },
        s("rect", { width: w, height: 18, rx: 9 }),
        s("text", { x: w / 2, y: 12.5, "text-anchor": "middle", text: label }),
      );
      if (type === "derivation") {
        const colour = KIND_COLOURS[e.kind] || KIND_COLOURS.other;
        tag.querySelector("text").setAttribute("fill", colour);
      }
      labelLayer.appendChild(tag);
      state.edgeEls.push({ edge: e, path, tag });
    }
    state.nodeEls = new Map();
    for (const [id, pos] of placed.nodes) {
      const el = drawNode(state.byId.get(id), pos, graph);
      nodeLayer.appendChild(el);
      state.nodeEls.set(id, el);
    }
    $("empty").hidden = placed.nodes.size > 0;
    $("expand-all").hidden = state.collapsed.size === 0;
    applyOverlay();
    timings.render_ms = performance.now() - started;
    updateStatusLine();
  }

  function drawNode(version, pos, graph) {
    const status = statusOf(version);
    const isOld = !version.latest;
    const g = s("g", {
      class: `node s-${status}` + (isOld ? " old" : ""),
      transform: `translate(${pos.x},${pos.y})`,
      "data-ref": version.ref,
      "data-id": version.id,
      "data-status": status,
      tabindex: 0,
      role: "button",
      "aria-label": version.ref,
    });
    g.appendChild(s("rect", { class: "node-bg", width: NODE_W, height: NODE_H, rx: 10 }));
    g.appendChild(
      s("rect", { class: "node-stripe", width: 6, height: NODE_H, "clip-path": "url(#node-clip)" }),
    );
    const numberText = "@" + version.number;
    const numberWidth = textWidth(numberText, TITLE_FONT.replace("650", "500"));
    const title = s("text", { class: "node-title", x: 18, y: 23 });
    title.appendChild(
      document.createTextNode(fit(version.model, NODE_W - 36 - numberWidth, TITLE_FONT)),
    );
    title.appendChild(s("tspan", { class: "node-ver", dx: 3, text: numberText }));
    g.appendChild(title);
    const kind = version.kind || "base";
    const recipe = version.recipe && version.recipe !== kind ? " · " + version.recipe : "";
    g.appendChild(
      s("circle", {
        class: "kind-dot",
        cx: 22,
        cy: 38,
        r: 3.5,
        fill: KIND_COLOURS[kind] || KIND_COLOURS.other,
      }),
    );
    g.appendChild(
      s("text", {
        class: "node-sub",
        x: 31,
        y: 42,
        text: fit(kind + recipe, NODE_W - 50, SUB_FONT),
      }),
    );
    g.appendChild(s("text", { class: "node-tests", x: 18, y: 58, text: testsLine(version) }));
    // Alias badges sit on the top border, right-aligned.
    let right = NODE_W - 10;
    for (const alias of [...version.aliases].reverse()) {
      const text = fit(alias, 90, BADGE_FONT);
      const w = textWidth(text, BADGE_FONT) + 12;
      right -= w;
      g.appendChild(
        s(
          "g",
          { class: "badge " + aliasClass(alias), transform: `translate(${right},-8)` },
          s("rect", { width: w, height: 16, rx: 8 }),
          s("text", { x: w / 2, y: 11.5, "text-anchor": "middle", text }),
        ),
      );
      right -= 4;
    }
    const hiddenCount = graph.hiddenBelow.get(version.id);
    const collapsed = state.collapsed.has(version.id);
    if (collapsed || graph.derivedChildren.get(version.id)) {
      const label = collapsed ? "+" + (hiddenCount || 0) : "−";
      const w = Math.max(22, textWidth(label, BADGE_FONT) + 12);
      const toggle = s(
        "g",
        {
          class: "toggle" + (collapsed ? " collapsed" : ""),
          transform: `translate(${NODE_W - w - 8},${NODE_H - 24})`,
          "data-toggle": version.id,
        },
        s("title", {
          text: collapsed ? "Expand what is derived from it" : "Collapse what is derived from it",
        }),
        s("rect", { width: w, height: 17, rx: 8.5, class: "toggle-bg" }),
        s("text", { x: w / 2, y: 12.5, "text-anchor": "middle", text: label }),
      );
      g.appendChild(toggle);
    }
    g.appendChild(s("title", { text: nodeTooltip(version) }));
    return g;
  }

  function testsLine(version) {
    const found = state.statuses[version.ref];
    if (state.noStatuses) return "";
    if (!found) return "…";
    const t = found.tests;
    if (found.status === "blocked") return "⏸ blocked by a failed parent";
    if (!t.total) return "no tests";
    if (t.failed) return `✗ ${t.failed} of ${t.total} failed`;
    if (t.passed === t.total) return `✓ ${t.total}/${t.total} passed`;
    if (!t.passed) return t.total === 1 ? "1 test, not run" : `${t.total} tests, none run`;
    return `${t.passed}/${t.total} passed · ${t.untested} not run`;
  }

  function nodeTooltip(version) {
    const lines = [version.ref, "kind: " + (version.kind || "base")];
    if (version.recipe) lines.push("recipe: " + version.recipe);
    if (version.aliases.length) lines.push("aliases: " + version.aliases.join(", "));
    if (version.tags.length) lines.push("tags: " + version.tags.join(", "));
    if (version.message) lines.push(version.message);
    return lines.join("\n");
  }

  function refreshStatuses() {
    if (!state.nodeEls) return;
    for (const [id, el] of state.nodeEls) {
      const version = state.byId.get(id);
      const status = statusOf(version);
      el.setAttribute("class", el.getAttribute("class").replace(/\bs-[a-z]+/, "s-" + status));
      el.setAttribute("data-status", status);
      const line = el.querySelector(".node-tests");
      if (line) line.textContent = testsLine(version);
    }
    applyOverlay();
  }

  // ---------------------------------------------------------------- highlight, search, cascade
  function lineageOf(id) {
    const related = new Set([id]);
    const edges = state.shown.edges;
    const walk = (start, forward) => {
      const stack = [start];
      while (stack.length) {
        const current = stack.pop();
        for (const e of edges) {
          const [from, to] = forward ? [e.parent, e.child] : [e.child, e.parent];
          if (from === current && !related.has(to)) {
            related.add(to);
            stack.push(to);
          }
        }
      }
    };
    walk(id, true);
    walk(id, false);
    return related;
  }

  function searchMatches() {
    const terms = state.search.toLowerCase().split(/\s+/).filter(Boolean);
    if (!terms.length) return null;
    const found = [];
    for (const id of state.shown.ids) {
      const v = state.byId.get(id);
      const hay = [v.ref, v.model, v.kind || "base", v.recipe || "", ...v.tags, ...v.aliases]
        .join(" ")
        .toLowerCase();
      if (terms.every((term) => hay.includes(term))) found.push(id);
    }
    return found;
  }

  function cascadeMarks() {
    if (state.cascadeId === null) return null;
    const cascade = (state.snap.cascades || []).find((c) => c.id === state.cascadeId);
    if (!cascade) return null;
    const marks = new Map();
    const mark = (ref, outcome, extra) => {
      const v = state.byRef.get(ref);
      if (v) marks.set(v.id, { outcome, ...extra });
    };
    for (const node of cascade.nodes) {
      if (node.new_ref) {
        mark(node.new_ref, node.status, { cached: node.cached });
        if (node.old_ref) mark(node.old_ref, "replaced", {});
      } else if (node.old_ref) {
        mark(node.old_ref, node.status, {});
      }
    }
    mark(cascade.upstream, "upstream", {});
    if (cascade.replaces) mark(cascade.replaces, "replaced", {});
    return { cascade, marks };
  }

  function applyOverlay() {
    if (!state.nodeEls) return;
    const matches = searchMatches();
    const matchSet = matches ? new Set(matches) : null;
    const cascade = cascadeMarks();
    const selectedVersion = state.selected ? state.byRef.get(state.selected) : null;
    const selectedId =
      selectedVersion && state.nodeEls.has(selectedVersion.id) ? selectedVersion.id : null;
    const lit = selectedId !== null ? lineageOf(selectedId) : null;
    // The two versions being compared stand out while the diff is shown.
    const compared = new Set(
      state.tab === "diff"
        ? [state.diff.a, state.diff.b]
            .map((ref) => state.byRef.get(ref))
            .filter(Boolean)
            .map((v) => v.id)
        : [],
    );
    for (const [id, el] of state.nodeEls) {
      el.classList.toggle("selected", id === selectedId || compared.has(id));
      el.classList.toggle("match", !!matchSet && matchSet.has(id));
      let dim = false;
      if (matchSet) dim = !matchSet.has(id);
      else if (cascade) dim = !cascade.marks.has(id);
      else if (lit) dim = !lit.has(id);
      el.classList.toggle("dim", dim);
      for (const old of el.querySelectorAll(".outcome, .ring")) old.remove();
      const mark = cascade && cascade.marks.get(id);
      if (mark) {
        el.insertBefore(
          s("rect", {
            class: "ring o-" + mark.outcome,
            x: -5,
            y: -5,
            width: NODE_W + 10,
            height: NODE_H + 10,
            rx: 14,
          }),
          el.firstChild,
        );
        const label =
          (OUTCOME_LABELS[mark.outcome] || mark.outcome) + (mark.cached ? " · cached" : "");
        const w = textWidth(label, BADGE_FONT) + 14;
        el.appendChild(
          s(
            "g",
            { class: "outcome o-" + mark.outcome, transform: "translate(12,-8)" },
            s("rect", { width: w, height: 16, rx: 8 }),
            s("text", { x: w / 2, y: 11.5, "text-anchor": "middle", text: label }),
          ),
        );
      }
    }
    for (const { edge, path, tag } of state.edgeEls) {
      let dim = false;
      let hi = false;
      if (matchSet) dim = !(matchSet.has(edge.parent) && matchSet.has(edge.child));
      else if (cascade) dim = !(cascade.marks.has(edge.parent) && cascade.marks.has(edge.child));
      else if (lit) {
        hi = lit.has(edge.parent) && lit.has(edge.child);
        dim = !hi;
      }
      path.classList.toggle("dim", dim);
      tag.classList.toggle("dim", dim);
      path.classList.toggle("hi", hi);
      tag.classList.toggle("hi", hi);
      path.setAttribute("marker-end", hi ? "url(#arrow-hi)" : "url(#arrow)");
    }
    const count = $("search-count");
    count.textContent = matches ? `${matches.length} found` : "";
    const banner = $("cascade-banner");
    banner.hidden = !cascade;
    if (cascade) {
      $("cascade-banner-text").textContent =
        `Cascade ${cascade.cascade.replaces || "?"} → ${cascade.cascade.upstream} · ` +
        countsText(cascade.cascade.counts);
    }
  }

  function countsText(counts) {
    const order = ["promoted", "candidate", "failed", "blocked", "skipped", "cached"];
    const parts = order.filter((k) => counts && counts[k]).map((k) => `${counts[k]} ${k}`);
    return parts.join(", ") || "nothing to do";
  }

  function updateStatusLine() {
    const shown = state.shown ? state.shown.ids.size : 0;
    const total = state.snap ? state.snap.versions.length : 0;
    const what =
      state.mode === "all" || state.cascadeId !== null ? "all versions" : "current family";
    let text = `${shown} of ${total} versions · ${what}`;
    if (state.collapsed.size) text += ` · ${state.collapsed.size} collapsed`;
    if (!state.noStatuses && !Object.keys(state.statuses).length && total) {
      text += " · reading test results…";
    }
    $("status-line").textContent = text;
  }

  // ---------------------------------------------------------------- pan and zoom
  function applyView() {
    const { k, x, y } = state.view;
    $("viewport").setAttribute("transform", `translate(${x},${y}) scale(${k})`);
    $("graph").classList.toggle("lod-low", k < 0.4);
    drawMinimap();
  }

  // ---------------------------------------------------------------- minimap
  const MINIMAP_W = 220;
  const MINIMAP_H = 150;

  function cssColour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#999";
  }

  /** The whole graph in miniature with the visible part framed; hidden when it all fits. */
  function drawMinimap() {
    const canvas = $("minimap");
    const layout = state.layout;
    if (!layout || !layout.nodes.size) {
      canvas.hidden = true;
      return;
    }
    const rect = $("graph").getBoundingClientRect();
    const { k, x, y } = state.view;
    const view = { x0: -x / k, y0: -y / k, x1: (rect.width - x) / k, y1: (rect.height - y) / k };
    const fits =
      view.x0 <= 0 && view.y0 <= 0 && view.x1 >= layout.width && view.y1 >= layout.height;
    canvas.hidden = fits;
    if (fits) return;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== MINIMAP_W * ratio) {
      canvas.width = MINIMAP_W * ratio;
      canvas.height = MINIMAP_H * ratio;
    }
    const scale = Math.min((MINIMAP_W - 16) / layout.width, (MINIMAP_H - 16) / layout.height);
    const ox = (MINIMAP_W - layout.width * scale) / 2;
    const oy = (MINIMAP_H - layout.height * scale) / 2;
    state.minimap = { scale, ox, oy };
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, MINIMAP_W, MINIMAP_H);
    const colours = {
      passed: cssColour("--passed"),
      failed: cssColour("--failed"),
      blocked: cssColour("--blocked"),
      untested: cssColour("--untested"),
      unknown: "#c5ccd8",
    };
    const w = Math.max(1.5, NODE_W * scale);
    const h = Math.max(1.5, NODE_H * scale);
    for (const [id, p] of layout.nodes) {
      ctx.fillStyle = colours[statusOf(state.byId.get(id))] || colours.unknown;
      ctx.fillRect(ox + p.x * scale, oy + p.y * scale, w, h);
    }
    ctx.strokeStyle = cssColour("--accent");
    ctx.lineWidth = 1.5;
    ctx.strokeRect(
      ox + view.x0 * scale,
      oy + view.y0 * scale,
      (view.x1 - view.x0) * scale,
      (view.y1 - view.y0) * scale,
    );
  }

  function installMinimap() {
    const canvas = $("minimap");
    let dragging = false;
    const moveTo = (event) => {
      if (!state.minimap) return;
      const box = canvas.getBoundingClientRect();
      const { scale, ox, oy } = state.minimap;
      const lx = (event.clientX - box.left - ox) / scale;
      const ly = (event.clientY - box.top - oy) / scale;
      const rect = $("graph").getBoundingClientRect();
      state.view.x = rect.width / 2 - lx * state.view.k;
      state.view.y = rect.height / 2 - ly * state.view.k;
      applyView();
    };
    canvas.addEventListener("pointerdown", (event) => {
      dragging = true;
      canvas.setPointerCapture(event.pointerId);
      moveTo(event);
    });
    canvas.addEventListener("pointermove", (event) => dragging && moveTo(event));
    canvas.addEventListener("pointerup", () => (dragging = false));
    window.addEventListener("resize", drawMinimap);
  }

  function zoomAt(factor, cx, cy) {
    const view = state.view;
    const k = Math.min(2.5, Math.max(0.04, view.k * factor));
    view.x = cx - ((cx - view.x) * k) / view.k;
    view.y = cy - ((cy - view.y) * k) / view.k;
    view.k = k;
    applyView();
  }

  function fitTo(bounds, maxZoom, minZoom) {
    const rect = $("graph").getBoundingClientRect();
    const pad = 48;
    const w = Math.max(bounds.width, 1);
    const h = Math.max(bounds.height, 1);
    let k = Math.min((rect.width - 2 * pad) / w, (rect.height - 2 * pad - 40) / h, maxZoom);
    k = Math.max(k, minZoom);
    const view = state.view;
    view.k = k;
    // Centre what fits; when it does not, start at the top-left (the roots).
    view.x =
      w * k < rect.width - 2 * pad ? (rect.width - w * k) / 2 - bounds.x * k : pad - bounds.x * k;
    view.y =
      h * k < rect.height - 2 * pad - 40
        ? (rect.height - h * k) / 2 - bounds.y * k + 14
        : pad + 20 - bounds.y * k;
    applyView();
  }

  /** Fit the whole graph; when that would make it smaller than `minZoom`, show the
   * start of the biggest family at `minZoom` instead. */
  function fitAll(minZoom) {
    if (!state.layout) return;
    const { width, height, start } = state.layout;
    const rect = $("graph").getBoundingClientRect();
    const k = Math.min(
      (rect.width - 96) / Math.max(width, 1),
      (rect.height - 136) / Math.max(height, 1),
    );
    if (k >= minZoom || start === null || start === undefined) {
      fitTo({ x: 0, y: 0, width, height }, 1.15, minZoom);
      return;
    }
    const p = state.layout.nodes.get(start);
    const view = state.view;
    view.k = Math.max(minZoom, 0.6);
    view.x = 48 - p.x * view.k;
    view.y = rect.height / 2 - (p.y + NODE_H / 2) * view.k;
    applyView();
  }

  function fitIds(ids) {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const id of ids) {
      const p = state.layout.nodes.get(id);
      if (!p) continue;
      x0 = Math.min(x0, p.x);
      y0 = Math.min(y0, p.y);
      x1 = Math.max(x1, p.x + NODE_W);
      y1 = Math.max(y1, p.y + NODE_H);
    }
    if (x0 === Infinity) return;
    fitTo({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, 1.1, 0.2);
  }

  function centreOn(id) {
    const p = state.layout && state.layout.nodes.get(id);
    if (!p) return;
    const rect = $("graph").getBoundingClientRect();
    const view = state.view;
    if (view.k < 0.6) view.k = 0.85;
    view.x = rect.width / 2 - (p.x + NODE_W / 2) * view.k;
    view.y = rect.height / 2 - (p.y + NODE_H / 2) * view.k;
    applyView();
  }

  function installPanZoom() {
    const svg = $("graph");
    let drag = null;
    svg.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const rect = svg.getBoundingClientRect();
        const factor = Math.exp(-event.deltaY * (event.deltaMode === 1 ? 0.05 : 0.0018));
        zoomAt(factor, event.clientX - rect.left, event.clientY - rect.top);
      },
      { passive: false },
    );
    svg.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      drag = {
        x: event.clientX,
        y: event.clientY,
        vx: state.view.x,
        vy: state.view.y,
        moved: false,
      };
    });
    window.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) svg.classList.add("panning");
      drag.moved = true;
      state.view.x = drag.vx + dx;
      state.view.y = drag.vy + dy;
      applyView();
    });
    window.addEventListener("pointerup", () => {
      if (drag && drag.moved) state.suppressClick = true;
      drag = null;
      svg.classList.remove("panning");
    });
    svg.addEventListener("click", (event) => {
      if (state.suppressClick) {
        state.suppressClick = false;
        return;
      }
      const toggle = event.target.closest("[data-toggle]");
      if (toggle) {
        const id = Number(toggle.getAttribute("data-toggle"));
        if (state.collapsed.has(id)) state.collapsed.delete(id);
        else state.collapsed.add(id);
        const before = state.layout.nodes.get(id);
        const screen = before && {
          x: before.x * state.view.k + state.view.x,
          y: before.y * state.view.k + state.view.y,
        };
        render();
        const after = state.layout.nodes.get(id);
        if (screen && after) {
          // Keep the toggled version where it was on screen.
          state.view.x = screen.x - after.x * state.view.k;
          state.view.y = screen.y - after.y * state.view.k;
          applyView();
        }
        return;
      }
      const node = event.target.closest(".node");
      if (node) {
        const ref = node.getAttribute("data-ref");
        if (event.shiftKey && state.selected && state.selected !== ref) {
          navigate(["diff", state.selected, ref]);
        } else {
          navigate(["version", ref]);
        }
        return;
      }
      if (state.selected)
        navigate(state.cascadeId !== null ? ["cascade", String(state.cascadeId)] : []);
    });
    svg.addEventListener("keydown", (event) => {
      const node = event.target.closest && event.target.closest(".node");
      if (node && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        navigate(["version", node.getAttribute("data-ref")]);
      }
    });
  }

  // ---------------------------------------------------------------- routing
  function navigate(parts) {
    const hash = parts.length ? "#/" + parts.map(encodeURIComponent).join("/") : "#/";
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function route() {
    const parts = location.hash
      .replace(/^#\/?/, "")
      .split("/")
      .filter(Boolean)
      .map(decodeURIComponent);
    const [page, ...args] = parts;
    if (page === "version" && args[0]) {
      selectVersion(args[0]);
    } else if (page === "cascade" && args[0]) {
      selectCascade(Number(args[0]), args[1] || null);
    } else if (page === "cascades") {
      selectCascade(null);
      showTab("cascades");
    } else if (page === "diff") {
      openDiff(args[0] || "", args[1] || "");
    } else {
      state.selected = null;
      if (state.cascadeId !== null) {
        state.cascadeId = null;
        syncModeButtons();
        render();
        fitAll(0.35);
      }
      applyOverlay();
      showTab("overview");
    }
  }

  function showTab(tab) {
    state.tab = tab;
    for (const button of document.querySelectorAll(".tabs button")) {
      button.classList.toggle("on", button.getAttribute("data-tab") === tab);
    }
    for (const pane of document.querySelectorAll(".pane")) {
      pane.hidden = pane.getAttribute("data-pane") !== tab;
    }
    if (state.nodeEls) applyOverlay(); // the diff tab marks the versions it compares
  }

  // ---------------------------------------------------------------- version panel
  function selectVersion(ref) {
    const version = state.byRef.get(ref);
    state.selected = ref;
    showTab("version");
    if (version && state.nodeEls && !state.nodeEls.has(version.id)) {
      // Not drawn (an older version, or collapsed): show every version, expanded.
      state.mode = "all";
      syncModeButtons();
      expandTo(version.id);
      render();
    }
    applyOverlay();
    if (version) centreIfOffscreen(version.id);
    loadVersion(ref);
  }

  function expandTo(id) {
    for (const collapsedId of [...state.collapsed]) {
      const related = new Set([collapsedId]);
      const stack = [collapsedId];
      while (stack.length) {
        const current = stack.pop();
        for (const e of state.snap.edges) {
          if (e.parent === current && !related.has(e.child)) {
            related.add(e.child);
            stack.push(e.child);
          }
        }
      }
      if (related.has(id) && collapsedId !== id) state.collapsed.delete(collapsedId);
    }
  }

  function centreIfOffscreen(id) {
    const p = state.layout && state.layout.nodes.get(id);
    if (!p) return;
    const rect = $("graph").getBoundingClientRect();
    const { k, x, y } = state.view;
    const sx = p.x * k + x;
    const sy = p.y * k + y;
    if (sx < 0 || sy < 0 || sx + NODE_W * k > rect.width || sy + NODE_H * k > rect.height)
      centreOn(id);
  }

  async function loadVersion(ref) {
    const pane = clear($("pane-version"));
    const token = ++state.detailToken;
    pane.appendChild(h("p", { class: "muted", text: "Loading " + ref + "…" }));
    let detail;
    try {
      detail = await source.version(ref);
    } catch (err) {
      if (token !== state.detailToken) return;
      clear(pane).appendChild(h("div", { class: "error-box", text: err.message }));
      return;
    }
    if (token !== state.detailToken) return;
    renderVersion(clear(pane), detail);
  }

  function refButton(ref, label) {
    return h("button", {
      type: "button",
      class: "ref-link",
      title: ref,
      "data-ref": ref,
      text: label || ref,
      on: { click: () => navigate(["version", ref]) },
    });
  }

  function statusChip(status) {
    return h("span", { class: "chip s-" + status, text: status });
  }

  function kv(rows) {
    const table = h("table", { class: "kv" });
    for (const [key, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      table.appendChild(h("tr", { "data-key": key }, h("td", { text: key }), h("td", null, value)));
    }
    return table;
  }

  function renderVersion(pane, d) {
    const version = state.byRef.get(d.ref);
    const status = version ? statusOf(version) : "unknown";
    const prov = d.provenance;
    pane.appendChild(
      h(
        "div",
        { class: "head" },
        h("h2", { id: "version-ref", text: d.ref }),
        status !== "unknown" ? statusChip(status) : null,
        d.aliases.map((alias) => h("span", { class: "chip " + aliasClass(alias), text: alias })),
      ),
    );
    if (prov.message)
      pane.appendChild(h("div", { class: "message", id: "version-message", text: prov.message }));
    pane.appendChild(
      h("div", {
        class: "byline",
        text: `${prov.author || "unknown"} · ${formatTime(prov.created_at)}`,
      }),
    );
    const actions = h("div", { class: "actions" });
    const firstParent = prov.parents[0];
    if (firstParent) {
      actions.appendChild(
        h("button", {
          type: "button",
          class: "btn",
          text: "Diff with " + firstParent.ref,
          on: { click: () => navigate(["diff", firstParent.ref, d.ref]) },
        }),
      );
    }
    if (prov.previous) {
      actions.appendChild(
        h("button", {
          type: "button",
          class: "btn",
          text: "Diff with " + prov.previous,
          on: { click: () => navigate(["diff", prov.previous, d.ref]) },
        }),
      );
    }
    if (actions.childNodes.length) pane.appendChild(actions);

    pane.appendChild(h("h3", { text: "Provenance" }));
    const parents = prov.parents.length
      ? h(
          "span",
          null,
          prov.parents.map((p, i) => [
            i ? ", " : "",
            refButton(p.ref),
            " ",
            h("span", { class: "chip", text: p.kind || "derived" }),
          ]),
        )
      : "none (a base model)";
    const params = Object.keys(prov.params || {}).length
      ? h(
          "span",
          { class: "mono" },
          Object.entries(prov.params).map(([k, v], i) => [
            i ? h("br") : null,
            `${k} = ${JSON.stringify(v)}`,
          ]),
        )
      : null;
    const libraries = Object.keys(prov.library_versions || {}).length
      ? h(
          "details",
          null,
          h("summary", { text: Object.keys(prov.library_versions).length + " packages" }),
          h(
            "span",
            { class: "mono" },
            Object.entries(prov.library_versions).map(([k, v], i) => [
              i ? h("br") : null,
              `${k} ${v}`,
            ]),
          ),
        )
      : null;
    pane.appendChild(
      kv([
        ["Recipe", prov.recipe || "registered weights (no recipe)"],
        ["Parameters", params],
        ["Parents", parents],
        ["Previous version", prov.previous ? refButton(prov.previous) : null],
        ["Data set", prov.data],
        [
          "Data fingerprint",
          prov.data_fingerprint
            ? h("span", {
                class: "mono",
                title: prov.data_fingerprint,
                text: shortHash(prov.data_fingerprint),
              })
            : null,
        ],
        [
          "Code version",
          prov.code_version ? h("span", { class: "mono", text: prov.code_version }) : null,
        ],
        [
          "Image digest",
          prov.image_digest
            ? h("span", {
                class: "mono",
                title: prov.image_digest,
                text: shortHash(prov.image_digest),
              })
            : null,
        ],
        ["Author", prov.author],
        [
          "Tags",
          prov.tags.length
            ? h(
                "span",
                { class: "chips" },
                prov.tags.map((t) => h("span", { class: "chip", text: t })),
              )
            : null,
        ],
        [
          "Manifest",
          h("span", { class: "mono", title: prov.manifest_id, text: shortHash(prov.manifest_id) }),
        ],
        ["Libraries", libraries],
      ]),
    );

    pane.appendChild(h("h3", { text: "Tests" }));
    if (!d.tests.length) {
      pane.appendChild(h("p", { class: "muted", text: "No test applies to this version." }));
    } else {
      const table = h(
        "table",
        { class: "grid", id: "version-tests" },
        h(
          "tr",
          null,
          h("th", { text: "Test" }),
          h("th", { text: "Result" }),
          h("th", { text: "Declared on" }),
        ),
      );
      for (const test of d.tests) {
        const latest = test.latest;
        let result;
        if (!latest) result = h("span", { class: "chip s-untested", text: "not run" });
        else {
          const value =
            latest.value === null || latest.value === undefined
              ? ""
              : ` ${latest.metric || "value"} ${formatNumber(latest.value)}` +
                (latest.threshold === null || latest.threshold === undefined
                  ? ""
                  : ` vs ${formatNumber(latest.threshold)}`);
          result = h(
            "span",
            null,
            h("span", {
              class: "chip " + (latest.passed ? "s-passed" : "s-failed"),
              text: latest.passed ? "passed" : "failed",
            }),
            h("div", { class: "muted", text: value.trim() }),
          );
        }
        const from = test.inherited
          ? h("span", null, "inherited from ", h("b", { text: test.declared_on }))
          : h("span", { text: "its own model" });
        table.appendChild(
          h(
            "tr",
            { "data-test": test.name },
            h(
              "td",
              null,
              h("b", { text: test.name }),
              h("div", { class: "muted", text: test.kind }),
            ),
            h("td", null, result),
            h(
              "td",
              null,
              from,
              test.overrides.length
                ? h("div", { class: "muted", text: "overrides " + test.overrides.join(", ") })
                : null,
            ),
          ),
        );
      }
      pane.appendChild(table);
    }

    const metrics = Object.entries(d.metrics || {}).filter(
      ([, v]) => typeof v === "number" || typeof v === "string",
    );
    if (metrics.length || d.loss_curve.length) {
      pane.appendChild(h("h3", { text: "Metrics" }));
      if (metrics.length) pane.appendChild(kv(metrics.map(([k, v]) => [k, formatNumber(v)])));
      if (d.loss_curve.length > 1) pane.appendChild(lossPlot(d.loss_curve));
    }

    pane.appendChild(h("h3", { text: "Storage" }));
    pane.appendChild(storageBlock(d.storage, d.lossy));

    pane.appendChild(h("h3", { text: "Alias history of " + d.model }));
    if (!d.alias_history.length) {
      pane.appendChild(h("p", { class: "muted", text: "No alias was ever set." }));
    } else {
      const list = h("ul", { class: "list", id: "alias-history" });
      for (const event of [...d.alias_history].reverse().slice(0, 30)) {
        const touches = event.to_version === d.number || event.from_version === d.number;
        const move =
          event.to_version === null || event.to_version === undefined
            ? `${event.alias} removed from @${event.from_version}`
            : `${event.alias} → @${event.to_version}` +
              (event.from_version ? ` (was @${event.from_version})` : "");
        list.appendChild(
          h(
            "li",
            null,
            h(
              "div",
              null,
              h("span", { class: "chip " + aliasClass(event.alias), text: event.action }),
              " ",
              touches ? h("b", { text: move }) : move,
            ),
            h("div", {
              class: "muted",
              text: `${formatTime(event.at)} · ${event.actor}${event.reason ? " · " + event.reason : ""}`,
            }),
          ),
        );
      }
      pane.appendChild(list);
    }

    if (d.cascades.length) {
      pane.appendChild(h("h3", { text: "Cascades" }));
      for (const c of d.cascades) {
        const role =
          { made: "made by", replaced: "re-derived by", upstream: "upstream of" }[c.role] || c.role;
        pane.appendChild(
          h(
            "div",
            { class: "card", on: { click: () => navigate(["cascade", String(c.id)]) } },
            h(
              "div",
              { class: "card-title" },
              `${role} cascade ${c.replaces || "?"} → ${c.upstream}`,
            ),
            h(
              "div",
              { class: "chips" },
              c.outcome ? h("span", { class: "chip o-" + c.outcome, text: c.outcome }) : null,
              c.cached ? h("span", { class: "chip o-cached", text: "cached" }) : null,
              h("span", { class: "chip", text: formatTime(c.started_at) }),
            ),
          ),
        );
      }
    }

    if (d.derived.length) {
      pane.appendChild(h("h3", { text: `Derived from it (${d.derived.length})` }));
      const wrap = h("div", { class: "chips" });
      for (const ref of d.derived.slice(0, 24)) wrap.appendChild(refButton(ref));
      if (d.derived.length > 24)
        wrap.appendChild(h("span", { class: "muted", text: `and ${d.derived.length - 24} more` }));
      pane.appendChild(wrap);
    }

    const links = d.links.filter((l) => safeHref(l.href));
    pane.appendChild(h("h3", { text: "Elsewhere" }));
    if (links.length) {
      pane.appendChild(
        h(
          "div",
          { class: "ext-links" },
          links.map((l) =>
            h("a", {
              href: safeHref(l.href),
              target: "_blank",
              rel: "noopener noreferrer",
              text: l.label + " ↗",
            }),
          ),
        ),
      );
    } else {
      pane.appendChild(
        h("p", {
          class: "muted",
          text: "Links to MLflow and Prefect appear when their servers are configured (MLFLOW_TRACKING_URI, PREFECT_API_URL).",
        }),
      );
    }
  }

  function lossPlot(curve) {
    const W = 400;
    const H = 140;
    const pad = { l: 40, r: 10, t: 12, b: 22 };
    const xs = curve.map((p) => p[0]);
    const ys = curve.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const sx = (x) => pad.l + ((x - x0) / (x1 - x0 || 1)) * (W - pad.l - pad.r);
    const sy = (y) => pad.t + (1 - (y - y0) / (y1 - y0 || 1)) * (H - pad.t - pad.b);
    const line = curve
      .map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`)
      .join("");
    const area = line + `L${sx(x1)},${H - pad.b}L${sx(x0)},${H - pad.b}Z`;
    return s(
      "svg",
      {
        class: "plot",
        viewBox: `0 0 ${W} ${H}`,
        role: "img",
        "aria-label": "training loss by step",
        id: "loss-curve",
      },
      s("line", { class: "axis", x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b }),
      s("line", { class: "axis", x1: pad.l, x2: pad.l, y1: pad.t, y2: H - pad.b }),
      s("path", { class: "area", d: area }),
      s("path", { class: "curve", d: line }),
      s("text", { x: pad.l - 4, y: sy(y1) + 4, "text-anchor": "end", text: formatNumber(y1) }),
      s("text", { x: pad.l - 4, y: sy(y0) + 4, "text-anchor": "end", text: formatNumber(y0) }),
      s("text", { x: pad.l, y: H - 6, text: "step " + formatNumber(x0) }),
      s("text", { x: W - pad.r, y: H - 6, "text-anchor": "end", text: "step " + formatNumber(x1) }),
      s("text", { x: W - pad.r, y: pad.t + 10, "text-anchor": "end", text: "training loss" }),
    );
  }

  function storageBlock(stats, lossy) {
    const wrap = h("div", { id: "version-storage" });
    if (!stats) {
      wrap.appendChild(h("p", { class: "muted", text: "No storage figures for this version." }));
      return wrap;
    }
    const share = stats.logical_bytes ? Math.min(1, stats.stored_bytes / stats.logical_bytes) : 0;
    wrap.appendChild(
      h(
        "p",
        null,
        h("b", { text: formatBytes(stats.stored_bytes) }),
        " stored for ",
        h("b", { text: formatBytes(stats.logical_bytes) }),
        " of weights and files" + (stats.ratio ? ` (${formatRatio(stats.ratio)} smaller)` : ""),
      ),
    );
    const bar = h("div", { class: "bar" }, h("div", { class: "bar-fill" }));
    bar.firstChild.style.width = Math.max(0.5, share * 100).toFixed(1) + "%";
    wrap.appendChild(bar);
    const encodings = Object.entries(stats.encodings || {}).sort((a, b) => b[1] - a[1]);
    if (encodings.length) {
      wrap.appendChild(
        h(
          "div",
          { class: "chips" },
          encodings.map(([name, count]) =>
            h("span", { class: "chip", title: encodingHelp(name), text: `${name} × ${count}` }),
          ),
        ),
      );
    }
    const notes = [];
    notes.push(
      "Stored bytes are what this version added to the store; what it shares with earlier versions counts for them.",
    );
    if (stats.derived) notes.push("Kept as its recipe: re-made from its parents on checkout.");
    if (stats.approximate) notes.push("Stored approximately (lossy mode).");
    if (lossy && lossy.reason) notes.push("Lossy: " + lossy.reason);
    for (const note of notes) wrap.appendChild(h("div", { class: "note", text: note }));
    return wrap;
  }

  function encodingHelp(name) {
    const help = {
      dedup: "identical to a tensor stored by an earlier version",
      derived: "re-made from the recipe on checkout",
      plain: "stored as is (compressed)",
      xor: "XOR of bit patterns against the parent's tensor",
      sub: "difference against the parent's tensor",
      mxor: "mantissa-split XOR against the parent's tensor",
      qdelta: "quantized delta (lossy mode)",
      blob: "a file other than weights",
    };
    return help[name.replace(/^cast\+/, "")] || name;
  }

  // ---------------------------------------------------------------- cascades
  function selectCascade(id, focusRef) {
    const changed = state.cascadeId !== id;
    state.cascadeId = id;
    syncModeButtons();
    state.selected = focusRef;
    showTab("cascades");
    renderCascades();
    if (changed) {
      render();
      const marks = cascadeMarks();
      if (marks) fitIds([...marks.marks.keys()]);
      else fitAll(0.35);
    } else {
      applyOverlay();
    }
  }

  function renderCascades() {
    const pane = clear($("pane-cascades"));
    const cascades = state.snap.cascades || [];
    if (state.cascadeId !== null) {
      const cascade = cascades.find((c) => c.id === state.cascadeId);
      pane.appendChild(
        h("button", {
          type: "button",
          class: "btn",
          text: "← All cascades",
          on: { click: () => navigate(["cascades"]) },
        }),
      );
      if (!cascade) {
        pane.appendChild(
          h("div", {
            class: "error-box",
            text: "No cascade #" + state.cascadeId + " in this workspace.",
          }),
        );
        return;
      }
      renderCascade(pane, cascade);
      return;
    }
    if (!cascades.length) {
      pane.appendChild(h("h2", { text: "Cascades" }));
      pane.appendChild(
        h("p", {
          class: "muted",
          text: "No cascade has run in this workspace yet. When an upstream model gets a new version, `lineage cascade NAME@N` re-derives, tests and promotes everything below it; each run is listed here and drawn on the graph.",
        }),
      );
      return;
    }
    pane.appendChild(
      h("p", {
        class: "muted",
        text: "Each cascade re-derived the models below a new upstream version. Pick one to draw it on the graph.",
      }),
    );
    for (const cascade of cascades) pane.appendChild(cascadeCard(cascade));
  }

  function cascadeCard(cascade) {
    return h(
      "div",
      {
        class: "card" + (cascade.id === state.cascadeId ? " on" : ""),
        "data-cascade": cascade.id,
        on: { click: () => navigate(["cascade", String(cascade.id)]) },
      },
      h(
        "div",
        { class: "card-title" },
        h("span", { text: `${cascade.replaces || "?"} → ${cascade.upstream}` }),
        h("span", {
          class: "chip " + (cascade.status === "passed" ? "s-passed" : "s-failed"),
          text: cascade.status,
        }),
      ),
      h("div", {
        class: "card-sub",
        text: `#${cascade.id} · ${formatTime(cascade.started_at)} · ${formatDuration(cascade.started_at, cascade.finished_at)}`,
      }),
      h("div", { class: "chips" }, countChips(cascade.counts)),
    );
  }

  function countChips(counts) {
    const order = ["promoted", "candidate", "failed", "blocked", "skipped", "cached"];
    return order
      .filter((k) => counts && counts[k])
      .map((k) => h("span", { class: "chip o-" + k, text: `${counts[k]} ${k}` }));
  }

  function renderCascade(pane, cascade) {
    pane.appendChild(
      h(
        "div",
        { class: "head" },
        h("h2", { id: "cascade-title", text: `${cascade.replaces || "?"} → ${cascade.upstream}` }),
        h("span", {
          class: "chip " + (cascade.status === "passed" ? "s-passed" : "s-failed"),
          text: cascade.status,
        }),
      ),
    );
    pane.appendChild(
      h("div", {
        class: "byline",
        text: `#${cascade.id} · started ${formatTime(cascade.started_at)} · took ${formatDuration(cascade.started_at, cascade.finished_at)}`,
      }),
    );
    pane.appendChild(h("div", { class: "chips" }, countChips(cascade.counts)));
    const prefect = state.snap.links && safeHref(state.snap.links.prefect);
    if (prefect && cascade.flow_run_id) {
      pane.appendChild(
        h(
          "div",
          { class: "ext-links" },
          h("a", {
            href: prefect + "/runs/flow-run/" + encodeURIComponent(cascade.flow_run_id),
            target: "_blank",
            rel: "noopener noreferrer",
            text: "Prefect flow run ↗",
          }),
        ),
      );
    }
    pane.appendChild(h("h3", { text: "Plan and outcome" }));
    const byModel = new Map(cascade.nodes.map((n) => [n.model, n]));
    const levels = (cascade.levels || []).map((level, i) => ({
      title: `Level ${i + 1}`,
      models: level,
    }));
    const placed = new Set(levels.flatMap((l) => l.models));
    const rest = cascade.nodes.filter((n) => !placed.has(n.model)).map((n) => n.model);
    if (rest.length) levels.push({ title: "Not re-derived", models: rest });
    for (const level of levels) {
      const block = h(
        "div",
        { class: "level" },
        h("div", { class: "level-title", text: level.title }),
      );
      for (const model of level.models) {
        const node = byModel.get(model);
        if (!node) continue;
        block.appendChild(cascadeNodeRow(node));
      }
      pane.appendChild(block);
    }
  }

  function cascadeNodeRow(node) {
    const refs = h(
      "div",
      null,
      h("b", { text: node.model }),
      " ",
      node.old_ref ? refButton(node.old_ref) : null,
      node.new_ref ? [" → ", refButton(node.new_ref)] : null,
    );
    const tests = node.tests || {};
    let testText = "";
    if (tests.skipped) testText = "tests passed earlier";
    else if (tests.total !== undefined) {
      testText = tests.passed
        ? `${tests.total} ${tests.total === 1 ? "test" : "tests"} passed`
        : `failed: ${(tests.failed || []).join(", ")}`;
    }
    return h(
      "div",
      { class: "node-row", "data-model": node.model, "data-outcome": node.status },
      refs,
      h(
        "div",
        { class: "chips" },
        h("span", { class: "chip o-" + node.status, text: node.status }),
        node.cached ? h("span", { class: "chip o-cached", text: "cached" }) : null,
      ),
      testText ? h("div", { class: "muted", text: testText }) : null,
      node.error ? h("div", { class: "err", text: node.error }) : null,
    );
  }

  // ---------------------------------------------------------------- diff
  function openDiff(a, b) {
    state.diff = { a, b };
    showTab("diff");
    renderDiffPane();
    if (a && b) runDiff(a, b);
  }

  function renderDiffPane() {
    const pane = clear($("pane-diff"));
    const listId = "diff-refs";
    const datalist = h("datalist", { id: listId });
    const refs = [...state.byRef.keys()].sort(naturalCompare);
    for (const ref of refs) datalist.appendChild(h("option", { value: ref }));
    const inputA = h("input", {
      id: "diff-a",
      list: listId,
      placeholder: "from, e.g. base@1",
      value: state.diff.a,
      spellcheck: "false",
    });
    const inputB = h("input", {
      id: "diff-b",
      list: listId,
      placeholder: "to, e.g. base@2",
      value: state.diff.b,
      spellcheck: "false",
    });
    const go = () => {
      if (inputA.value && inputB.value)
        navigate(["diff", inputA.value.trim(), inputB.value.trim()]);
    };
    for (const input of [inputA, inputB])
      input.addEventListener("keydown", (e) => e.key === "Enter" && go());
    pane.appendChild(h("h2", { text: "Compare two versions" }));
    pane.appendChild(
      h("p", {
        class: "muted",
        text: "Which tensors changed and by how much (relative L2 of the change), what was added or removed, and config changes. Tip: select a version, then shift-click another.",
      }),
    );
    pane.appendChild(
      h(
        "div",
        { class: "pickers" },
        inputA,
        h("button", {
          type: "button",
          class: "btn",
          title: "Swap",
          text: "⇄",
          on: { click: () => navigate(["diff", inputB.value, inputA.value]) },
        }),
        inputB,
      ),
    );
    pane.appendChild(datalist);
    pane.appendChild(
      h(
        "div",
        { class: "actions" },
        h("button", {
          type: "button",
          class: "btn primary",
          id: "diff-go",
          text: "Compare",
          on: { click: go },
        }),
      ),
    );
    pane.appendChild(h("div", { id: "diff-result" }));
  }

  async function runDiff(a, b) {
    const out = $("diff-result");
    clear(out).appendChild(h("p", { class: "muted", text: `Comparing ${a} and ${b}…` }));
    let d;
    try {
      d = await source.diff(a, b);
    } catch (err) {
      clear(out).appendChild(h("div", { class: "error-box", text: err.message }));
      return;
    }
    if (state.diff.a !== a || state.diff.b !== b) return;
    clear(out);
    out.appendChild(
      h(
        "div",
        { class: "tiles" },
        h(
          "div",
          { class: "tile" },
          h("b", { id: "diff-changed", text: String(d.changed) }),
          h("span", { text: "tensors changed" }),
        ),
        h(
          "div",
          { class: "tile" },
          h("b", { text: String(d.identical) }),
          h("span", { text: "identical" }),
        ),
        h(
          "div",
          { class: "tile" },
          h("b", { text: `+${d.added.length} −${d.removed.length}` }),
          h("span", { text: "added / removed" }),
        ),
      ),
    );
    out.appendChild(h("h3", { text: "Change by layer (relative L2)" }));
    const strip = h("div", { class: "strip", id: "diff-strip" });
    for (const layer of d.layers) {
      const cells = h("div", { class: "strip-cells" });
      for (const t of layer.tensors) {
        const cell = h("div", {
          class: "cell",
          title: `${t.name}: ${t.changed ? (t.relative_l2 === null ? "changed (not comparable)" : "relative L2 " + formatNumber(t.relative_l2)) : "unchanged"}`,
        });
        cell.style.background = heatColour(t);
        cells.appendChild(cell);
      }
      strip.appendChild(
        h(
          "div",
          { class: "strip-layer" },
          cells,
          h("div", { class: "strip-label", title: layer.layer, text: layer.layer }),
        ),
      );
    }
    out.appendChild(strip);
    out.appendChild(
      h(
        "div",
        { class: "scale" },
        h("span", { text: "unchanged" }),
        h("div", { class: "scale-bar" }),
        h("span", { text: "1e-6 … ≥1" }),
      ),
    );
    const changed = d.layers.flatMap((l) => l.tensors).filter((t) => t.changed);
    if (changed.length) {
      out.appendChild(h("h3", { text: "Most changed tensors" }));
      const table = h(
        "table",
        { class: "grid fixed" },
        h(
          "tr",
          null,
          h("th", { text: "Tensor" }),
          h("th", { class: "num", text: "rel. L2" }),
          h("th", { class: "num", text: "max |Δ|" }),
        ),
      );
      changed.sort((x, y) => (y.relative_l2 ?? Infinity) - (x.relative_l2 ?? Infinity));
      for (const t of changed.slice(0, 15)) {
        table.appendChild(
          h(
            "tr",
            null,
            h("td", { class: "mono", title: t.name, text: t.name }),
            h("td", {
              class: "num",
              text: t.relative_l2 === null ? "n/a" : formatNumber(t.relative_l2),
            }),
            h("td", {
              class: "num",
              text: t.max_abs === null || t.max_abs === undefined ? "n/a" : formatNumber(t.max_abs),
            }),
          ),
        );
      }
      out.appendChild(table);
    }
    for (const [title, names] of [
      ["Added tensors", d.added],
      ["Removed tensors", d.removed],
      ["Files added", d.files_added],
      ["Files removed", d.files_removed],
    ]) {
      if (!names.length) continue;
      out.appendChild(h("h3", { text: `${title} (${names.length})` }));
      out.appendChild(
        h(
          "ul",
          { class: "list" },
          names.slice(0, 50).map((n) => h("li", { class: "mono", text: n })),
        ),
      );
    }
    const configs = Object.entries(d.config || {});
    if (configs.length) {
      for (const [path, changes] of configs) {
        out.appendChild(h("h3", { text: "Config changes: " + path }));
        const table = h(
          "table",
          { class: "grid", id: "diff-config" },
          h("tr", null, h("th", { text: "Key" }), h("th", { text: d.a }), h("th", { text: d.b })),
        );
        for (const c of changes) {
          table.appendChild(
            h(
              "tr",
              null,
              h("td", { class: "mono", text: c.key }),
              h("td", { class: "mono", text: JSON.stringify(c.a) ?? "–" }),
              h("td", { class: "mono", text: JSON.stringify(c.b) ?? "–" }),
            ),
          );
        }
        out.appendChild(table);
      }
    } else if (d.files_changed.length) {
      out.appendChild(
        h("p", { class: "muted", text: "Files changed: " + d.files_changed.join(", ") }),
      );
    }
  }

  function heatColour(t) {
    if (!t.changed) return "#eef1f6";
    if (t.relative_l2 === null || t.relative_l2 === undefined) return "#adb5bd";
    const v = Math.min(1, Math.max(0, (Math.log10(Math.max(t.relative_l2, 1e-12)) + 6) / 6));
    const stops = [
      [0, [253, 227, 167]],
      [0.55, [240, 140, 0]],
      [1, [201, 42, 42]],
    ];
    let i = 0;
    while (i < stops.length - 2 && v > stops[i + 1][0]) i += 1;
    const [p0, c0] = stops[i];
    const [p1, c1] = stops[i + 1];
    const f = (v - p0) / (p1 - p0);
    const c = c0.map((x, j) => Math.round(x + (c1[j] - x) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // ---------------------------------------------------------------- overview
  function renderOverview() {
    const pane = clear($("pane-overview"));
    const snap = state.snap;
    const counts = { passed: 0, failed: 0, blocked: 0, untested: 0 };
    for (const v of snap.versions) {
      const status = statusOf(v);
      if (status in counts) counts[status] += 1;
    }
    pane.appendChild(h("h2", { text: snap.workspace.name || "workspace" }));
    pane.appendChild(
      h("div", {
        class: "byline",
        text: `graph on ${snap.workspace.backend} · read ${formatTime(snap.generated_at)}`,
      }),
    );
    pane.appendChild(
      h(
        "div",
        { class: "tiles" },
        h(
          "div",
          { class: "tile" },
          h("b", { text: String(snap.models.length) }),
          h("span", { text: "models" }),
        ),
        h(
          "div",
          { class: "tile" },
          h("b", { text: String(snap.versions.length) }),
          h("span", { text: "versions" }),
        ),
        h(
          "div",
          { class: "tile" },
          h("b", { text: String((snap.cascades || []).length) }),
          h("span", { text: "cascades" }),
        ),
      ),
    );
    pane.appendChild(h("h3", { text: "Tests" }));
    if (state.noStatuses) {
      pane.appendChild(h("p", { class: "muted", text: "Not part of this export." }));
    } else if (Object.keys(state.statuses).length) {
      pane.appendChild(
        h(
          "div",
          { class: "chips" },
          Object.entries(counts).map(([k, n]) =>
            h("span", { class: "chip s-" + k, text: `${n} ${k}` }),
          ),
        ),
      );
    } else {
      pane.appendChild(h("p", { class: "muted", text: "Reading test results…" }));
    }
    pane.appendChild(h("h3", { text: "Storage" }));
    const total = state.storage && state.storage.total;
    if (total && !total.logical_bytes) {
      pane.appendChild(h("p", { class: "muted", text: "Nothing stored yet." }));
    } else if (total) {
      const share = total.logical_bytes ? total.stored_bytes / total.logical_bytes : 0;
      pane.appendChild(
        h(
          "p",
          null,
          h("b", { text: formatBytes(total.stored_bytes) }),
          " stored for ",
          h("b", { text: formatBytes(total.logical_bytes) }),
          ` of weights and files (${formatRatio(total.ratio)} smaller)`,
        ),
      );
      const bar = h("div", { class: "bar" }, h("div", { class: "bar-fill" }));
      bar.firstChild.style.width = Math.max(0.5, Math.min(1, share) * 100).toFixed(1) + "%";
      pane.appendChild(bar);
    } else {
      pane.appendChild(
        h("p", { class: "muted", text: state.storageError || "Reading the store…" }),
      );
    }
    pane.appendChild(h("h3", { text: "Models" }));
    const table = h(
      "table",
      { class: "grid", id: "models" },
      h(
        "tr",
        null,
        h("th", { text: "Model" }),
        h("th", { text: "Latest" }),
        h("th", { text: "Aliases" }),
      ),
    );
    const models = [...snap.models].sort((a, b) => naturalCompare(a.name, b.name));
    for (const model of models.slice(0, 100)) {
      table.appendChild(
        h(
          "tr",
          null,
          h(
            "td",
            null,
            h("b", { text: model.name }),
            model.description ? h("div", { class: "muted", text: model.description }) : null,
            model.tags.length
              ? h(
                  "div",
                  { class: "chips" },
                  model.tags.map((t) => h("span", { class: "chip", text: t })),
                )
              : null,
          ),
          h(
            "td",
            null,
            model.latest ? refButton(`${model.name}@${model.latest}`, "@" + model.latest) : "–",
          ),
          h(
            "td",
            null,
            h(
              "div",
              { class: "chips" },
              Object.entries(model.aliases).map(([alias, n]) =>
                h("span", { class: "chip " + aliasClass(alias), text: `${alias} @${n}` }),
              ),
            ),
          ),
        ),
      );
    }
    pane.appendChild(table);
    if (models.length > 100) {
      pane.appendChild(
        h("p", { class: "muted", text: `and ${models.length - 100} more: use the search box.` }),
      );
    }
    if ((snap.cascades || []).length) {
      pane.appendChild(h("h3", { text: "Latest cascade" }));
      pane.appendChild(cascadeCard(snap.cascades[0]));
    }
    pane.appendChild(
      h("p", {
        class: "note",
        text: "Click a version for its provenance, tests and storage; shift-click a second one to compare them. Scroll to zoom, drag to pan, / to search.",
      }),
    );
  }

  // ---------------------------------------------------------------- controls
  function syncModeButtons() {
    const all = state.mode === "all" || state.cascadeId !== null;
    $("mode-current").classList.toggle("on", !all);
    $("mode-all").classList.toggle("on", all);
    $("dir-toggle").textContent = state.dir === "LR" ? "Left → right" : "Top ↓ down";
  }

  function installControls() {
    $("mode-current").addEventListener("click", () => {
      if (state.cascadeId !== null) navigate([]);
      state.mode = "current";
      syncModeButtons();
      render();
      fitAll(0.35);
    });
    $("mode-all").addEventListener("click", () => {
      state.mode = "all";
      syncModeButtons();
      render();
      fitAll(0.35);
    });
    $("dir-toggle").addEventListener("click", () => {
      state.dir = state.dir === "LR" ? "TB" : "LR";
      syncModeButtons();
      render();
      fitAll(0.35);
    });
    $("expand-all").addEventListener("click", () => {
      state.collapsed.clear();
      render();
      fitAll(0.35);
    });
    const centre = () => {
      const rect = $("graph").getBoundingClientRect();
      return [rect.width / 2, rect.height / 2];
    };
    $("zoom-in").addEventListener("click", () => zoomAt(1.25, ...centre()));
    $("zoom-out").addEventListener("click", () => zoomAt(0.8, ...centre()));
    $("zoom-fit").addEventListener("click", () => fitAll(0.04));
    $("reload").addEventListener("click", () => load(true));
    $("cascade-clear").addEventListener("click", () => navigate([]));
    for (const button of document.querySelectorAll(".tabs button")) {
      button.addEventListener("click", () => {
        const tab = button.getAttribute("data-tab");
        if (tab === "cascades")
          navigate(state.cascadeId !== null ? ["cascade", String(state.cascadeId)] : ["cascades"]);
        else if (tab === "diff") openDiff(state.diff.a || state.selected || "", state.diff.b);
        else if (tab === "version" && state.selected) navigate(["version", state.selected]);
        else showTab(tab);
      });
    }
    const search = $("search");
    search.addEventListener("input", () => {
      state.search = search.value;
      state.matchIndex = -1;
      applyOverlay();
    });
    search.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        search.value = "";
        state.search = "";
        applyOverlay();
        search.blur();
      } else if (event.key === "Enter") {
        const matches = searchMatches();
        if (!matches || !matches.length) return;
        state.matchIndex = (state.matchIndex + 1) % matches.length;
        const id = matches[state.matchIndex];
        for (const el of document.querySelectorAll(".node.focus")) el.classList.remove("focus");
        state.nodeEls.get(id).classList.add("focus");
        centreOn(id);
        $("search-count").textContent = `${state.matchIndex + 1} of ${matches.length}`;
      }
    });
    document.addEventListener("keydown", (event) => {
      const typing = event.target instanceof HTMLInputElement;
      if (typing) return;
      if (event.key === "/") {
        event.preventDefault();
        search.focus();
      } else if (event.key === "f") {
        fitAll(0.04);
      } else if (event.key === "+" || event.key === "=") {
        zoomAt(1.25, ...centre());
      } else if (event.key === "-") {
        zoomAt(0.8, ...centre());
      } else if (event.key === "Escape" && state.selected) {
        navigate([]);
      }
    });
    window.addEventListener("hashchange", route);
  }

  // ---------------------------------------------------------------- loading
  async function load(again) {
    const started = performance.now();
    $("status-line").textContent = again
      ? "Reading the workspace again…"
      : "Reading the workspace…";
    let snap;
    try {
      snap = await source.graph();
    } catch (err) {
      $("status-line").textContent = "";
      const pane = clear($("pane-overview"));
      pane.appendChild(
        h("div", {
          class: "error-box",
          id: "load-error",
          text: "Could not read the workspace: " + err.message,
        }),
      );
      return;
    }
    timings.fetch_ms = performance.now() - started;
    if (!source.embedded) {
      state.statuses = {};
      state.storage = null;
    }
    indexSnapshot(snap);
    $("reload").hidden = source.embedded; // an export is a snapshot: nothing to re-read
    if (!again && source.initial.mode) {
      state.mode = source.initial.mode === "all" ? "all" : "current";
      syncModeButtons();
    }
    $("ws-name").textContent = snap.workspace.name ? "· " + snap.workspace.name : "";
    document.title = "lineage · " + (snap.workspace.name || "workspace");
    $("cascade-count").textContent = (snap.cascades || []).length
      ? String(snap.cascades.length)
      : "";
    render();
    if (!again) fitAll(0.35);
    renderOverview();
    renderCascades();
    if (!again) route();
    // Interactive once the first frame with the graph is painted.
    requestAnimationFrame(() =>
      setTimeout(() => {
        timings.interactive_ms = performance.now(); // since navigation start
        document.body.setAttribute("data-ready", "graph");
      }, 0),
    );
    try {
      const statuses = await source.statuses();
      state.noStatuses = statuses === null || statuses === undefined;
      state.statuses = statuses || {};
      refreshStatuses();
      drawMinimap();
      updateStatusLine();
      renderOverview();
      document.body.setAttribute("data-statuses", "ready");
    } catch (err) {
      $("status-line").textContent = "Test results could not be read: " + err.message;
    }
    try {
      state.storage = await source.storage();
      state.storageError = state.storage ? null : "Not part of this export.";
    } catch (err) {
      state.storageError = "Storage figures could not be read: " + err.message;
    }
    if (state.tab === "overview") renderOverview();
    document.body.setAttribute("data-storage", "ready");
  }

  installPanZoom();
  installMinimap();
  installControls();
  syncModeButtons();
  load(false);
})();
