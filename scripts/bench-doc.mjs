// What the benchmark report scripts (scripts/bench-*-report.mjs) say alike about a run:
// the machine's CPU model, durations, and when the run started; and how a generated
// section goes into its document. Node's standard library.
import { existsSync, readFileSync, writeFileSync } from "node:fs";

export function cpuModel() {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?";
  } catch {
    return "?";
  }
}

export const minsec = (s) => (s == null ? "?" : `${Math.floor(s / 60)} min ${s % 60} s`);

// meta.t0: the run's start (Unix seconds), as "YYYY-MM-DD HH:MM" UTC.
export const startedAt = (meta) => new Date((meta.t0 ?? Date.now() / 1000) * 1000).toISOString().slice(0, 16).replace("T", " ");

// Writes the generated lines L (starting with the `<!-- NAME:begin -->` marker) into
// docPath between that marker and `<!-- NAME:end -->` (appended when the document has no
// such section), keeping the hand-written reading that follows `<!-- NAME:reading -->`.
export function writeSection(docPath, name, L) {
  const BEGIN = `<!-- ${name}:begin -->`, READING = `<!-- ${name}:reading -->`, END = `<!-- ${name}:end -->`;
  let doc = existsSync(docPath) ? readFileSync(docPath, "utf8") : "";
  const i = doc.indexOf(BEGIN), j = doc.indexOf(END);
  let reading = "";
  if (i >= 0 && j > i) {
    const k = doc.indexOf(READING, i);
    if (k >= 0 && k < j) reading = doc.slice(k, j).trimEnd() + "\n";
  }
  const section = [...L, reading || `${READING}\n`, END].join("\n") + "\n";
  if (i >= 0 && j > i) doc = doc.slice(0, i) + section + doc.slice(j + END.length).replace(/^\n/, "");
  else doc = (doc ? doc.replace(/\n*$/, "\n\n") : "") + section;
  writeFileSync(docPath, doc);
}
