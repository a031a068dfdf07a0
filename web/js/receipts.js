// Read receipts. Others' messages that have been on screen in the active room (mostly
// visible, while the page is visible) are reported with markRead, each once; messagesRead
// from others puts "Seen by X" under the newest own message each of them has read up to.
import { el } from "./dom.js";
import { me, rooms, activeId, displayName } from "./state.js";
import { socket, request } from "./connection.js";

export function bindReceipts() {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      // Re-observe so what is on screen now is counted.
      for (const n of el.messages.children) {
        if (!n.classList.contains("own")) {
          readObserver.unobserve(n);
          readObserver.observe(n);
        }
      }
    }
  });
}

const pendingRead = new Set();
let readTimer = null;
export const readObserver = new IntersectionObserver(
  (entries) => {
    for (const e of entries) {
      // Mostly visible, or filling half the list (a message taller than the list).
      const big = e.rootBounds && e.intersectionRect.height >= e.rootBounds.height / 2;
      if (!e.isIntersecting || (e.intersectionRatio < 0.5 && !big)) continue;
      const id = e.target.dataset.id;
      if (id) pendingRead.add(id);
    }
    scheduleReadCheck();
  },
  { root: el.scroller, threshold: [0, 0.25, 0.5] },
);

export function scheduleReadCheck() {
  if (readTimer) return;
  readTimer = setTimeout(flushRead, 300);
}

function flushRead() {
  readTimer = null;
  const r = activeId ? rooms.get(activeId) : null;
  if (!r || !r.joined || document.visibilityState !== "visible" || !socket || !socket.connected) return;
  const ids = [];
  for (const id of pendingRead) {
    const m = r.byId.get(id);
    if (m && m.userId !== me.userId && !r.marked.has(id)) ids.push(id);
  }
  pendingRead.clear();
  if (!ids.length) return;
  for (const id of ids) r.marked.add(id);
  request("markRead", { roomId: r.id, messageIds: ids }).then((res) => {
    if (!res.ok) for (const id of ids) r.marked.delete(id); // reported again when seen again
  });
}

export function onMessagesRead(p) {
  if (!p || typeof p.userId !== "string" || !Array.isArray(p.messageIds)) return;
  if (p.userId === me.userId) return;
  // The event names no room (unless the server adds roomId): find the messages among
  // the rooms we hold.
  const candidates = typeof p.roomId === "string" && rooms.has(p.roomId) ? [rooms.get(p.roomId)] : [...rooms.values()];
  for (const r of candidates) {
    let changed = false;
    for (const id of p.messageIds) {
      const m = typeof id === "string" ? r.byId.get(id) : null;
      if (!m) continue;
      if ((r.readUpTo.get(p.userId) || 0) < m.seq) {
        r.readUpTo.set(p.userId, m.seq);
        changed = true;
      }
    }
    if (changed && r.id === activeId) renderSeenAll(r);
  }
}

// "Seen by X" goes under the newest own message each reader has read up to.
export function renderSeenAll(r) {
  if (r.id !== activeId) return;
  const own = [...r.msgs.values()].filter((m) => m.userId === me.userId).map((m) => m.seq).sort((a, b) => a - b);
  const at = new Map(); // seq -> [user ids]
  for (const [uid, upTo] of r.readUpTo) {
    let target = 0;
    for (const seq of own) if (seq <= upTo) target = seq;
    if (!target) continue;
    if (!at.has(target)) at.set(target, []);
    at.get(target).push(uid);
  }
  for (const node of el.messages.querySelectorAll("li.own .seen")) {
    const seq = Number(node.parentElement.dataset.seq);
    const who = at.get(seq);
    const t = who ? `Seen by ${who.map(displayName).join(", ")}` : "";
    if (node.textContent !== t) node.textContent = t;
  }
}
