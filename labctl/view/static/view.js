// `labctl view`: follows each session's document stream (GET /api/docs after an offset,
// every half second) and draws what the documents hold. Everything comes from the server's
// disk reads, so a reload rebuilds the same page from offset 0.
"use strict";

const POLL_MS = 500;
const UA = 1e6; // A -> uA for axes
const STATUS = { success: "success", fail: "failed", abort: "aborted" };

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function num(v, digits) {
  if (v === null || v === undefined) return "-";
  if (typeof v !== "number") return String(v);
  return LabPlot.fmt(digits ? parseFloat(v.toPrecision(digits)) : v, false);
}

// Charts of a section: side by side where the column is wide enough.
function charts(...svgs) { return h("div", { class: "charts" }, svgs); }

// A table that scrolls sideways rather than overflow its column.
function wide(t) { return h("div", { class: "table-wrap" }, t); }

function pct(v) { return v === null || v === undefined ? "-" : (100 * v).toFixed(2) + " %"; }

function table(head, rows, cls) {
  return h("table", { class: cls || "data" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", { class: r.cls }, (r.cells || r).map((c) => h("td", {}, c))))));
}

function mean(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

// The stop document's headline: the command's sentence, else its summary's scalars (as
// `labctl sessions list` prints it), else the reason it ended.
function headlineOf(stop) {
  if (stop.labctl_headline) return stop.labctl_headline;
  const parts = Object.entries(stop.labctl_summary || {})
    .filter(([, v]) => ["number", "string"].includes(typeof v) && String(v).length <= 40)
    .map(([k, v]) => `${k}=${typeof v === "number" ? num(v, 4) : v}`);
  return parts.join(", ") || stop.reason || "";
}

// key -> value rows of a nested object (dotted keys), arrays of objects summarised.
function flatRows(obj, path, skip) {
  const rows = [];
  for (const [k, v] of Object.entries(obj || {})) {
    const p = path ? `${path}.${k}` : k;
    if (skip && skip(p, v, rows)) continue;
    if (v && typeof v === "object" && !Array.isArray(v)) rows.push(...flatRows(v, p, skip));
    else rows.push([p, typeof v === "number" ? num(v, 6) : JSON.stringify(v)]);
  }
  return rows;
}

class SessionView {
  constructor(id, root) {
    this.id = id;
    this.root = root;
    this.offset = 0;
    this.writing = false;
    this.starts = [];
    this.stops = [];
    this.streamOf = {}; // descriptor uid -> stream name
    this.descriptors = {}; // stream name -> latest descriptor
    this.events = {}; // stream name -> [data]
    this.nDocs = 0;
    this.neurons = null;
    this.neuronsKey = null;
    this.neuronsBusy = false;
    this.error = null;
    this.dirty = true;
    root.appendChild(h("div", { class: "loading" }, `loading ${id} ...`));
  }

  get start() { return this.starts[0] || null; }
  get stop() { return this.stops.length && this.stops.length >= this.starts.length ? this.stops[this.stops.length - 1] : null; }

  status() {
    if (!this.start) return "loading";
    if (this.stop) return STATUS[this.stop.exit_status] || this.stop.exit_status;
    return this.writing ? "running" : "interrupted";
  }

  ingest(name, doc) {
    this.nDocs++;
    if (name === "start") this.starts.push(doc);
    else if (name === "stop") this.stops.push(doc);
    else if (name === "descriptor") {
      const stream = doc.labctl_stream || doc.name;
      this.streamOf[doc.uid] = stream;
      this.descriptors[stream] = doc;
      this.events[stream] = this.events[stream] || [];
    } else if (name === "event") {
      const stream = this.streamOf[doc.descriptor];
      if (stream !== undefined) this.events[stream].push(doc.data);
    }
  }

  async poll() {
    let wait = POLL_MS;
    try {
      const r = await fetch(`/api/docs?s=${encodeURIComponent(this.id)}&offset=${this.offset}`,
                            { cache: "no-store" });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || r.statusText);
      for (const [name, doc] of body.docs) this.ingest(name, doc);
      if (body.docs.length || body.writing !== this.writing || this.error) this.dirty = true;
      this.offset = body.next_offset;
      this.writing = body.writing;
      this.error = null;
      if (body.more) wait = 0;
    } catch (err) {
      if (this.error !== String(err)) this.dirty = true;
      this.error = String(err.message || err);
      wait = 2000;
    }
    if (this.dirty) { this.render(); this.dirty = false; }
    this.maybeNeurons();
    setTimeout(() => this.poll(), wait);
  }

  // The latest epoch's neurons, fetched again when a new epoch is recorded.
  async maybeNeurons() {
    const epochs = this.events.epoch;
    if (!epochs || !epochs.length || this.neuronsBusy) return;
    const last = epochs[epochs.length - 1];
    const key = `${last.fold}/${last.epoch}`;
    if (key === this.neuronsKey) return;
    this.neuronsBusy = true;
    try {
      const r = await fetch(`/api/neurons?s=${encodeURIComponent(this.id)}&fold=${last.fold}&epoch=${last.epoch}`);
      const body = await r.json();
      this.neurons = r.ok ? body : { error: body.error };
      this.neuronsKey = key;
      this.renderNeurons();
    } catch (err) {
      this.neurons = { error: String(err) };
    } finally {
      this.neuronsBusy = false;
    }
  }

  render() {
    const root = this.root;
    root.replaceChildren();
    root.appendChild(this.header());
    if (this.error) root.appendChild(h("div", { class: "error", "data-role": "error" }, this.error));
    if (!this.start) return;
    const ev = this.events;
    if (ev.epoch) root.appendChild(this.training());
    if (ev.epoch) { this.neuronBox = h("section", { "data-section": "neurons" }); root.appendChild(this.neuronBox); this.renderNeurons(); }
    if (ev.iv) root.appendChild(this.ivSection("iv", "I-V sweep"));
    if (ev.fd_scan) root.appendChild(this.fdScan());
    if (ev.tuning) root.appendChild(this.tuning());
    if (ev.verify_iv) root.appendChild(this.ivSection("verify_iv", "verification I-V sweep"));
    if (ev.instrument_check) root.appendChild(this.instrumentCheck());
    if (ev.differential_check && ev.differential_check.length) root.appendChild(this.differential());
    const known = new Set(["epoch", "fold", "iv", "fd_scan", "tuning", "verify_iv", "instrument_check",
                           "differential_check", "calibration"]);
    for (const name of Object.keys(ev)) if (!known.has(name)) root.appendChild(this.genericStream(name));
    if (this.stop && Object.keys(this.stop.labctl_summary || {}).length) root.appendChild(this.result());
    root.appendChild(this.safety());
    root.appendChild(this.instruments());
    root.appendChild(this.configuration());
  }

  header() {
    const s = this.start, status = this.status();
    const stop = this.stop;
    const headline = stop ? headlineOf(stop) : "";
    const n = Object.values(this.events).reduce((a, e) => a + e.length, 0);
    const started = s ? new Date(s.time * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
    const took = s && stop ? `, ${(stop.time - s.time).toFixed(1)} s` : "";
    return h("header", { class: "session-head" },
      h("div", { class: "title-row" },
        h("span", { class: "command" }, s ? s.plan_name : ""),
        h("span", { class: `status status-${status}`, "data-role": "status", "data-status": status }, status)),
      h("div", { class: "sid" }, this.id),
      h("div", { class: "headline", "data-role": "headline" }, headline),
      h("div", { class: "meta" }, `started ${started}${took}; ${n} events` +
        (this.starts.length > 1 ? `; ${this.starts.length} run segments (resumed)` : "")));
  }

  // The stop document's summary: the command's result as it recorded it.
  result() {
    const long = (p, v, rows) => {
      if (Array.isArray(v) && v.length > 4) { rows.push([p, `${v.length} entries`]); return true; }
      return false;
    };
    return this.section("result", "result",
      h("details", { open: "" }, h("summary", {}, "summary recorded in the stop document"),
        wide(table(["key", "value"], flatRows(this.stop.labctl_summary, "", long), "data config"))));
  }

  section(title, name, ...body) {
    return h("section", { "data-section": name }, h("h3", {}, title), ...body);
  }

  // Training: accuracy and loss per epoch for every fold, validation solid, training dotted,
  // the tanh network's final validation accuracy per fold as the baseline, and the mean.
  training() {
    const cfg = (this.start.config || {}).settings || {};
    const epochs = this.events.epoch;
    const folds = {};
    for (const e of epochs) (folds[e.fold] = folds[e.fold] || []).push(e);
    const done = {};
    for (const f of this.events.fold || []) done[f.fold] = f;
    const last = epochs[epochs.length - 1];
    const foldIds = Object.keys(folds).map(Number).sort((a, b) => a - b);
    const color = (f) => LabPlot.COLORS[f % LabPlot.COLORS.length];
    const acc = [], loss = [], fid = [], hlines = [];
    for (const f of foldIds) {
      const rows = folds[f];
      const x = rows.map((r) => r.epoch + 1);
      acc.push({ label: `fold ${f + 1}`, x, y: rows.map((r) => 100 * r.val_acc), color: color(f), kind: "line" });
      acc.push({ label: "", x, y: rows.map((r) => 100 * r.train_acc), color: color(f), dash: "2 3", width: 1.2, legend: false });
      loss.push({ label: `fold ${f + 1}`, x, y: rows.map((r) => r.val_loss), color: color(f) });
      loss.push({ label: "", x, y: rows.map((r) => r.train_loss), color: color(f), dash: "2 3", width: 1.2, legend: false });
      if (rows.some((r) => r.grad_cosine !== null && r.grad_cosine !== undefined)) {
        fid.push({ label: `fold ${f + 1}`, x, y: rows.map((r) => r.grad_cosine), color: color(f), kind: "both" });
      }
    }
    // Mean validation over the folds that reached each epoch (all of them once each ended).
    if (foldIds.length > 1) {
      const n = Math.max(...foldIds.map((f) => folds[f].length));
      const x = [], y = [];
      for (let k = 0; k < n; k++) {
        const vals = foldIds.map((f) => folds[f][k]).filter((r) => r).map((r) => 100 * r.val_acc);
        if (vals.length === foldIds.length) { x.push(k + 1); y.push(mean(vals)); }
      }
      if (x.length) acc.push({ label: "mean validation", x, y, color: "#000", width: 3 });
    }
    const tanh = Object.values(done).map((d) => d.tanh_val_acc).filter((v) => v !== null);
    if (tanh.length) hlines.push({ y: 100 * mean(tanh), label: `tanh baseline (validation, mean of ${tanh.length} fold${tanh.length > 1 ? "s" : ""})`, color: "#555", dash: "7 4" });
    const styleLegend = [{ label: "validation", kind: "line", color: "#555" },
                         { label: "training", kind: "line", color: "#555", dash: "2 3" }];
    const perFold = foldIds.map((f) => {
      const d = done[f], rows = folds[f];
      const r = rows[rows.length - 1];
      return d ? [`fold ${f + 1}`, `${d.epochs}`, pct(d.val_acc), pct(d.tanh_val_acc), d.best_epoch < 0 ? "last" : `${d.best_epoch + 1}`]
               : [`fold ${f + 1}`, `${rows.length} (running)`, pct(r.val_acc), "-", "-"];
    });
    const nFolds = cfg.folds, nEpochs = cfg.epochs;
    const title = `${cfg.task || "iris"}, ${cfg.layers || "?"} x ${cfg.hidden || "?"} hidden, grad ${cfg.grad || "?"}, ${cfg.backend || ""}`;
    return this.section("training", "training",
      h("div", { class: "progress" },
        h("span", { class: "epoch-count", "data-role": "epoch-count", "data-epochs": epochs.length },
          `${epochs.length} epoch${epochs.length === 1 ? "" : "s"} recorded`),
        ` of ${nFolds && nEpochs ? nFolds * nEpochs : "?"}; now fold ${last.fold + 1}${nFolds ? "/" + nFolds : ""}, epoch ${last.epoch + 1}${nEpochs ? "/" + nEpochs : ""}`),
      charts(LabPlot.chart({ title: `accuracy: ${title}`, xlabel: "epoch", xinteger: true, ylabel: "accuracy (%)", series: acc,
                      hlines, legendExtra: styleLegend, role: "accuracy-plot" }),
      LabPlot.chart({ title: "loss", xlabel: "epoch", xinteger: true, ylabel: "cross-entropy (nats)", series: loss,
                      legendExtra: styleLegend, role: "loss-plot", height: 220 }),
      fid.length ? LabPlot.chart({ title: "gradient fidelity: cosine to the exact-derivative gradient",
                                    xlabel: "epoch", xinteger: true, ylabel: "cosine", series: fid, role: "fidelity-plot", height: 200 }) : null),
      table(["fold", "epochs", "MTJ validation", "tanh validation", "best epoch"], perFold));
  }

  renderNeurons() {
    const box = this.neuronBox;
    if (!box) return;
    const n = this.neurons;
    box.replaceChildren(h("h3", {}, "hidden neurons (latest epoch)"));
    if (!n) { box.appendChild(h("p", { class: "note" }, "loading the latest epoch's measurements ...")); return; }
    if (n.error) { box.appendChild(h("div", { class: "error" }, n.error)); return; }
    if (!n.layers.length) { box.appendChild(h("p", { class: "note" }, "no neuron measurements recorded")); return; }
    const truth = n.truth === "simulator" ? "simulator truth" : n.truth === "model" ? "device model" : null;
    box.appendChild(h("p", { class: "note", "data-role": "neuron-epoch" },
      `fold ${n.fold + 1}, epoch ${n.epoch + 1}: dots measured (V_A, and the dV/dI the trainer used, grad ${n.grad})` +
      (truth ? `, lines the ${truth}` : "; real devices: no truth to compare with")));
    n.layers.forEach((layer, li) => {
      const vs = [], ds = [];
      layer.forEach((nr, j) => {
        const c = LabPlot.COLORS[j % LabPlot.COLORS.length];
        const label = `n${nr.neuron}` + (nr.pair ? ` (pair ${nr.pair})` : "");
        const i = nr.i_a.map((v) => v * UA);
        vs.push({ label, x: i, y: nr.v_v, kind: "dots", color: c, radius: 1.6, opacity: 0.7 });
        ds.push({ label, x: i, y: nr.dvdi_ohm.map((v) => v / 1e3), kind: "dots", color: c, radius: 1.6, opacity: 0.7 });
        if (nr.truth_i_a) {
          const ti = nr.truth_i_a.map((v) => v * UA);
          if (nr.truth_v_v) vs.push({ label: "", x: ti, y: nr.truth_v_v, color: c, legend: false, width: 1.2 });
          ds.push({ label: "", x: ti, y: nr.truth_dvdi_ohm.map((v) => v / 1e3), color: c, legend: false, width: 1.2 });
        }
      });
      const extra = truth ? [{ label: truth, kind: "line", color: "#555" }] : [];
      box.appendChild(charts(
        LabPlot.chart({ title: `layer ${li + 1}: activation`, xlabel: "bias current I (uA)", ylabel: "V_A (V)",
                        series: vs, legendExtra: extra, role: "activation-plot", height: 240 }),
        LabPlot.chart({ title: `layer ${li + 1}: derivative`, xlabel: "bias current I (uA)", ylabel: "dV/dI (kOhm)",
                        series: ds, legendExtra: extra, role: "derivative-plot", height: 240 })));
      if (truth) {
        box.appendChild(table(["neuron", "pair", "I range (uA)", "median |dV/dI / truth - 1|"],
          layer.map((nr) => [`${nr.neuron}`, nr.pair ? `${nr.pair}` : "-",
                             `${num(nr.i_a[0] * UA, 3)} .. ${num(nr.i_a[nr.i_a.length - 1] * UA, 3)}`, pct(nr.dvdi_err_median)])));
      }
    });
  }

  // I-V: both devices against the current, and V_B - V_A (the pair mismatch that matters).
  ivSection(stream, title) {
    const rows = this.events[stream];
    const i = rows.map((r) => r.current_a * UA);
    const hit = rows.map((r) => r.compliance || r.overrange);
    const ser = [{ label: "device A", x: i, y: rows.map((r) => r.v_a), kind: "both", color: LabPlot.COLORS[0], radius: 1.6 },
                 { label: "device B", x: i, y: rows.map((r) => r.v_b), kind: "both", color: LabPlot.COLORS[1], radius: 1.6 }];
    if (hit.some((x) => x)) {
      ser.push({ label: "compliance / overrange", x: i.filter((_, k) => hit[k]), y: rows.filter((_, k) => hit[k]).map((r) => r.v_a),
                 kind: "dots", hollow: true, radius: 4, color: "#000" });
    }
    const diff = rows.map((r) => (r.v_diff === null || r.v_diff === undefined ? null : 1e3 * r.v_diff));
    const pair = (this.start.config || {}).pair;
    const out = this.section(title + (pair ? `, pair ${pair}` : ""), stream,
      h("p", { class: "note" }, `${rows.length} points` + (this.running() ? " so far" : "") +
        `; ${rows.filter((r) => r.compliance).length} in compliance, ${rows.filter((r) => r.overrange).length} ADC overrange`),
      charts(LabPlot.chart({ title: `${this.start.plan_name} ${this.id}: V against I`, xlabel: "I (uA)", ylabel: "V_A, V_B (V)",
                      series: ser, role: `${stream}-plot` })));
    if (rows.some((r) => r.v_b !== undefined)) {
      const smus = rows.map((r) => 1e3 * (r.v_b - r.v_a));
      // The SMUs' difference as dots under the ADC's line: where they part, the path is suspect.
      const mismatch = [{ label: "V_B - V_A from the SMUs", x: i, y: smus, kind: "dots", color: LabPlot.COLORS[3], radius: 2.4 }];
      if (rows[0].v_diff !== undefined) {
        mismatch.push({ label: "V_B - V_A read by the ADC", x: i, y: diff, kind: "line", color: LabPlot.COLORS[2], width: 1.6 });
      }
      out.lastChild.appendChild(LabPlot.chart({ title: "pair mismatch", xlabel: "I (uA)", ylabel: "V_B - V_A (mV)",
        series: mismatch,
        hlines: [{ y: 0, color: "#999", dash: "2 2" }], role: `${stream}-diff-plot` }));
    }
    return out;
  }

  running() { return this.status() === "running"; }

  // FD scan: derivative error against dI per mode, the recommended dI marked.
  fdScan() {
    const rows = this.events.fd_scan;
    const di = rows.map((r) => r.di_a * UA);
    const modes = [["forward_raw", "forward, raw"], ["forward_cal", "forward, calibrated"],
                   ["swap", "swap"], ["swap_vs_model", "swap vs model"]];
    const ser = modes.filter(([k]) => rows[0][k] !== undefined).map(([k, label], j) => ({
      label, x: di, y: rows.map((r) => (r[k] === null ? null : 100 * Math.abs(r[k]))), kind: "both", color: LabPlot.COLORS[j] }));
    const summary = (this.stop || {}).labctl_summary || {};
    const vlines = [];
    if (summary.recommended_di_a) vlines.push({ x: summary.recommended_di_a * UA, label: `recommended dI ${num(summary.recommended_di_a, 3)} A`, color: "#000", dash: "" });
    if (summary.theory_di_a) vlines.push({ x: summary.theory_di_a * UA, label: `forward-difference optimum ${num(summary.theory_di_a, 3)} A`, color: "#888" });
    return this.section(`FD scan, pair ${(this.start.config || {}).pair}`, "fd_scan",
      charts(LabPlot.chart({ title: `${this.id}: derivative error against dI`, xlabel: "dI (uA)", ylabel: "median |dV/dI error| (%)",
                      xlog: true, ylog: true, series: ser, vlines, role: "fd-scan-plot" })),
      table(["dI (A)"].concat(modes.map((m) => m[1])).concat(["forward bias"]),
            rows.map((r) => [num(r.di_a, 3)].concat(modes.map(([k]) => pct(r[k]))).concat([pct(r.forward_bias)]))));
  }

  tuning() {
    const rows = this.events.tuning;
    const cfg = this.start.config || {};
    const x = rows.map((r) => r.iteration);
    const t = cfg.target_i_off_a, tol = cfg.tolerance_a;
    return this.section(`tuning, pair ${cfg.pair}`, "tuning",
      charts(LabPlot.chart({ title: "I_off per iteration", xlabel: "iteration", xinteger: true, ylabel: "I_off (uA)",
        series: [{ label: "device A", x, y: rows.map((r) => r.i_off_a * UA), kind: "both", color: LabPlot.COLORS[0] },
                 { label: "device B", x, y: rows.map((r) => r.i_off_b * UA), kind: "both", color: LabPlot.COLORS[1] }],
        hlines: t !== undefined ? [{ y: t * UA, label: `target ${num(t * UA, 3)} uA`, color: "#2ca02c" }] : [],
        band: t !== undefined && tol ? { y0: (t - tol) * UA, y1: (t + tol) * UA, label: `tolerance +- ${num(tol * UA, 3)} uA` } : null,
        role: "tuning-plot", height: 230 })),
      table(["iteration", "I_off A (uA)", "I_off B (uA)", "pulse A (V)", "pulse B (V)", "pulses"],
            rows.map((r) => [`${r.iteration}`, num(r.i_off_a * UA, 4), num(r.i_off_b * UA, 4), num(r.pulse_a_v, 3), num(r.pulse_b_v, 3), `${r.pulses_total}`])));
  }

  instrumentCheck() {
    const rows = this.events.instrument_check;
    return this.section("instruments checked", "instrument_check",
      wide(table(["instrument", "driver", "resource", "identity", "status"],
            rows.map((r) => ({ cls: r.ok ? "" : "bad", cells: [r.instrument, r.driver, r.resource, r.identity, r.status] })))));
  }

  differential() {
    const rows = this.events.differential_check;
    return this.section("differential path check", "differential_check",
      h("details", { open: rows.some((r) => r.verdict !== "ok") ? "" : null },
        h("summary", {}, `${rows.length} pairs, ${rows.filter((r) => r.verdict === "ok").length} ok`),
        table(["pair", "ADC / (V_B - V_A)", "rms (V)", "span (V)", "verdict"],
              rows.map((r) => ({ cls: r.verdict === "ok" ? "" : "bad", cells: [`${r.pair}`, num(r.slope, 4), num(r.rms_v, 3), num(r.span_v, 3), r.verdict] })))));
  }

  genericStream(name) {
    const rows = this.events[name];
    const keys = Object.keys((this.descriptors[name] || {}).data_keys || {});
    return this.section(`stream ${name}`, name,
      h("details", {}, h("summary", {}, `${rows.length} events`),
        wide(table(keys, rows.slice(-50).map((r) => keys.map((k) => (typeof r[k] === "object" ? "(array)" : num(r[k]))))))));
  }

  // Safety events: compliance hits, refusals, what the shutdown confirmed.
  safety() {
    const items = [];
    const add = (ok, text, kind) => items.push(h("li", { class: ok ? "ok" : "bad", "data-kind": kind }, text));
    for (const [name, rows] of Object.entries(this.events)) {
      const keys = (this.descriptors[name] || {}).data_keys || {};
      if ("compliance" in keys) { const n = rows.filter((r) => r.compliance).length; add(n === 0, `${name}: ${n} of ${rows.length} points in compliance`, "compliance"); }
      if ("overrange" in keys) { const n = rows.filter((r) => r.overrange).length; add(n === 0, `${name}: ${n} ADC overrange`, "overrange"); }
      if (name === "differential_check") { const bad = rows.filter((r) => r.verdict !== "ok"); add(!bad.length, bad.length ? `differential path refused: ${bad.map((r) => `pair ${r.pair} ${r.verdict}`).join("; ")}` : `differential path ok on ${rows.length} pairs`, "differential"); }
    }
    this.stops.forEach((stop, k) => {
      const seg = this.stops.length > 1 ? `run segment ${k + 1}: ` : "";
      if (stop.exit_status !== "success") add(false, `${seg}${STATUS[stop.exit_status] || stop.exit_status}: ${stop.reason || "(no reason recorded)"}`, "refusal");
      const sd = stop.labctl_shutdown;
      if (sd) {
        add(sd.confirmed, `${seg}shutdown: ` + (sd.confirmed ? "every output ramped to 0 A, off and confirmed" : "NOT confirmed: " + (sd.problems || []).join("; ")), "shutdown");
        for (const note of sd.notes || []) add(true, `${seg}shutdown note: ${note}`, "note");
        if ((sd.signals_held || []).length) add(true, `${seg}signals held during the shutdown: ${sd.signals_held.join(", ")}`, "signals");
      }
      const suspects = (stop.labctl_summary || {}).suspect_devices;
      if (suspects && suspects.length) add(false, `suspect devices: ${JSON.stringify(suspects)}`, "suspect");
    });
    if (!this.stop) add(this.status() === "running", this.status() === "running" ? "running: the shutdown has not happened yet" : "interrupted: no stop document (killed?); nothing confirmed the outputs off", "shutdown");
    return this.section("safety", "safety", h("ul", { class: "safety" }, items));
  }

  instruments() {
    const inst = this.start.instruments || {};
    const names = Object.keys(inst);
    return this.section("instruments (at the start)", "instruments",
      names.length ? wide(table(["name", "driver", "identity", "settings"], names.map((n) => [n, inst[n].driver || "", inst[n].identity || "",
        h("span", { class: "settings" }, Object.entries(inst[n].settings || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "))])))
        : h("p", { class: "note" }, "no instruments (offline backend)"));
  }

  configuration() {
    const s = this.start;
    const pairs = (p, v, rows) => {
      if (p !== "station.pairs") return false;
      rows.push([p, `${Object.keys(v).length} pairs (see the station file)`]);
      return true;
    };
    const rows = flatRows(s.config, "", pairs);
    return this.section("configuration", "configuration",
      h("p", { class: "argv" }, h("code", {}, "labctl " + (s.argv || []).join(" "))),
      h("p", { class: "note" }, `labctl ${s.labctl_version}, format ${s.labctl_format}, seeds ${JSON.stringify(s.seeds || {})}`),
      h("details", { open: "" }, h("summary", {}, "settings"), table(["key", "value"], rows, "data config")),
      s.station_file ? h("details", {}, h("summary", {}, "station file"), h("pre", {}, s.station_file)) : null);
  }
}

function main() {
  const params = new URLSearchParams(location.search);
  const ids = params.getAll("s");
  const grid = document.getElementById("sessions");
  grid.style.gridTemplateColumns = `repeat(${Math.max(ids.length, 1)}, minmax(540px, 1fr))`;
  document.title = "labctl view: " + ids.join(", ");
  if (!ids.length) grid.appendChild(h("p", {}, "no session named; ", h("a", { href: "/" }, "the index")));
  window.labctlViews = ids.map((id) => {
    const col = h("div", { class: "session", "data-session": id });
    grid.appendChild(col);
    const v = new SessionView(id, col);
    v.poll();
    return v;
  });
}

main();
