// What the benchmark report scripts (scripts/bench-*-report.mjs) say alike about a run:
// the machine's CPU model, durations, and when the run started. Node's standard library.
import { readFileSync } from "node:fs";

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
