// Small SVG charts for `labctl view`: axes with units, linear or log scales, lines and
// dots, reference lines and bands, and a legend under the plot area (never over data).
// No library, no network: the page must work on a bench PC without internet.
"use strict";

const LabPlot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                  "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Tick values: 1, 2, 5 x 10^k steps on a linear axis, decades on a log one.
  function ticks(lo, hi, log, integer) {
    if (log) {
      const out = [];
      for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
        const v = Math.pow(10, k);
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
      return out;
    }
    const raw = (hi - lo) / 7; // about 4 to 8 ticks
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    if (integer) step = Math.max(1, Math.round(step)); // epochs, iterations: no 1.5
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  function fmt(v, log) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) {
      const k = Math.round(Math.log10(a));
      if (Math.abs(a - Math.pow(10, k)) < 1e-9 * a) return (v < 0 ? "-" : "") + "1e" + k;
      return v.toExponential(1);
    }
    return String(parseFloat(v.toPrecision(4)));
  }

  function extent(values, log, pad) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) {
      if (v === null || !Number.isFinite(v) || (log && v <= 0)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (lo === Infinity) return log ? [0.1, 10] : [0, 1];
    if (log) {
      if (lo === hi) { lo /= 2; hi *= 2; }
      return [Math.pow(10, Math.floor(Math.log10(lo))), Math.pow(10, Math.ceil(Math.log10(hi)))];
    }
    if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
    const p = (hi - lo) * (pad === undefined ? 0.05 : pad);
    return [lo - p, hi + p];
  }

  // chart(opts) -> <svg>. opts: title, xlabel, ylabel (with units), xlog, ylog,
  // series: [{label, x, y, kind: "line"|"dots"|"both", color, dash, width, legend}],
  // hlines / vlines: [{y | x, label, color, dash}], band: {y0, y1, label, color},
  // legendExtra: [{label, color, kind, dash}], xrange / yrange: [lo, hi], xinteger (whole-number
// x ticks), role (data-role).
  function chart(opts) {
    const W = opts.width || 560;
    const H = opts.height || 260;
    const m = { left: 64, right: 14, top: opts.title ? 26 : 10, bottom: 42 };
    const series = (opts.series || []).filter((s) => s.x && s.x.length);
    const legend = series.filter((s) => s.legend !== false && s.label)
      .map((s) => ({ label: s.label, color: s.color, kind: s.kind, dash: s.dash }))
      .concat((opts.hlines || []).concat(opts.vlines || []).filter((l) => l.label)
        .map((l) => ({ label: l.label, color: l.color || "#444", kind: "line",
                       dash: l.dash || "6 4" })))
      .concat(opts.band && opts.band.label ? [{ label: opts.band.label, kind: "band",
                                               color: opts.band.color || "#2ca02c" }] : [])
      .concat(opts.legendExtra || []);
    // Legend rows under the x-axis label: about 7 px a character, 30 px for the swatch.
    const rows = [];
    let row = [], used = 0;
    for (const item of legend) {
      const w = 34 + 6.6 * item.label.length;
      if (row.length && used + w > W - m.left) { rows.push(row); row = []; used = 0; }
      row.push([item, used]);
      used += w;
    }
    if (row.length) rows.push(row);
    const legendH = rows.length * 17 + (rows.length ? 4 : 0);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H + legendH}`, class: "chart",
                            "data-role": opts.role, role: "img",
                            "aria-label": opts.title || opts.ylabel });
    const pw = W - m.left - m.right, ph = H - m.top - m.bottom;
    const xs = series.flatMap((s) => s.x).concat((opts.vlines || []).map((l) => l.x));
    const ys = series.flatMap((s) => s.y).concat((opts.hlines || []).map((l) => l.y));
    if (opts.band) ys.push(opts.band.y0, opts.band.y1);
    const [x0, x1] = opts.xrange || extent(xs, opts.xlog, 0.02);
    const [y0, y1] = opts.yrange || extent(ys, opts.ylog);
    const sx = opts.xlog
      ? (v) => m.left + (Math.log10(v) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) * pw
      : (v) => m.left + (v - x0) / (x1 - x0) * pw;
    const sy = opts.ylog
      ? (v) => m.top + ph - (Math.log10(v) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) * ph
      : (v) => m.top + ph - (v - y0) / (y1 - y0) * ph;
    const ok = (v, log) => v !== null && Number.isFinite(v) && (!log || v > 0);

    if (opts.title) {
      svg.appendChild(el("text", { x: m.left + pw / 2, y: 17, class: "title",
                                   "text-anchor": "middle" }, opts.title));
    }
    const clipId = "clip" + Math.random().toString(36).slice(2);
    const clip = el("clipPath", { id: clipId });
    clip.appendChild(el("rect", { x: m.left, y: m.top, width: pw, height: ph }));
    svg.appendChild(clip);
    svg.appendChild(el("rect", { x: m.left, y: m.top, width: pw, height: ph, class: "frame" }));
    for (const t of ticks(x0, x1, opts.xlog, opts.xinteger)) {
      const x = sx(t);
      svg.appendChild(el("line", { x1: x, x2: x, y1: m.top, y2: m.top + ph, class: "grid" }));
      svg.appendChild(el("text", { x, y: m.top + ph + 14, "text-anchor": "middle",
                                   class: "tick" }, fmt(t, opts.xlog)));
    }
    for (const t of ticks(y0, y1, opts.ylog)) {
      const y = sy(t);
      svg.appendChild(el("line", { x1: m.left, x2: m.left + pw, y1: y, y2: y, class: "grid" }));
      svg.appendChild(el("text", { x: m.left - 5, y: y + 4, "text-anchor": "end",
                                   class: "tick" }, fmt(t, opts.ylog)));
    }
    svg.appendChild(el("text", { x: m.left + pw / 2, y: m.top + ph + 32, "text-anchor": "middle",
                                 class: "axis" }, opts.xlabel || ""));
    svg.appendChild(el("text", { x: 14, y: m.top + ph / 2, "text-anchor": "middle",
                                 transform: `rotate(-90 14 ${m.top + ph / 2})`, class: "axis" },
                       opts.ylabel || ""));
    const plot = el("g", { "clip-path": `url(#${clipId})` });
    svg.appendChild(plot);
    if (opts.band && ok(opts.band.y0, opts.ylog) && ok(opts.band.y1, opts.ylog)) {
      const a = sy(opts.band.y0), b = sy(opts.band.y1);
      plot.appendChild(el("rect", { x: m.left, width: pw, y: Math.min(a, b),
                                    height: Math.abs(a - b), fill: opts.band.color || "#2ca02c",
                                    opacity: 0.15 }));
    }
    for (const l of opts.hlines || []) {
      if (!ok(l.y, opts.ylog)) continue;
      plot.appendChild(el("line", { x1: m.left, x2: m.left + pw, y1: sy(l.y), y2: sy(l.y),
                                    stroke: l.color || "#444", "stroke-dasharray": l.dash || "6 4",
                                    "stroke-width": 1.5, class: "ref" }));
    }
    for (const l of opts.vlines || []) {
      if (!ok(l.x, opts.xlog)) continue;
      plot.appendChild(el("line", { y1: m.top, y2: m.top + ph, x1: sx(l.x), x2: sx(l.x),
                                    stroke: l.color || "#444", "stroke-dasharray": l.dash || "6 4",
                                    "stroke-width": 1.5, class: "ref" }));
    }
    series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const kind = s.kind || "line";
      let d = "", n = 0, pen = false;
      for (let k = 0; k < s.x.length; k++) {
        if (!ok(s.x[k], opts.xlog) || !ok(s.y[k], opts.ylog)) { pen = false; continue; }
        d += (pen ? "L" : "M") + sx(s.x[k]).toFixed(1) + " " + sy(s.y[k]).toFixed(1);
        pen = true;
        n++;
      }
      if (kind !== "dots" && n) {
        plot.appendChild(el("path", { d, fill: "none", stroke: color, class: "series",
                                      "stroke-width": s.width || 1.8, "stroke-dasharray": s.dash,
                                      "data-label": s.label, "data-points": n }));
      }
      if (kind !== "line") {
        const g = el("g", { fill: s.hollow ? "none" : color, stroke: s.hollow ? color : "none",
                            class: "dots", "data-label": s.label, "data-points": n });
        for (let k = 0; k < s.x.length; k++) {
          if (!ok(s.x[k], opts.xlog) || !ok(s.y[k], opts.ylog)) continue;
          g.appendChild(el("circle", { cx: sx(s.x[k]).toFixed(1), cy: sy(s.y[k]).toFixed(1),
                                       r: s.radius || 2.2, opacity: s.opacity }));
        }
        plot.appendChild(g);
      }
    });
    rows.forEach((r, ri) => {
      const y = H + 6 + ri * 17;
      for (const [item, off] of r) {
        const x = m.left + off;
        if (item.kind === "dots") {
          svg.appendChild(el("circle", { cx: x + 12, cy: y + 5, r: 3, fill: item.color }));
        } else if (item.kind === "band") {
          svg.appendChild(el("rect", { x, y, width: 24, height: 10, fill: item.color,
                                       opacity: 0.25 }));
        } else {
          svg.appendChild(el("line", { x1: x, x2: x + 24, y1: y + 5, y2: y + 5,
                                       stroke: item.color || "#444", "stroke-width": 2,
                                       "stroke-dasharray": item.dash }));
          if (item.kind === "both") {
            svg.appendChild(el("circle", { cx: x + 12, cy: y + 5, r: 2.5, fill: item.color }));
          }
        }
        svg.appendChild(el("text", { x: x + 29, y: y + 9, class: "legend" }, item.label));
      }
    });
    return svg;
  }

  return { chart, COLORS, fmt };
})();
