// scripts/massif-sites.mjs — bytes per connection by allocation site, from two massif
// snapshots of one server: before the first connection and with N connections held
// (scripts/bench-memory.sh takes them). Prints a markdown table: the sites that grew most,
// in useful heap bytes per connection, then the totals with massif's extra-heap (its
// estimate of malloc's headers and rounding).
//
// A site is the first frame that is not a generic helper: util/map.c's grow and map_put
// are looked through, so each hash index is charged to the code that owns it; a frame in
// a shared library other than Parley's stands for its whole subtree (libcrypto's lazily
// made tables are one line, not a hundred).
//
//   node scripts/massif-sites.mjs --before before.ms --after held.ms --conns 2000 [--top 10]
// A file may be a single detailed snapshot (valgrind's `detailed_snapshot` monitor command)
// or a whole massif.out, of which the peak snapshot is read.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    before: { type: 'string' },
    after: { type: 'string' },
    conns: { type: 'string' },
    top: { type: 'string', default: '10' },
  },
});
if (!opt.before || !opt.after || !opt.conns) {
  console.error('usage: massif-sites.mjs --before FILE --after FILE --conns N [--top K]');
  process.exit(2);
}
const conns = Number(opt.conns);
const HELPERS = new Set(['grow', 'map_put']);

// The snapshot's totals and its tree, as {bytes, frame, children}.
function readSnapshot(path) {
  const lines = readFileSync(path, 'utf8').split('\n');
  let start = lines.findIndex((l) => l === 'heap_tree=peak');
  if (start < 0) start = lines.findIndex((l) => l === 'heap_tree=detailed');
  if (start < 0) throw new Error(`${path}: no detailed or peak snapshot`);
  let head = start;
  while (head > 0 && !lines[head].startsWith('snapshot=')) head--;
  const field = (name) => {
    for (let i = head; i < start; i++)
      if (lines[i].startsWith(`${name}=`)) return Number(lines[i].slice(name.length + 1));
    throw new Error(`${path}: no ${name}`);
  };
  const root = { bytes: 0, frame: '', children: [] };
  const stack = [];
  for (let i = start + 1; i < lines.length; i++) {
    const m = /^( *)n\d+: (\d+) (.*)$/.exec(lines[i]);
    if (!m) break;
    const node = { bytes: Number(m[2]), frame: m[3], children: [] };
    const depth = m[1].length;
    stack.length = depth;
    if (depth === 0) Object.assign(root, node);
    else stack[depth - 1].children.push(node);
    stack[depth] = depth === 0 ? root : node;
  }
  return { heap: field('mem_heap_B'), extra: field('mem_heap_extra_B'), root };
}

// "0x1234: fn (file.c:12)" → {fn, where}; "??? (in /usr/lib/.../libcrypto.so.3)" → library.
function frameOf(frame) {
  const lib = /\(in [^)]*\/([^/)]+?)(?:\.so[.\d]*)?\)$/.exec(frame);
  const fn = /^0x[0-9A-Fa-f]+: (\S+)/.exec(frame);
  if (lib && !/parley/.test(lib[1])) return { fn: fn ? fn[1] : '???', site: `(${lib[1]})` };
  if (!fn) return { fn: '', site: frame.replace(/^in \d+ places?, /, '').slice(0, 60) };
  const where = /\(([^()]*:\d+)\)$/.exec(frame);
  return { fn: fn[1], site: where ? `${fn[1]} (${where[1]})` : fn[1] };
}

function sites(root) {
  const out = new Map();
  const add = (site, bytes) => out.set(site, (out.get(site) ?? 0) + bytes);
  const walk = (node) => {
    const f = frameOf(node.frame);
    if (HELPERS.has(f.fn) && node.children.length) node.children.forEach(walk);
    else add(f.site, node.bytes);
  };
  root.children.forEach(walk);
  return out;
}

const before = readSnapshot(opt.before);
const after = readSnapshot(opt.after);
const a = sites(after.root);
const b = sites(before.root);
const rows = [...new Set([...a.keys(), ...b.keys()])]
  .map((site) => ({ site, per: ((a.get(site) ?? 0) - (b.get(site) ?? 0)) / conns }))
  .sort((x, y) => y.per - x.per);
const top = Number(opt.top);
const heap = (after.heap - before.heap) / conns;
const extra = (after.extra - before.extra) / conns;
console.log(`| # | allocation site | useful heap per connection (B) |`);
console.log('| ---: | --- | ---: |');
rows.slice(0, top).forEach((r, i) => console.log(`| ${i + 1} | ${r.site} | ${r.per.toFixed(1)} |`));
const rest = rows.slice(top).reduce((s, r) => s + r.per, 0);
console.log(`| | the other ${rows.length - top} sites | ${rest.toFixed(1)} |`);
console.log(`| | **useful heap** (mem_heap_B) | **${heap.toFixed(1)}** |`);
console.log(`| | extra heap (massif's estimate of malloc headers and rounding) | ${extra.toFixed(1)} |`);
console.log(`| | **heap with overhead** | **${(heap + extra).toFixed(1)}** |`);
