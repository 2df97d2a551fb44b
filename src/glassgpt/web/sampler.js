// The sampler chain of glassgpt.generate.samplers, step for step, on one row of logits.
// Same order and the same rules as the library (tests check the page against it):
//   top_k  keep logits >= the k-th largest (ties kept)
//   top_p  keep the most likely tokens until their mass (at T = 1, after top_k) reaches p;
//          ties with the last one kept are kept too
//   min_p  keep logits >= the top logit + log(min_p)   (float32, as torch computes it)
//   temperature  divide what is left by T; T = 0 is greedy (the filters are skipped)
"use strict";

const GlassSampler = (() => {
  function decodeF32(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  function decodeU8(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  // A row of logits with what every setting needs precomputed once: its values sorted
  // (largest first) and the best one.
  function prepare(logits) {
    const sorted = Float32Array.from(logits).sort().reverse();   // typed sort: ascending, fast
    let argmax = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[argmax]) argmax = i;
    return { logits, sorted, best: sorted[0], argmax };
  }

  // The floor below which a token is removed (-Infinity: nothing removed).
  function floor(row, s) {
    const V = row.logits.length, sorted = row.sorted;
    let f = -Infinity;
    if (s.topK && s.topK < V) f = Math.max(f, sorted[s.topK - 1]);
    if (s.topP != null && s.topP < 1) {
      let total = 0;
      for (let i = 0; i < V && sorted[i] >= f; i++) total += Math.exp(sorted[i] - row.best);
      const goal = total * s.topP;
      let ahead = 0, last = f;
      for (let i = 0; i < V && sorted[i] >= f; i++) {
        if (ahead >= goal) break;
        last = sorted[i];
        ahead += Math.exp(sorted[i] - row.best);
      }
      f = Math.max(f, last);
    }
    if (s.minP) f = Math.max(f, Math.fround(row.best + Math.fround(Math.log(s.minP))));
    return f;
  }

  // The distribution the next token is drawn from: probs (Float64Array), kept (0/1 per token).
  function apply(row, s) {
    const V = row.logits.length, x = row.logits;
    const probs = new Float64Array(V), kept = new Uint8Array(V);
    if (s.temperature === 0) {
      probs[row.argmax] = 1;
      kept[row.argmax] = 1;
      return { probs, kept, nKept: 1, entropy: 0 };
    }
    const f = floor(row, s), T = s.temperature;
    let total = 0, nKept = 0;
    const top = row.best / T;
    for (let i = 0; i < V; i++) {
      if (x[i] >= f && x[i] > -Infinity) {
        const e = Math.exp(x[i] / T - top);
        probs[i] = e;
        total += e;
        kept[i] = 1;
        nKept++;
      }
    }
    let entropy = 0;
    for (let i = 0; i < V; i++) {
      if (kept[i]) {
        const p = probs[i] / total;
        probs[i] = p;
        if (p > 0) entropy -= p * Math.log(p);
      }
    }
    return { probs, kept, nKept, entropy };
  }

  // The k largest logits' ids, largest first.
  function topIds(logits, k) {
    const idx = Array.from(logits.keys());
    if (logits.length > 4 * k) {
      const sorted = Float32Array.from(logits).sort();
      const kth = sorted[Math.max(0, logits.length - k)];
      return idx.filter((i) => logits[i] >= kth).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
    }
    return idx.sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
  }

  return { decodeF32, decodeU8, prepare, floor, apply, topIds };
})();

if (typeof module !== "undefined") module.exports = GlassSampler;
