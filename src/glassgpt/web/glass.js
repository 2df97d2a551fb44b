// The glass page: draws what the library computes (glassgpt.inspect.page_data via /glass/*,
// or the data inlined by `glassgpt inspect RUN TEXT --html`). Plain JS, no dependencies.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const S = GlassSampler;
  const STATIC = typeof window.GLASS_DATA !== "undefined";
  const TOP = 20;

  const state = {
    models: [], model: null, info: null,
    text: "", trace: null, position: 0, pos: null, rows: null, removed: [],
    openStage: null, openHead: [0, 0], matrix: null,
    session: null, sessionRow: null, sessionPos: null, openStep: null,
    pending: null, inFlight: false, typedAt: null,
  };
  window.glass = { state, timings: [], controlTimings: [] };

  // -- talking to the server, or reading the inline data -----------------------------------------
  async function api(path, body, method) {
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    const key = $("api-key").value || sessionStorage.getItem("glass-api-key");
    if (key) headers.Authorization = "Bearer " + key;
    const options = body === undefined ? { method: method || "GET", headers } :
      { method: method || "POST", headers, body: JSON.stringify(body) };
    let response;
    try {
      response = await fetch("glass/" + path, options);
    } catch (e) {
      throw new Error("the server does not answer (" + e.message + "): is `glassgpt view` still running?");
    }
    let data;
    try { data = await response.json(); } catch (e) { throw new Error("the server sent no JSON (HTTP " + response.status + ")"); }
    if (response.status === 401) {                // `glassgpt serve --api-key`: the page asks for the key
      $("api-key-box").style.display = "";
      throw new Error("this server wants an API key: type it in the box at the top right, then edit the text");
    }
    if (!response.ok) throw new Error((data && data.error && data.error.message) || ("HTTP " + response.status));
    return data;
  }

  function textBody(extra) {
    return Object.assign({ model: state.model, text: state.text, remove: state.removed }, extra || {});
  }

  const provider = STATIC ? {
    async models() { return { models: [window.GLASS_DATA.model] }; },
    async trace() {
      const d = window.GLASS_DATA;
      return Object.assign({}, d.trace, { position: d.positions[d.positions.length - 1] });
    },
    async position(p) { return window.GLASS_DATA.positions[p]; },
    async attention(layer, head) {
      const d = window.GLASS_DATA, T = d.trace.ids.length;
      if (!d._attention) d._attention = S.decodeF32(d.attention);
      const off = (layer * d.trace.n_head + head) * T * T;
      return { layer, head, size: T, values: d._attention.subarray(off, off + T * T) };
    },
    async activation(probe, position) {
      const d = window.GLASS_DATA, size = d.activation_sizes[probe];
      d._act = d._act || {};
      if (!d._act[probe]) d._act[probe] = S.decodeF32(d.activations[probe]);
      const v = d._act[probe].subarray(position * size, (position + 1) * size);
      let n = 0; for (const x of v) n += x * x;
      return { probe, position, size, norm: Math.sqrt(n), values: v };
    },
  } : {
    async models() { return api("models"); },
    async trace(position) {
      const extra = { open_head: state.openHead };
      if (position !== null) extra.position = position;
      const d = await api("trace", textBody(extra));
      if (d.matrix) d.matrix.values = S.decodeF32(d.matrix.pattern);
      return d;
    },
    async position(p) { return api("position", textBody({ position: p })); },
    async attention(layer, head) {
      const d = await api("attention", textBody({ layer, head }));
      d.values = S.decodeF32(d.pattern);
      return d;
    },
    async activation(probe, position) {
      const d = await api("activation", textBody({ probe, position }));
      d.values = S.decodeF32(d.vector);
      return d;
    },
  };

  // -- messages --------------------------------------------------------------------------------------
  function say(kind, text) {
    const m = $("message");
    m.className = kind || "";
    m.textContent = text || "";
  }

  function visible(piece) {
    return piece.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "␣").replace(/\r/g, "␍");
  }

  function fmt(p) { return p >= 0.001 || p === 0 ? p.toFixed(4) : p.toExponential(2); }

  // -- start -----------------------------------------------------------------------------------------
  let wired = false;
  async function start() {
    if (STATIC) document.body.classList.add("static");
    if (!wired) { wireControls(); wired = true; }
    let list;
    try {
      list = await provider.models();
    } catch (e) {
      say("error", "cannot load the models: " + e.message);
      return;
    }
    state.models = list.models;
    if (list.draft) {
      $("draft-box").style.display = "";
      $("draft-box").title += ` (draft: ${list.draft.config.n_layer} layers × ${list.draft.config.d_model}, ` +
        `${list.draft.parameters.toLocaleString()} parameters)`;
    }
    const select = $("model");
    for (const m of list.models) {
      const o = document.createElement("option");
      o.value = m.name; o.textContent = m.name;
      select.appendChild(o);
    }
    if (!list.models.length) { say("error", "this server has no models"); return; }
    const asked = STATIC ? null : new URL(window.location.href).searchParams.get("model");
    const known = list.models.some((m) => m.name === asked);
    chooseModel(known ? asked : list.models[0].name);
    if (STATIC) {
      $("prompt").value = window.GLASS_DATA.text;
      $("prompt").readOnly = true;
      $("footer").textContent = "glassgpt · static export of views 1-5 (no server): run `glassgpt view RUN` for " +
        "ablation and generation" + (window.GLASS_DATA.logits_kept ? " · the " + window.GLASS_DATA.logits_kept +
        " most likely tokens per position are kept: filters and temperature act on them only" : "");
    } else {
      const url = new URL(window.location.href);
      $("prompt").value = url.searchParams.get("text") || "";
    }
    onType();
    if (asked !== null && !known) {
      say("error", `no model named ${JSON.stringify(asked)} on this server: showing ${JSON.stringify(state.model)} ` +
        `(it has ${list.models.map((m) => m.name).join(", ")})`);
      state.keepMessage = true;
    }
  }

  function chooseModel(name) {
    state.model = name;
    state.info = state.models.find((m) => m.name === name);
    const c = state.info.config;
    $("model").value = name;
    $("model-summary").textContent = `${c.n_layer} layers × ${c.n_head} heads, d_model ${c.d_model}, ` +
      `vocabulary ${c.vocab_size}, context ${c.context_length} · ${state.info.parameters.toLocaleString()} parameters`;
    state.removed = [];
    state.openStage = null;
    state.session = null;
    renderSession();
  }

  // -- keystroke -> trace -> redraw; the latest text wins -----------------------------------------------
  function onType() {
    state.typedAt = performance.now();
    state.pending = $("prompt").value;
    if (!state.inFlight) retrace();
  }

  async function retrace() {
    if (state.pending === null) return;
    const text = state.pending, typedAt = state.typedAt;
    state.pending = null;
    state.text = text;
    if (!text.length) {
      state.trace = null;
      say("warning", "type some text: the page shows what the model computes over it");
      renderAll();
      return;
    }
    state.inFlight = true;
    try {
      const same = state.trace && state.traceText === text;
      const asked = performance.now();
      const data = await provider.trace(same ? state.position : null);
      const received = performance.now();
      if (state.pending === null) {
        state.trace = data;
        state.traceText = text;
        state.position = data.position.position;
        setPosition(data.position);
        if (!state.keepMessage) say(data.warning ? "warning" : "", data.warning || "");
        state.keepMessage = false;
        state.matrix = data.matrix || null;
        renderAll();
        if (state.matrix) { drawMatrix(); renderLines(); } else await openHead(state.openHead[0], state.openHead[1], false);
        if (state.openStage) await openStage(state.openStage, false);
        const done = performance.now();   // queued behind a trace in flight, the round trip, the redraw
        window.glass.timings.push({ ms: done - typedAt, queued: asked - typedAt, trip: received - asked,
          render: done - received, tokens: data.ids.length });
        window.glass.lastText = text;
      }
    } catch (e) {
      say("error", e.message);
      state.trace = null;
      renderAll();
    } finally {
      state.inFlight = false;
    }
    if (state.pending !== null) retrace();
  }

  function setPosition(pos) {
    state.pos = pos;
    const logits = S.decodeF32(pos.logits);
    state.rows = { model: S.prepare(logits), ids: pos.logit_ids || null,
      intact: pos.intact ? S.prepare(S.decodeF32(pos.intact.logits)) : null };
    state.attnRows = S.decodeF32(pos.attention_rows);
  }

  async function selectPosition(p) {
    if (!state.trace || p === state.position) return;
    state.position = p;
    try {
      setPosition(await provider.position(p));
    } catch (e) { say("error", e.message); return; }
    renderTokens(); renderOutput(); renderLens(); renderLines(); drawMatrix();
    if (state.openStage) openStage(state.openStage, false);
  }

  function renderAll() {
    renderTokens(); renderPipeline(); renderGrid(); renderOutput(); renderLens(); renderAblation(); renderLines();
    if (!state.trace) { drawMatrix(); $("stage-detail").textContent = ""; }
  }

  // -- 1. tokens ------------------------------------------------------------------------------------------
  function surprisalColour(bits) {
    if (bits === undefined) return "#eef0f3";
    const t = Math.min(bits / 12, 1);
    return `hsl(${(1 - t) * 120}, 70%, ${92 - 30 * t}%)`;
  }

  function renderTokens() {
    const box = $("tokens");
    box.textContent = "";
    const t = state.trace;
    if (!t) { $("token-legend").textContent = ""; return; }
    t.tokens.forEach((row, i) => {
      const el = document.createElement("span");
      el.className = "tok" + (i === state.position ? " selected" : "");
      el.dataset.position = i;
      el.dataset.id = row.id;
      el.style.background = surprisalColour(row.surprisal_bits);
      el.textContent = visible(row.piece);
      const sub = document.createElement("sub");
      sub.textContent = row.id;
      el.appendChild(sub);
      el.addEventListener("click", () => selectPosition(i));
      el.addEventListener("mousemove", (ev) => tip(ev, tokenTip(row, i)));
      el.addEventListener("mouseleave", () => tip(null));
      box.appendChild(el);
    });
    const lossText = t.loss === null ? "" : ` · loss ${t.loss.toFixed(3)} nats/token, perplexity ${t.perplexity.toFixed(2)}`;
    $("token-legend").textContent = `${t.ids.length} tokens` + (t.dropped ? ` (the first ${t.dropped} of ${t.total_tokens} cropped: ` +
      `the context holds ${t.context_length})` : "") + lossText +
      " · colour: surprisal of each token, green 0 bits → red ≥ 12 bits · click a token to select its position";
  }

  function tokenTip(row, i) {
    let s = `position ${i} · id ${row.id} · ${JSON.stringify(row.piece)}\n`;
    if (row.prob !== undefined) s += `p(this token) ${fmt(row.prob)} · rank ${row.rank} · surprisal ${row.surprisal_bits.toFixed(2)} bits\n`;
    else s += "the first token: nothing predicts it\n";
    s += `entropy of the next-token distribution here: ${row.entropy_bits.toFixed(2)} bits`;
    return s;
  }

  function tip(ev, text) {
    const t = $("tooltip");
    if (!ev) { t.style.display = "none"; return; }
    t.textContent = text;
    t.style.display = "block";
    t.style.left = Math.min(ev.clientX + 12, window.innerWidth - 340) + "px";
    t.style.top = (ev.clientY + 14) + "px";
  }

  // -- 2. pipeline ----------------------------------------------------------------------------------------
  function shapeText(shape) {
    if (!shape) return "";
    const T = state.trace ? state.trace.ids.length : "T";
    return "(" + shape.map((d) => d === "T" ? `T=${T}` : d).join(", ") + ")";
  }

  function stageBox(stage) {
    const el = document.createElement("div");
    el.className = "stage" + (state.openStage === stage.name ? " open" : "") +
      (stage.remove && state.removed.includes(stage.remove) ? " removed" : "");
    el.dataset.stage = stage.name;
    if (stage.remove) el.dataset.remove = stage.remove;
    el.innerHTML = `<div class="label"></div><div class="shape"></div><div class="params"></div>`;
    el.querySelector(".label").textContent = stage.label;
    el.querySelector(".shape").textContent = shapeText(stage.shape);
    el.querySelector(".params").textContent = stage.params ? stage.params.toLocaleString() + " params" : "no parameters";
    el.title = (stage.detail ? stage.detail + "\n" : "") + (stage.remove ? `part: ${stage.remove}` : "");
    el.addEventListener("click", () => {
      if (!STATIC && $("cut-mode").checked && stage.remove) toggleRemove(stage.remove);
      else if (stage.probe) openStage(stage.name, true);
    });
    return el;
  }

  function renderPipeline() {
    const box = $("pipeline");
    box.textContent = "";
    if (!state.info) return;
    const arrow = () => { const a = document.createElement("span"); a.className = "arrow"; a.textContent = "→"; return a; };
    let block = null, blockIndex = -1;
    state.info.pipeline.forEach((stage, k) => {
      if (stage.block !== undefined) {
        if (stage.block !== blockIndex) {
          if (k) box.appendChild(arrow());
          block = document.createElement("div");
          block.className = "block";
          const title = document.createElement("span");
          title.className = "title";
          title.textContent = `block ${stage.block}`;
          block.appendChild(title);
          box.appendChild(block);
          blockIndex = stage.block;
        }
        block.appendChild(stageBox(stage));
      } else {
        if (k) box.appendChild(arrow());
        box.appendChild(stageBox(stage));
        blockIndex = -1;
      }
    });
  }

  async function openStage(name, toggle) {
    if (toggle && state.openStage === name) { state.openStage = null; $("stage-detail").textContent = ""; renderPipeline(); return; }
    state.openStage = name;
    if (toggle) renderPipeline();
    const stage = state.info.pipeline.find((s) => s.name === name);
    if (!state.trace || !stage) return;
    let d;
    try { d = await provider.activation(stage.probe, state.position); } catch (e) { say("error", e.message); return; }
    const box = $("stage-detail");
    box.textContent = "";
    const head = document.createElement("div");
    let lo = Infinity, hi = -Infinity;
    for (const x of d.values) { if (x < lo) lo = x; if (x > hi) hi = x; }
    head.textContent = `${stage.label} at position ${state.position}: a vector of ${d.size} numbers, ` +
      `norm ${d.norm.toFixed(3)}, from ${lo.toFixed(3)} to ${hi.toFixed(3)} (probe ${stage.probe}; blue < 0 < red)`;
    head.id = "stage-caption";
    const canvas = document.createElement("canvas");
    canvas.width = Math.min(d.size, 4096);
    canvas.height = 1;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(canvas.width, 1);
    const scale = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    const per = d.size / canvas.width;
    for (let x = 0; x < canvas.width; x++) {
      let v = 0;
      for (let j = Math.floor(x * per); j < Math.floor((x + 1) * per); j++) if (Math.abs(d.values[j]) > Math.abs(v)) v = d.values[j];
      const t = v / scale;
      const [r, g, b] = t >= 0 ? [255, 255 * (1 - t), 255 * (1 - t)] : [255 * (1 + t), 255 * (1 + t), 255];
      img.data.set([r, g, b, 255], 4 * x);
    }
    ctx.putImageData(img, 0, 0);
    box.appendChild(head);
    box.appendChild(canvas);
  }

  // -- 3. attention -----------------------------------------------------------------------------------------
  function renderGrid() {
    const grid = $("attention-grid");
    grid.textContent = "";
    const t = state.trace;
    if (!t) return;
    const L = t.n_layer, H = t.n_head, n = t.attention_thumbs.size;
    const bytes = S.decodeU8(t.attention_thumbs.data);
    grid.style.gridTemplateColumns = `auto repeat(${H}, auto)`;
    grid.appendChild(document.createElement("span"));
    for (let h = 0; h < H; h++) {
      const lab = document.createElement("span"); lab.className = "grid-label"; lab.textContent = `head ${h}`; grid.appendChild(lab);
    }
    for (let l = 0; l < L; l++) {
      const lab = document.createElement("span"); lab.className = "grid-label"; lab.textContent = `layer ${l}`; grid.appendChild(lab);
      for (let h = 0; h < H; h++) {
        const part = `head ${l}.${h}`;
        const cell = document.createElement("div");
        cell.className = "thumb" + (state.openHead[0] === l && state.openHead[1] === h ? " open" : "") +
          (state.removed.includes(part) ? " removed" : "");
        cell.dataset.head = `${l}.${h}`;
        cell.title = part + (STATIC ? "" : " · with ✂ on, a click takes it out");
        const c = document.createElement("canvas");
        c.width = n; c.height = n;
        const ctx = c.getContext("2d");
        const img = ctx.createImageData(n, n);
        const off = (l * H + h) * n * n;
        for (let i = 0; i < n * n; i++) {
          const v = 255 - bytes[off + i];
          img.data.set([v, v, 255 - (255 - v) * 0.25, 255], 4 * i);
        }
        ctx.putImageData(img, 0, 0);
        cell.appendChild(c);
        cell.addEventListener("click", () => {
          if (!STATIC && $("cut-mode").checked) toggleRemove(part);
          else openHead(l, h, true);
        });
        grid.appendChild(cell);
      }
    }
  }

  async function openHead(l, h, redraw) {
    state.openHead = [l, h];
    if (!state.trace) return;
    try { state.matrix = await provider.attention(l, h); } catch (e) { say("error", e.message); return; }
    if (redraw) renderGrid();
    drawMatrix();
    renderLines();
  }

  function drawMatrix() {
    const c = $("attention-matrix"), ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    const m = state.matrix, t = state.trace;
    if (!m || !t) { $("attention-caption").textContent = ""; return; }
    const T = m.size, margin = T <= 40 ? 54 : 8;
    const cell = Math.max(1, Math.floor((c.width - margin) / T));
    const img = ctx.createImageData(cell * T, cell * T);
    for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) {
      const v = Math.round(255 * (1 - Math.min(1, m.values[q * T + k])));
      for (let dy = 0; dy < cell; dy++) for (let dx = 0; dx < cell; dx++) {
        img.data.set([v, v, 255 - (255 - v) * 0.25, 255], 4 * ((q * cell + dy) * cell * T + k * cell + dx));
      }
    }
    ctx.putImageData(img, margin, margin);
    ctx.strokeStyle = "#2563eb";
    ctx.strokeRect(margin, margin + state.position * cell, cell * T, cell);
    if (margin > 8) {                                   // tokens on both axes
      ctx.fillStyle = "#374151";
      ctx.font = `${Math.min(11, cell)}px monospace`;
      ctx.textBaseline = "middle";
      t.tokens.forEach((row, i) => {
        const label = visible(row.piece).slice(0, 6);
        ctx.textAlign = "right";
        ctx.fillText(label, margin - 3, margin + i * cell + cell / 2);
        ctx.save();
        ctx.translate(margin + i * cell + cell / 2, margin - 3);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(label, 0, 0);
        ctx.restore();
      });
    }
    $("attention-caption").textContent = `layer ${m.layer}, head ${m.head}: row = the query position, ` +
      `column = the key it attends to (darker = more weight); the selected position's row is outlined`;
  }

  function renderLines() {
    const svg = $("attention-lines");
    svg.textContent = "";
    const t = state.trace;
    if (!t || !state.attnRows) return;
    const [l, h] = state.openHead, T = t.ids.length, H = t.n_head;
    const row = state.attnRows.subarray((l * H + h) * T, (l * H + h + 1) * T);
    const width = svg.clientWidth || 800;
    const first = Math.max(0, state.position - 40), shown = state.position - first + 1;
    const step = width / Math.max(shown, 1);
    const ns = "http://www.w3.org/2000/svg";
    const x = (i) => (i - first + 0.5) * step;
    const from = x(state.position);
    for (let k = first; k <= state.position; k++) {
      const w = row[k];
      if (w > 0.01) {
        const p = document.createElementNS(ns, "path");
        const mid = (from + x(k)) / 2, lift = 8 + Math.min(70, Math.abs(from - x(k)) / 3);
        p.setAttribute("d", `M ${from} 82 Q ${mid} ${82 - lift * 1.6} ${x(k)} 82`);
        p.setAttribute("stroke", "#2563eb");
        p.setAttribute("fill", "none");
        p.setAttribute("stroke-width", 1 + 5 * w);
        p.setAttribute("stroke-opacity", Math.min(1, 0.15 + w));
        p.dataset.key = k;
        p.dataset.weight = w;
        svg.appendChild(p);
      }
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", x(k));
      label.setAttribute("y", 98);
      label.setAttribute("text-anchor", "middle");
      label.setAttribute("font-size", Math.min(12, step * 0.9));
      label.setAttribute("font-family", "monospace");
      label.setAttribute("fill", k === state.position ? "#2563eb" : "#374151");
      label.textContent = visible(t.tokens[k].piece).slice(0, Math.max(1, Math.floor(step / 7)));
      svg.appendChild(label);
    }
    const cap = document.createElementNS(ns, "text");
    cap.setAttribute("x", 4); cap.setAttribute("y", 12); cap.setAttribute("font-size", 11); cap.setAttribute("fill", "#6b7280");
    cap.textContent = `what position ${state.position} attends to in layer ${l}, head ${h} (line width = weight)`;
    svg.appendChild(cap);
  }

  // -- 4. output ----------------------------------------------------------------------------------------------
  function settings() {
    const num = (id) => parseFloat($(id).value);
    const T = num("temperature"), k = parseInt($("top-k").value, 10), p = num("top-p"), m = num("min-p");
    return { temperature: isFinite(T) && T >= 0 ? T : 1, topK: k > 0 ? k : null,
      topP: isFinite(p) && p > 0 && p < 1 ? p : null, minP: isFinite(m) && m > 0 && m <= 1 ? m : null };
  }

  function renderOutput() {
    const bars = $("bars"), summary = $("output-summary");
    bars.textContent = ""; summary.textContent = "";
    if (!state.trace || !state.rows) return;
    const s = settings(), rows = state.rows, pos = state.pos;
    const out = S.apply(rows.model, s);
    const intact = rows.intact ? S.apply(rows.intact, s) : null;
    const ids = rows.ids;                               // sparse export: index -> token id
    const order = S.topIds(rows.model.logits, TOP);
    let shown = 0;
    for (const i of order) {
      const id = ids ? ids[i] : i;
      const piece = pos.pieces[String(id)] ?? `<${id}>`;
      const intactP = intact ? intact.probs[i] : null;
      bars.appendChild(bar(piece, id, out.probs[i], !out.kept[i], intactP));
      shown += out.probs[i];
    }
    if (pos.vocab_size > order.length) {
      const rest = bar(`the other ${(pos.vocab_size - order.length).toLocaleString()}`, null, Math.max(0, 1 - shown), false, null);
      rest.classList.add("rest");
      rest.id = "rest-mass";
      bars.appendChild(rest);
    }
    const next = state.trace.tokens[state.position + 1];
    summary.innerHTML = "";
    summary.textContent = `after position ${state.position} (${JSON.stringify(state.trace.tokens[state.position].piece)})` +
      (next ? `, the text continues with ${JSON.stringify(next.piece)}` : "") +
      ` · kept ${out.nKept.toLocaleString()} of ${pos.vocab_size.toLocaleString()} tokens · entropy ` +
      `${(out.entropy / Math.LN2).toFixed(3)} bits` + (intact ? " · black tick = the intact model" : "");
    summary.dataset.kept = out.nKept;
    summary.dataset.entropy = out.entropy;
    if (session()) renderSessionBars();
  }

  function bar(piece, id, p, removed, intactP, onClick) {
    const el = document.createElement("div");
    el.className = "bar" + (removed ? " removed" : "") + (onClick ? " clickable" : "");
    if (id !== null) { el.dataset.id = id; el.dataset.prob = p; }
    if (intactP !== null && intactP !== undefined) el.dataset.intactProb = intactP;
    el.innerHTML = `<span class="piece"></span><span class="track"><span class="fill"></span></span><span class="p"></span>`;
    el.querySelector(".piece").textContent = id === null ? piece : visible(piece);
    el.querySelector(".fill").style.width = (100 * p) + "%";
    if (intactP !== null && intactP !== undefined) {
      const tick = document.createElement("span");
      tick.className = "intact";
      tick.style.left = (100 * intactP) + "%";
      el.querySelector(".track").appendChild(tick);
    }
    el.querySelector(".p").textContent = removed ? "removed" : fmt(p);
    if (id !== null) el.title = `id ${id} · ${JSON.stringify(piece)} · p = ${p}` + (intactP !== null && intactP !== undefined ?
      ` (intact ${fmt(intactP)})` : "");
    if (onClick) el.addEventListener("click", onClick);
    return el;
  }

  function wireControls() {
    $("prompt").addEventListener("input", onType);
    $("api-key").addEventListener("change", () => {
      sessionStorage.setItem("glass-api-key", $("api-key").value);
      if (!state.models.length) start(); else onType();
    });
    $("model").addEventListener("change", (e) => { chooseModel(e.target.value); onType(); });
    const pair = (range, number) => {
      $(range).addEventListener("input", () => { $(number).value = $(range).value; controlChanged(); });
      $(number).addEventListener("input", () => { $(range).value = $(number).value; controlChanged(); });
    };
    pair("temperature-range", "temperature");
    pair("top-p-range", "top-p");
    pair("min-p-range", "min-p");
    $("top-k").addEventListener("input", controlChanged);
    $("session-start").addEventListener("click", startSession);
    $("session-sample").addEventListener("click", () => stepSession(null));
    $("session-rewind").addEventListener("click", () => editSession("rewind", { position: state.sessionPos }));
    $("session-substitute").addEventListener("click", () =>
      editSession("substitute", { position: state.sessionPos, text: $("substitute-text").value }));
    $("session-undo").addEventListener("click", () => editSession("undo", {}));
    window.addEventListener("resize", () => renderLines());
  }

  function controlChanged() {
    const t0 = performance.now();
    renderOutput();
    window.glass.controlTimings.push(performance.now() - t0);
  }

  // -- 5. logit lens ---------------------------------------------------------------------------------------
  function renderLens() {
    const box = $("lens");
    box.textContent = "";
    if (!state.trace || !state.pos) return;
    const d = state.pos.lens;
    const table = document.createElement("table");
    table.innerHTML = `<tr><th>after</th><th>top token</th><th>its probability</th><th>p(${visible(d.final_token)})</th></tr>`;
    d.layers.forEach((name, i) => {
      const tr = document.createElement("tr");
      tr.dataset.depth = i;
      tr.innerHTML = `<td></td><td class="tokcell"></td><td><span class="lensbar"></span> <span class="v"></span></td><td class="f"></td>`;
      tr.children[0].textContent = name;
      tr.children[1].textContent = visible(d.top_tokens[i]);
      tr.children[2].querySelector(".lensbar").style.width = (80 * d.top_probs[i]) + "px";
      tr.children[2].querySelector(".v").textContent = fmt(d.top_probs[i]);
      tr.children[3].textContent = fmt(d.final_prob[i]);
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  // -- 6. ablation --------------------------------------------------------------------------------------------
  function toggleRemove(part) {
    const i = state.removed.indexOf(part);
    if (i >= 0) state.removed.splice(i, 1); else state.removed.push(part);
    refresh();
  }

  function refresh() {             // the same text again (parts removed or put back), same position
    state.typedAt = performance.now();
    state.pending = state.text;
    if (!state.inFlight) retrace();
  }

  function renderAblation() {
    const box = $("ablation");
    box.textContent = "";
    const t = state.trace;
    if (!t) return;
    if (!state.removed.length) {
      box.textContent = "the intact model" + (t.loss === null ? "" : `: loss on this text ${t.loss.toFixed(4)} nats/token`);
      return;
    }
    for (const part of state.removed) {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = part + " ✕";
      chip.title = "put it back";
      chip.addEventListener("click", () => toggleRemove(part));
      box.appendChild(chip);
    }
    const p = document.createElement("p");
    p.id = "ablation-loss";
    if (t.loss !== null) {
      const change = t.loss - t.intact_loss;
      p.textContent = `loss on this text: ${t.loss.toFixed(4)} nats/token without them, ${t.intact_loss.toFixed(4)} intact ` +
        `(${change >= 0 ? "+" : ""}${change.toFixed(4)})`;
      p.dataset.loss = t.loss; p.dataset.intactLoss = t.intact_loss;
    }
    box.appendChild(p);
    const reset = document.createElement("button");
    reset.id = "ablation-reset";
    reset.textContent = "reset: put every part back";
    reset.addEventListener("click", () => { state.removed = []; refresh(); });
    box.appendChild(reset);
  }

  // -- 7. step through generation ---------------------------------------------------------------------------
  function session() { return state.session; }

  async function sessionCall(path, body, method) {
    try {
      state.session = await api(path, body, method);
      state.sessionRow = state.session.logits ? S.prepare(S.decodeF32(state.session.logits)) : null;
      say("", "");
    } catch (e) { say("error", e.message); }
    renderSession();
  }

  async function startSession() {
    if (!state.text) { say("warning", "type some text first: the session starts from it"); return; }
    state.sessionPos = null;
    state.openStep = null;
    await sessionCall("session", { model: state.model, text: state.text });
  }

  function samplingBody() {
    const s = settings(), seed = parseInt($("seed").value, 10);
    return { temperature: s.temperature, top_k: s.topK, top_p: s.topP, min_p: s.minP,
      seed: Number.isFinite(seed) ? seed : null };
  }

  async function stepSession(token) {
    if (!session()) return;
    const body = samplingBody();
    if (token !== null) body.token = token;
    else if ($("use-draft").checked) { body.draft = true; body.draft_tokens = parseInt($("draft-tokens").value, 10) || 4; }
    await sessionCall(`session/${session().id}/step`, body);
    if (session()) { state.openStep = session().steps.length - 1; renderSession(); }
  }

  async function editSession(what, body) {
    if (!session()) return;
    if (what !== "undo" && state.sessionPos === null) { say("warning", "click a token of the session first"); return; }
    await sessionCall(`session/${session().id}/${what}`, body);
    state.sessionPos = null;
    renderSession();
  }

  function renderSession() {
    const s = session();
    for (const id of ["session-sample", "session-undo"]) $(id).disabled = !s;
    for (const id of ["session-rewind", "session-substitute"]) $(id).disabled = !s || state.sessionPos === null;
    const box = $("session-tokens");
    box.textContent = "";
    $("session-steps").textContent = "";
    $("session-bars").textContent = "";
    if (!s) return;
    s.pieces.forEach((piece, i) => {
      const el = document.createElement("span");
      el.className = "tok" + (i === state.sessionPos ? " selected" : "");
      el.dataset.position = i;
      el.dataset.id = s.ids[i];
      el.style.background = "#eef0f3";
      el.textContent = visible(piece);
      el.title = `position ${i} · id ${s.ids[i]} · click to select it for rewind / substitute`;
      el.addEventListener("click", () => { state.sessionPos = i; renderSession(); });
      box.appendChild(el);
    });
    s.steps.forEach((step, k) => {
      const li = document.createElement("li");
      li.className = k === state.openStep ? "open" : "";
      li.textContent = step.speculative ? `@${step.position} ${step.speculative.tokens.map((t) => JSON.stringify(t.piece)).join(" ")}` +
        ` speculative: ${step.speculative.accepted} of ${step.speculative.proposed.length} drafts accepted` :
        `@${step.position} ${JSON.stringify(step.piece)} ${step.how}, p ${fmt(step.prob)} → ${fmt(step.prob_after)}`;
      li.addEventListener("click", () => { state.openStep = k; renderSession(); });
      $("session-steps").appendChild(li);
    });
    renderSessionBars();
    const detail = $("step-detail");
    detail.textContent = "";
    if (state.openStep !== null && s.steps[state.openStep]) {
      const step = s.steps[state.openStep];
      const head = document.createElement("div");
      head.className = "summary";
      head.textContent = `step at position ${step.position}: T ${step.settings.temperature}` +
        (step.settings.top_k ? `, top-k ${step.settings.top_k}` : "") + (step.settings.top_p ? `, top-p ${step.settings.top_p}` : "") +
        (step.settings.min_p ? `, min-p ${step.settings.min_p}` : "") + ` · bar = the distribution sampled from, tick = the model's`;
      detail.appendChild(head);
      if (step.speculative) detail.appendChild(speculativeView(step.speculative));
      for (const a of step.top) detail.appendChild(bar(a.piece, a.id, a.prob_after, a.prob_after === 0, a.prob));
    }
  }

  // 8. speculative decoding, seen: the draft's proposals, accepted (green) or rejected (red), and
  // the target's own token (its replacement for the first rejected draft, or one more after all)
  function speculativeView(spec) {
    const box = document.createElement("div");
    box.className = "speculative";
    const label = document.createElement("span");
    label.textContent = "draft proposed: ";
    box.appendChild(label);
    for (const p of spec.proposed) {
      const chip = document.createElement("span");
      chip.className = "tok " + (p.accepted ? "accepted" : "rejected");
      chip.dataset.id = p.id;
      chip.textContent = visible(p.piece);
      chip.title = p.accepted ? "accepted by the target" : "rejected by the target";
      box.appendChild(chip);
    }
    if (spec.target_token) {
      const arrow = document.createElement("span");
      arrow.textContent = spec.target_token.replaces ? " → the target replaced the first rejected one with " :
        " → all accepted; the target added ";
      box.appendChild(arrow);
      const chip = document.createElement("span");
      chip.className = "tok target";
      chip.dataset.id = spec.target_token.id;
      chip.textContent = visible(spec.target_token.piece);
      box.appendChild(chip);
    }
    return box;
  }

  function renderSessionBars() {
    const s = session(), box = $("session-bars");
    box.textContent = "";
    if (!s || !state.sessionRow) return;
    const out = S.apply(state.sessionRow, settings());
    for (const id of S.topIds(state.sessionRow.logits, TOP)) {
      const piece = s.pieces_top[String(id)] ?? `<${id}>`;
      box.appendChild(bar(piece, id, out.probs[id], !out.kept[id], null, () => stepSession(id)));
    }
  }

  window.addEventListener("error", (e) => say("error", "the page hit a bug: " + e.message));
  document.addEventListener("DOMContentLoaded", start);
})();
