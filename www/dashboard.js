// The live dashboard: polls the edge's counters (/v1/stats) and the collector (its Prometheus
// /metrics and /v1/summary, proxied by the demo origin under /collector/) every 2 s and draws
// SVG plots: decisions per second, tier mix, rule hits, live vs shadow bundle, top items,
// impressions → clicks per variant, collector/Kafka health, and the experiment controller's
// verdicts (/experiments/report: lift with interval over time, sample ratio, guardrails, stops).
// No libraries.
import { esc } from './html.js';

const POLL_MS = 2000;
const KEEP = 60;
const root = document.getElementById('dash');
const status = document.getElementById('dash-status');
const COLORS = ['#1d3557', '#e76f51', '#2a9d8f', '#e9c46a', '#8e6bbf', '#f4a261', '#457b9d', '#b5838d'];

const panels = {};
for (const [id, title] of [
  ['decisions', 'Decisions per second (edge)'],
  ['tiers', 'Tier mix (decisions/s by tier)'],
  ['rules', 'Rule hits (collector, since start)'],
  ['shadow', 'Live vs shadow bundle: share of decisions each rule fires in'],
  ['items', 'Top items: views and clicks'],
  ['variants', 'Impressions → clicks per variant'],
  ['collector', 'Collector → Kafka: records/s and write latency'],
  ['quality', 'Data quality alarms (the same conditions as collector/prometheus/alerts.yml)'],
  ['experiments', 'Experiments: lift vs control with its always-valid 95% interval, per look'],
]) {
  const el = document.createElement('section');
  el.className = 'panel';
  el.innerHTML = `<h3>${esc(title)}</h3><div data-plot="${id}"></div><div class="legend"></div>`;
  root.append(el);
  panels[id] = el;
}

function draw(id, svg, legend = '') {
  panels[id].querySelector('[data-plot]').innerHTML = svg;
  panels[id].querySelector('.legend').innerHTML = legend;
}

const W = 320;
const H = 150;
const PAD = 28;

function axes(max, unit = '') {
  return `<line x1="${PAD}" y1="${H - 18}" x2="${W}" y2="${H - 18}" stroke="#ccc"/>
<text x="2" y="12" font-size="10" fill="#666">${esc(fmt(max))}${esc(unit)}</text><text x="2" y="${H - 20}" font-size="10" fill="#666">0</text>`;
}

function fmt(n) {
  if (!Number.isFinite(n)) return '0';
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return n >= 10 ? n.toFixed(0) : n.toFixed(n >= 1 ? 1 : 2);
}

/** Lines over time: series = [{name, values}] (values newest last). */
function lines(series, unit) {
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const x = (i) => PAD + (i * (W - PAD - 4)) / (KEEP - 1);
  const y = (v) => H - 18 - (v / max) * (H - 30);
  const paths = series.map((s, k) => {
    const off = KEEP - s.values.length;
    const d = s.values.map((v, i) => `${i ? 'L' : 'M'}${x(i + off).toFixed(1)},${y(v).toFixed(1)}`).join('');
    return `<path data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="2"/>`;
  });
  const total = series.reduce((a, s) => a + s.values.reduce((b, v) => b + v, 0), 0);
  return `<svg viewBox="0 0 ${W} ${H}" data-total="${total.toFixed(3)}" role="img">${axes(max, unit)}${paths.join('')}</svg>`;
}

/** Stacked areas over time: series = [{name, values}] of equal length. */
function stacked(series) {
  const n = Math.max(0, ...series.map((s) => s.values.length));
  const sums = Array.from({ length: n }, (_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
  const max = Math.max(1e-9, ...sums);
  const x = (i) => PAD + ((i + KEEP - n) * (W - PAD - 4)) / (KEEP - 1);
  const y = (v) => H - 18 - (v / max) * (H - 30);
  const base = new Array(n).fill(0);
  const areas = series.map((s, k) => {
    const top = base.map((b, i) => b + (s.values[i] || 0));
    const up = top.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
    const down = base.map((v, i) => `L${x(i).toFixed(1)},${y(v).toFixed(1)}`).reverse().join('');
    top.forEach((v, i) => { base[i] = v; });
    return n ? `<path data-series="${esc(s.name)}" d="${up}${down}Z" fill="${COLORS[k % COLORS.length]}" opacity=".8"/>` : '';
  });
  const total = sums.reduce((a, b) => a + b, 0);
  return `<svg viewBox="0 0 ${W} ${H}" data-total="${total.toFixed(3)}" role="img">${axes(max, '/s')}${areas.join('')}</svg>`;
}

/** Horizontal bars: rows = [{label, values:[...]}], one colour per value index. */
function bars(rows, names) {
  if (!rows.length) return `<svg viewBox="0 0 ${W} 40" data-total="0"><text x="4" y="24" font-size="12" fill="#888">no data yet</text></svg>`;
  const max = Math.max(1, ...rows.flatMap((r) => r.values));
  const rowH = 12 * names.length + 8;
  const h = rows.length * rowH + 4;
  const out = rows.map((r, i) => {
    const y0 = i * rowH + 2;
    const bs = r.values.map((v, k) => `<rect data-value="${v}" x="110" y="${y0 + k * 12}" width="${((v / max) * (W - 150)).toFixed(1)}" height="10" fill="${COLORS[k % COLORS.length]}"/>
<text x="${114 + (v / max) * (W - 150)}" y="${y0 + k * 12 + 9}" font-size="9" fill="#444">${esc(fmt(v))}</text>`).join('');
    return `<text x="2" y="${y0 + 10}" font-size="10" fill="#333">${esc(String(r.label).slice(0, 18))}</text>${bs}`;
  });
  const total = rows.reduce((a, r) => a + r.values.reduce((b, v) => b + v, 0), 0);
  return `<svg viewBox="0 0 ${W} ${h}" data-total="${total}" role="img">${out.join('')}</svg>`;
}

const legend = (names) => names.map((n, k) => `<span style="color:${COLORS[k % COLORS.length]}">■</span> ${esc(n)}`).join(' &nbsp; ');

/** Prometheus text → {name{labels}: value}. */
function prom(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([^\s{]+)(\{[^}]*\})?\s+(\S+)/);
    if (m) out[m[1] + (m[2] || '')] = Number(m[3]);
  }
  return out;
}
const sum = (o, prefix) => Object.entries(o).filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

/** A quantile from cumulative histogram buckets (`name_bucket{le="..."}`). */
function quantile(o, name, q) {
  const b = Object.entries(o).filter(([k]) => k.startsWith(`${name}_bucket`))
    .map(([k, v]) => [k.includes('+Inf') ? Infinity : Number(k.match(/le="([^"]+)"/)[1]), v]).sort((a, c) => a[0] - c[0]);
  const total = b.length ? b[b.length - 1][1] : 0;
  if (!total) return 0;
  const hit = b.find(([, v]) => v >= q * total);
  return hit && Number.isFinite(hit[0]) ? hit[0] : (b[b.length - 2] || [0])[0];
}

const hist = { decisions: [], tiers: {}, records: [], latency: [], events: [] };
let prev = null;
const push = (arr, v) => { arr.push(v); if (arr.length > KEEP) arr.shift(); };

async function get(url, kind = 'json') {
  try {
    const r = await fetch(url, { cache: 'no-store' });
    if (!r.ok) return null;
    return kind === 'json' ? await r.json() : await r.text();
  } catch { return null; }
}

async function tick() {
  const [stats, summary, metricsText, ready, experiments] = await Promise.all([get('/v1/stats'), get('/collector/summary'),
    get('/collector/metrics', 'text'), get('/collector/readyz'), get('/experiments/report')]);
  const now = performance.now();
  const edge = stats?.counters || {};
  const metrics = metricsText ? prom(metricsText) : {};
  const tierNames = ['full', 'cached', 'static', 'browser'];
  const cur = {
    t: now,
    decisions: tierNames.reduce((a, t) => a + (edge[`decisions_${t}`] || 0), 0),
    tiers: Object.fromEntries(tierNames.map((t) => [t, edge[`decisions_${t}`] || 0])),
    records: sum(metrics, 'edgerec_collector_records_total'),
    // Decisions pages made themselves arrive later, through the collector.
    browserReported: summary?.tiers?.browser || 0,
    events: sum(metrics, 'edgerec_edge_events_total'),
  };
  if (prev) {
    const dt = Math.max(0.001, (cur.t - prev.t) / 1000);
    push(hist.decisions, Math.max(0, cur.decisions - prev.decisions) / dt);
    for (const t of tierNames) push(hist.tiers[t] ||= [], Math.max(0, cur.tiers[t] - prev.tiers[t]) / dt);
    push(hist.tiers['browser (reported)'] ||= [], Math.max(0, cur.browserReported - prev.browserReported) / dt);
    push(hist.records, Math.max(0, cur.records - prev.records) / dt);
    push(hist.latency, quantile(metrics, 'edgerec_collector_sink_latency_seconds', 0.99) * 1000);
    push(hist.events, Math.max(0, cur.events - prev.events) / dt);
  }
  prev = cur;

  draw('decisions', lines([{ name: 'decisions/s', values: hist.decisions }], '/s'), stats ? `edge up · ${fmt(cur.decisions)} decisions since isolate start` : 'edge unreachable');
  const live = [...tierNames, 'browser (reported)'].filter((t) => (hist.tiers[t] || []).some((v) => v > 0) || t === 'full');
  const collectorTiers = summary?.tiers || {};
  draw('tiers', stacked(live.map((t) => ({ name: t, values: hist.tiers[t] || [] }))),
    `${legend(live)}<br>collector totals: ${Object.entries(collectorTiers).map(([k, v]) => `${esc(k)} ${fmt(v)}`).join(', ') || '–'}`);
  draw('rules', bars((summary?.rule_hits || []).map((r) => ({ label: r.id, values: [r.hits] })), ['hits']), legend(['hits']));
  drawShadow(summary);
  drawExperiments(experiments);
  drawQuality(metrics, experiments, Boolean(metricsText));
  draw('items', bars((summary?.top_items || []).slice(0, 8).map((i) => ({ label: i.id, values: [i.views, i.clicks] })), ['views', 'clicks']), legend(['views', 'clicks']));
  const variants = Object.entries(summary?.variants || {});
  draw('variants', bars(variants.map(([k, v]) => ({ label: k.split('/').pop(), values: [v.impressions || 0, v.clicks || 0] })), ['impressions', 'clicks']),
    `${legend(['impressions', 'clicks'])}<br>${variants.map(([k, v]) => `${esc(k)}: CTR ${v.impressions ? ((100 * (v.clicks || 0)) / v.impressions).toFixed(1) : '–'}% · exposures ${fmt(v.exposures || 0)} · conversions ${fmt(v.conversions || 0)}`).join('<br>')}`);
  const rejects = sum(metrics, 'edgerec_collector_rejects_total');
  draw('collector', lines([{ name: 'records/s', values: hist.records }, { name: 'p99 write ms', values: hist.latency }]),
    `${legend(['records/s', 'p99 write latency (ms)'])}<br>sink ${ready ? `<b>${esc(ready.sink)}</b> ready` : '<b>not ready</b>'} · ${metricsText ? `collector up · batches ${fmt(sum(metrics, 'edgerec_collector_batches_total'))} · rejects ${fmt(rejects)} · in flight ${fmt(sum(metrics, 'edgerec_collector_queue_depth'))}` : 'collector unreachable'}`);
  status.textContent = `updated ${new Date().toLocaleTimeString()} · edge ${stats ? 'up' : 'down'} · collector ${metricsText ? 'up' : 'down'}`;
  document.body.dataset.ticks = String(Number(document.body.dataset.ticks || 0) + 1);
}

/** The shadow panel: per rule, its share of live decisions next to its share of shadow ones. */
function drawShadow(summary) {
  const shadows = Object.entries(summary?.shadow || {}).filter(([, c]) => c.evaluations || c.skipped);
  if (!shadows.length) {
    draw('shadow', bars([], []), 'no shadow bundle evaluated (release shadow HASH names one)');
    return;
  }
  const [hash, c] = shadows.sort((a, b) => b[1].evaluations - a[1].evaluations)[0];
  const decisions = summary?.decisions || 0;
  const live = Object.fromEntries((summary?.rule_hits || []).map((r) => [r.id, r.hits]));
  const shadow = Object.fromEntries((c.rule_hits || []).map((r) => [r.id, r.hits]));
  const ids = [...new Set([...Object.keys(shadow), ...Object.keys(live)])].slice(0, 12);
  const pct = (n, d) => (d ? (100 * n) / d : 0);
  const rows = ids.map((id) => ({ label: id, values: [pct(live[id] || 0, decisions), pct(shadow[id] || 0, c.evaluations)] }));
  document.body.dataset.shadow = hash;
  draw('shadow', bars(rows, ['live %', 'shadow %']),
    `${legend(['live % of decisions', 'shadow % of evaluations'])}<br>shadow <code>${esc(hash)}</code>: ${fmt(c.evaluations)} evaluations · top-k changed ${(100 * c.changed_share).toFixed(1)}% · mean overlap ${c.overlap_mean.toFixed(3)} · skipped ${fmt(c.skipped)} · µs live ${fmt(c.live_us_mean)} / shadow ${fmt(c.shadow_us_mean)}`);
}

/** The alarms, evaluated on what the dashboard already polls (cumulative since the collector
 * started; Prometheus evaluates the same conditions over time windows). */
function drawQuality(m, report, up) {
  const mean = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  const recent = mean(hist.events.slice(-5));
  const before = mean(hist.events.slice(0, -5));
  const batches = sum(m, 'edgerec_collector_batches_total');
  const rejects = sum(m, 'edgerec_collector_rejects_total');
  const dead = Object.entries(m).filter(([k]) => k.startsWith('edgerec_collector_records_total') && /deadletter"/.test(k)).reduce((a, [, v]) => a + v, 0);
  const decisions = sum(m, 'edgerec_edge_decisions_total');
  const full = m['edgerec_edge_decisions_total{tier="full"}'] || 0;
  const published = report?.model_published_ms;
  const ageS = published ? (Date.now() - published) / 1000 : null;
  const srm = Object.entries(report?.experiments || {}).filter(([, e]) => e.report?.srm?.mismatch).map(([id]) => id);
  const rows = [
    ['event-volume', 'event volume', before > 0 && hist.events.length > 10 && recent < 0.3 * before, `${fmt(recent)}/s now vs ${fmt(before)}/s before`],
    ['rejected', 'refused posts', rejects / Math.max(1, batches + rejects) > 0.05, `${fmt(rejects)} refused, ${fmt(batches)} written`],
    ['dead-letters', 'dead letters', dead / Math.max(1, batches) > 0.01, `${fmt(dead)} of ${fmt(batches)} batches`],
    ['fallback', 'fallback-tier share', decisions > 0 && (decisions - full) / decisions > 0.05, `${decisions ? ((100 * (decisions - full)) / decisions).toFixed(1) : 0}% of ${fmt(decisions)} decisions`],
    ['model-age', 'model age', ageS != null && ageS > 3600 && recent > 0, ageS == null ? 'no publish recorded' : `published ${fmt(ageS)} s ago`],
    ['srm', 'sample ratio', srm.length > 0, srm.length ? `mismatch in ${srm.join(', ')}` : 'every running split as configured'],
  ];
  const el = panels.quality.querySelector('[data-plot]');
  el.innerHTML = `<svg data-total="${rows.length}" width="0" height="0"></svg><ul class="alarms">${rows.map(([id, name, firing, detail]) => `<li data-alarm="${id}" data-state="${firing ? 'firing' : 'ok'}">${firing ? '<b>ALARM</b>' : 'ok'} · ${esc(name)}: ${esc(detail)}</li>`).join('')}</ul>`;
  panels.quality.querySelector('.legend').innerHTML = up ? '' : 'collector unreachable: alarms cannot be evaluated';
}

/** A lift over looks: the interval as a band, the estimate as a line, 0 as a dashed rule. */
function band(looks, metric) {
  const pts = looks.map((l) => l.lift[metric]).map((v, i) => (v ? { i, v } : null)).filter(Boolean);
  if (!pts.length) return '<svg data-total="0"></svg>';
  const lo = Math.min(0, ...pts.map((p) => p.v[1]).filter(Number.isFinite));
  const hi = Math.max(0, ...pts.map((p) => p.v[2]).filter(Number.isFinite));
  const span = Math.max(1e-9, hi - lo);
  const n = Math.max(2, looks.length);
  const x = (i) => PAD + (i * (W - PAD - 4)) / (n - 1);
  const y = (v) => H - 18 - ((Math.min(hi, Math.max(lo, v)) - lo) / span) * (H - 30);
  const top = pts.map((p) => `${x(p.i).toFixed(1)},${y(p.v[2]).toFixed(1)}`);
  const bottom = pts.slice().reverse().map((p) => `${x(p.i).toFixed(1)},${y(p.v[1]).toFixed(1)}`);
  const line = pts.map((p, k) => `${k ? 'L' : 'M'}${x(p.i).toFixed(1)},${y(p.v[0]).toFixed(1)}`).join('');
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" data-total="${pts.length}" data-metric="${esc(metric)}">
<polygon points="${[...top, ...bottom].join(' ')}" fill="${COLORS[2]}" opacity=".25"/>
<line x1="${PAD}" y1="${y(0).toFixed(1)}" x2="${W}" y2="${y(0).toFixed(1)}" stroke="#999" stroke-dasharray="4 3"/>
${pts.map((p) => `<line x1="${x(p.i).toFixed(1)}" x2="${x(p.i).toFixed(1)}" y1="${y(p.v[1]).toFixed(1)}" y2="${y(p.v[2]).toFixed(1)}" stroke="${COLORS[2]}"/>`).join('')}
<path d="${line}" fill="none" stroke="${COLORS[0]}" stroke-width="2"/>${pts.length === 1 ? `<circle cx="${x(pts[0].i).toFixed(1)}" cy="${y(pts[0].v[0]).toFixed(1)}" r="3" fill="${COLORS[0]}"/>` : ''}
<text x="2" y="12" font-size="10" fill="#666">${esc(pct(hi))}</text><text x="2" y="${H - 20}" font-size="10" fill="#666">${esc(pct(lo))}</text></svg>`;
}

const pct = (v) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%` : '–');

/** One block per experiment: status, sample ratio, guardrails, winners, stops, and per variant the
 * primary metric's lift over the looks plus every metric's latest lift. */
function drawExperiments(doc) {
  const el = panels.experiments.querySelector('[data-plot]');
  const list = Object.entries(doc?.experiments || {});
  if (!list.length) {
    el.innerHTML = '<svg data-total="0"></svg>';
    panels.experiments.querySelector('.legend').innerHTML = doc ? 'no experiment reports yet (the trainer writes them once experiment sums arrive)' : 'report unavailable';
    return;
  }
  el.innerHTML = list.map(([id, e]) => {
    const r = e.report || {};
    const stopped = e.stops?.length > 0;
    const srm = r.srm ? (r.srm.mismatch ? 'mismatch' : 'ok') : 'off';
    const primary = r.primary || 'ctr';
    const variants = (r.variants || []).map((v) => {
      const looks = (e.looks || []).filter((l) => l.variant === v.name);
      const rows = (v.metrics || []).map((m) => `<tr><td>${esc(m.metric)}</td><td>${pct(m.lift)}</td><td>[${pct(m.lift_ci?.[0])}, ${pct(m.lift_ci?.[1])}]</td><td>${m.better ? 'better' : m.significant ? 'worse' : '–'}</td></tr>`).join('');
      const guards = (v.guardrails || []).map((g) => `<li data-guardrail="${esc(g.guardrail.metric)}" data-breached="${g.breached}">${g.breached ? '<b>BREACHED</b>' : 'ok'} · ${esc(g.detail)}</li>`).join('');
      return `<div class="variant" data-variant="${esc(v.name)}"><b>${esc(v.name)}</b> (${fmt(v.sessions)} sessions vs ${fmt(r.control_sessions || 0)} in ${esc(r.control || 'control')})${v.wins ? ' · <b>wins on the primary metric</b>' : ''}
${band(looks, primary)}<div class="muted">${esc(primary)} lift per look (band: 95% always-valid)</div>
<table class="lifts"><tr><th>metric</th><th>lift</th><th>95% always-valid</th><th></th></tr>${rows}</table><ul>${guards}</ul></div>`;
    }).join('');
    const stops = (e.stops || []).map((s) => `<li class="stop">STOPPED ${esc(new Date(s.at_ms).toLocaleTimeString())}: ${esc(s.reason)} (bundle <code>${esc(s.from_bundle)}</code> → <code>${esc(s.to_bundle)}</code>)</li>`).join('');
    return `<div class="experiment" data-experiment="${esc(id)}" data-status="${stopped ? 'stopped' : 'running'}" data-srm="${srm}">
<h4>${esc(id)} · ${stopped ? '<b>stopped</b>' : 'running'} · sample ratio ${srm === 'mismatch' ? '<b>MISMATCH</b>' : srm === 'off' ? 'not checked (split changed)' : srm}${r.srm ? ` (p = ${Number(r.srm.p_value).toExponential(2)})` : ''}</h4>
<ul>${stops}${(r.warnings || []).map((w) => `<li>${esc(w)}</li>`).join('')}</ul>${variants}</div>`;
  }).join('');
  panels.experiments.querySelector('.legend').innerHTML = `report of ${esc(new Date(doc.updated_ms || 0).toLocaleTimeString())} · live bundle <code>${esc(doc.bundle || '–')}</code>`;
  document.body.dataset.experiments = String(list.length);
}

tick();
setInterval(tick, POLL_MS);
