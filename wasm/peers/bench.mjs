// Side by side in one Node process: our wasm build's full decision against three npm rule
// engines evaluating the same 100 rules. The JS engines get the facts pre-computed (by our
// engine, from the same session), which favours them: we also decode the session, compute
// the features, rank and encode the new state. Before timing, every engine must fire exactly
// the rules ours fires on every fact set (mismatches printed; any mismatch exits 1).
//
// Output: one JSON line per engine (median and p99 µs per decision) and the ratios.
// FACT_SETS (≥ 200) and ROUNDS bound the run.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
// The peers live in this folder's own node_modules (`make bench-peers` installs them).
const require = createRequire(path.join(here, 'package.json'));
const wasm = require(path.join(root, 'build/wasm-node/edgerec_wasm.js'));
const { Engine: RulesEngine } = require('json-rules-engine');
const jsonLogic = require('json-logic-js');
const zen = require('@gorules/zen-engine');

const FACT_SETS = Math.max(200, Number(process.env.FACT_SETS || 256));
const ROUNDS = Number(process.env.ROUNDS || 20);
const T0 = 1_764_201_600_000;

// SplitMix-style deterministic generator (reproducible runs).
let seed = 0x2545f491n;
function rnd() {
  seed = (seed + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
  let z = seed;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  return Number((z ^ (z >> 31n)) & 0xffffffffn) / 2 ** 32;
}
const below = (n) => Math.floor(rnd() * n);
const pickOne = (xs) => xs[below(xs.length)];

// --- the 200-item catalog -------------------------------------------------------------------
const ITEMS = 200;
const CATS = 10;
const id = (i) => `sku-${String(i).padStart(3, '0')}`;
const cat = (c) => `cat-${c}`;
const catalog = {
  version: 'peers-200',
  items: Array.from({ length: ITEMS }, (_, i) => ({
    id: id(i),
    category: cat(i % CATS),
    price: 5 + (i * 37 % 200),
    available: i % 41 !== 0,
    popularity: 1000 / (1 + i),
    related: Array.from({ length: 10 }, (_, r) => [id((i + 1 + r * 7) % ITEMS), 1 - r * 0.05]),
  })),
};

// --- the 100 rules, in a neutral form each engine's syntax is generated from ---------------
// A condition is {f: fact, op, v} | {all: [...]} | {any: [...]} | {not: c}.
const NUM = [
  ['session.events', 'session_events', [3, 8, 15, 25]],
  ['session.views', 'session_views', [2, 5, 10, 18]],
  ['session.clicks', 'session_clicks', [1, 2, 4, 6]],
  ['session.add_to_carts', 'session_add_to_carts', [1, 2, 3]],
  ['session.distinct_items', 'session_distinct_items', [2, 5, 10, 20]],
  ['session.distinct_categories', 'session_distinct_categories', [1, 2, 4, 6]],
  ['session.max_item_views', 'session_max_item_views', [1, 2, 3, 5]],
  ['cart.lines', 'cart_lines', [1, 2, 3]],
  ['cart.quantity', 'cart_quantity', [1, 2, 4]],
  ['cart.value', 'cart_value', [20, 75.5, 150, 300]],
];
const LABEL = [
  ['context.country', 'context_country', ['DE', 'AT', 'CH', 'US', 'FR', 'GB']],
  ['context.device', 'context_device', ['desktop', 'mobile', 'tablet']],
  ['session.top_category', 'session_top_category', Array.from({ length: CATS }, (_, c) => cat(c))],
];
const NUM_OPS = ['>', '>=', '<', '<=', '==', '!='];
function num() {
  const [name, fact, values] = pickOne(NUM);
  return { name, f: fact, op: pickOne(NUM_OPS), v: pickOne(values) };
}
function label() {
  const [name, fact, values] = pickOne(LABEL);
  if (rnd() < 0.5) return { name, f: fact, op: '==', v: pickOne(values) };
  const set = [...new Set([pickOne(values), pickOne(values), pickOne(values)])];
  return { name, f: fact, op: 'in', v: set };
}
const conditions = Array.from({ length: 100 }, (_, i) => {
  switch (i % 5) {
    case 0: return num();
    case 1: return { all: [num(), label()] };
    case 2: return { any: [num(), num()] };
    case 3: return { all: [label(), { not: label() }, num()] };
    default: return { any: [{ all: [num(), num()] }, label()] };
  }
});
const ruleId = (i) => `r${String(i).padStart(3, '0')}`;

// Ours: the bundle language. Actions are cheap and always valid (so firing does not change
// what the candidates cost), and the rules' cost is what a rule costs in a decision.
function ours(c) {
  if (c.all) return { all: c.all.map(ours) };
  if (c.any) return { any: c.any.map(ours) };
  if (c.not) return { not: ours(c.not) };
  return { feature: { name: c.name, op: c.op, value: c.v } };
}
// `inert`: the same conditions with an action that changes nothing (excluding purchased
// items is the default policy), so a decision with them minus one with no rules is what evaluating
// the rules costs, not what their effects cost in ranking.
const bundle = (rules, inert = false) => JSON.stringify({
  version: inert ? 'peers-100-inert' : 'peers-100',
  rules: rules.map((c, i) => ({
    id: ruleId(i),
    priority: i % 7,
    when: ours(c),
    then: [inert ? { exclude_purchased: true }
      : i % 2 ? { boost_category: { category: cat(i % CATS), weight: 1.1 } }
        : { bury_category: { category: cat(i % CATS), factor: 0.9 } }],
  })),
});

// json-rules-engine: all/any/not with named operators.
const JRE_OPS = { '>': 'greaterThan', '>=': 'greaterThanInclusive', '<': 'lessThan',
  '<=': 'lessThanInclusive', '==': 'equal', '!=': 'notEqual', in: 'in' };
function jre(c) {
  if (c.all) return { all: c.all.map(jre) };
  if (c.any) return { any: c.any.map(jre) };
  if (c.not) return { not: jre(c.not) };
  return { fact: c.f, operator: JRE_OPS[c.op], value: c.v };
}
// json-logic: and/or/! over vars.
function logic(c) {
  if (c.all) return { and: c.all.map(logic) };
  if (c.any) return { or: c.any.map(logic) };
  if (c.not) return { '!': logic(c.not) };
  if (c.op === 'in') return { in: [{ var: c.f }, c.v] };
  return { [c.op === '==' ? '===' : c.op === '!=' ? '!==' : c.op]: [{ var: c.f }, c.v] };
}
// ZEN expression language.
function zexpr(c) {
  if (c.all) return '(' + c.all.map(zexpr).join(' and ') + ')';
  if (c.any) return '(' + c.any.map(zexpr).join(' or ') + ')';
  if (c.not) return 'not(' + zexpr(c.not) + ')';
  const v = JSON.stringify(c.v);
  if (c.op === 'in') return `${c.f} in ${v}`;
  return `${c.f} ${c.op} ${v}`;
}

// --- fact sets: sessions played through our engine ----------------------------------------
const catalogBytes = new TextEncoder().encode(JSON.stringify(catalog));
const engine = new wasm.Engine(bundle(conditions), catalogBytes);
const inert = new wasm.Engine(bundle(conditions, true), catalogBytes);
const empty = new wasm.Engine(JSON.stringify({ version: 'peers-0', rules: [] }), catalogBytes);
const KINDS = ['view', 'view', 'view', 'click', 'add_to_cart'];
const sets = [];
for (let s = 0; s < FACT_SETS; s++) {
  const n = 1 + below(40);
  const events = Array.from({ length: n }, (_, k) => ({
    type: pickOne(KINDS), item: id(below(ITEMS)), ts: T0 + k * 20_000, seq: k + 1,
  }));
  const now = T0 + n * 20_000 + 1000;
  const context = JSON.stringify({ country: pickOne(LABEL[0][2]), device: pickOne(LABEL[1][2]) });
  const first = engine.decide(undefined, JSON.stringify({ events }), context, now - 1000, 10, 'full');
  const state = first.state;
  const d = JSON.parse(engine.decide(state, '', context, now, 10, 'full').json);
  const f = d.features;
  const facts = {
    session_events: f.events, session_views: f.views, session_clicks: f.clicks,
    session_add_to_carts: f.add_to_carts, session_distinct_items: f.distinct_items,
    session_distinct_categories: f.distinct_categories,
    session_max_item_views: f.most_viewed_item ? f.most_viewed_item[1] : 0,
    cart_lines: f.cart_lines, cart_quantity: f.cart_quantity, cart_value: f.cart_value,
    context_country: f.context.country, context_device: f.context.device,
    session_top_category: f.top_categories.length ? f.top_categories[0][0] : null,
  };
  sets.push({ state, context, now, facts, fired: d.rule_hits.slice().sort() });
}

// PEERS_DUMP=dir writes the workload (bundles, catalog, fact sets) for native profiling
// (scripts/peers-instructions.sh, examples/peers_replay.rs).
if (process.env.PEERS_DUMP) {
  const fs = await import('node:fs');
  const dir = process.env.PEERS_DUMP;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'bundle.json'), bundle(conditions));
  fs.writeFileSync(path.join(dir, 'bundle-inert.json'), bundle(conditions, true));
  fs.writeFileSync(path.join(dir, 'bundle-0.json'), JSON.stringify({ version: 'peers-0', rules: [] }));
  fs.writeFileSync(path.join(dir, 'catalog.json'), JSON.stringify(catalog));
  fs.writeFileSync(path.join(dir, 'sets.json'), JSON.stringify(sets.map((s) => ({
    state: Buffer.from(s.state).toString('base64'), context: s.context, now: s.now }))));
}

// --- the peers, built once -----------------------------------------------------------------
const jreEngine = new RulesEngine([], { allowUndefinedFacts: true });
conditions.forEach((c, i) => jreEngine.addRule({ conditions: c.all || c.any || c.not ? jre(c)
  : { all: [jre(c)] }, event: { type: ruleId(i) }, priority: 1 }));
const logicRules = conditions.map(logic);
const zenEngine = new zen.ZenEngine();
const zenDecision = zenEngine.createDecision({
  contentType: 'application/vnd.gorules.decision',
  nodes: [
    { id: 'in', type: 'inputNode', name: 'facts', position: { x: 0, y: 0 } },
    { id: 'rules', type: 'expressionNode', name: 'rules', position: { x: 0, y: 0 },
      content: { expressions: conditions.map((c, i) => ({ id: ruleId(i), key: ruleId(i), value: zexpr(c) })) } },
    { id: 'out', type: 'outputNode', name: 'out', position: { x: 0, y: 0 } },
  ],
  edges: [
    { id: 'e1', sourceId: 'in', targetId: 'rules', type: 'edge' },
    { id: 'e2', sourceId: 'rules', targetId: 'out', type: 'edge' },
  ],
});

const peers = {
  'json-rules-engine 7.3.1': async (s) => (await jreEngine.run(s.facts)).events.map((e) => e.type),
  '@gorules/zen-engine 0.54.0': async (s) => {
    const r = (await zenDecision.evaluate(s.facts)).result;
    return Object.keys(r).filter((k) => r[k] === true);
  },
  'json-logic-js 2.0.5': async (s) => logicRules.flatMap((r, i) => (jsonLogic.apply(r, s.facts) ? [ruleId(i)] : [])),
};

// --- same rules fire everywhere ------------------------------------------------------------
let mismatches = 0;
for (const [name, run] of Object.entries(peers)) {
  let bad = 0;
  for (const s of sets) {
    const got = (await run(s)).sort();
    if (got.join() !== s.fired.join()) {
      if (bad < 3) console.error(`${name}: fired ${got.join()} where edgerec fired ${s.fired.join()}; facts ${JSON.stringify(s.facts)}`);
      bad++;
    }
  }
  mismatches += bad;
  console.log(JSON.stringify({ engine: name, fact_sets: sets.length, mismatches: bad }));
}
const firedTotal = sets.reduce((a, s) => a + s.fired.length, 0);
console.log(JSON.stringify({ fact_sets: sets.length, rules: conditions.length,
  mean_rules_fired: +(firedTotal / sets.length).toFixed(1), mismatches }));
if (mismatches > 0) process.exit(1);

// --- timing: one call at a time, every fact set, ROUNDS times -----------------------------
async function time(fn) {
  for (const s of sets) await fn(s); // warm-up
  const ns = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of sets) {
      const t = process.hrtime.bigint();
      await fn(s);
      ns.push(Number(process.hrtime.bigint() - t));
    }
  }
  ns.sort((a, b) => a - b);
  const q = (p) => ns[Math.floor((ns.length - 1) * p)] / 1000;
  return { median_us: +q(0.5).toFixed(2), p99_us: +q(0.99).toFixed(2) };
}
const decide = (e) => (s) => e.decide(s.state, '', s.context, s.now, 10, 'full');
// Ours synchronously (no await in the loop) so promise overhead is not charged to us.
function timeSync(fn) {
  for (const s of sets) fn(s);
  const ns = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of sets) {
      const t = process.hrtime.bigint();
      fn(s);
      ns.push(Number(process.hrtime.bigint() - t));
    }
  }
  ns.sort((a, b) => a - b);
  const q = (p) => ns[Math.floor((ns.length - 1) * p)] / 1000;
  return { median_us: +q(0.5).toFixed(2), p99_us: +q(0.99).toFixed(2) };
}
const withRules = timeSync(decide(engine));
const inertRules = timeSync(decide(inert));
const noRules = timeSync(decide(empty));
const rulesShare = inertRules.median_us - noRules.median_us;
console.log(JSON.stringify({ engine: 'edgerec wasm, full decision, 100 rules', ...withRules }));
console.log(JSON.stringify({ engine: 'edgerec wasm, full decision, 100 inert rules', ...inertRules }));
console.log(JSON.stringify({ engine: 'edgerec wasm, full decision, 0 rules', ...noRules,
  rules_share_us: +rulesShare.toFixed(2), ns_per_rule: Math.round(rulesShare * 1000 / conditions.length) }));
const logicSync = (s) => logicRules.forEach((r) => jsonLogic.apply(r, s.facts));
const results = {
  'json-rules-engine 7.3.1': await time((s) => jreEngine.run(s.facts)),
  '@gorules/zen-engine 0.54.0': await time((s) => zenDecision.evaluate(s.facts)),
  'json-logic-js 2.0.5': timeSync(logicSync),
};
for (const [name, r] of Object.entries(results)) {
  console.log(JSON.stringify({ engine: name, ...r,
    edgerec_faster: +(r.median_us / withRules.median_us).toFixed(1) }));
}
