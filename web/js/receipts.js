// Read marks and read receipts. While the user views a room (selected, tab visible) the page
// reports it read up to the newest message it shows (markRead with seq: the server's read
// mark, which clears the room's badge in every tab through roomRead), together with the ids
// of others' messages that have been on screen (mostly visible), each once: those the server
// passes on as messagesRead. messagesRead from others puts "Seen by X" under the newest own
// message each of them has read up to.
import { el } from "./dom.js";
import { me, rooms, activeId, displayName, viewing, updateUnread, saveRooms } from "./state.js";
import { socket, request } from "./connection.js";
import { renderRoomList } from "./rooms.js";
import { maxSeq } from "./messages.js";

export function bindReceipts() {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    // Re-observe so what is on screen now is counted.
    for (const n of el.messages.children) {
      if (!n.classList.contains("own")) {
        readObserver.unobserve(n);
        readObserver.observe(n);
      }
    }
    // The room shown is being viewed again: no badge, and it is read.
    const r = activeId ? rooms.get(activeId) : null;
    if (r && updateUnread(r)) {
      saveRooms();
      renderRoomList();
    }
    scheduleReadCheck();
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
  readTimer = setTimeout(reportRead, 300);
}

// Sends markRead for the room viewed, now: up to its newest message held (when the read mark
// is below it) and the ids seen since the last report. Nothing when it is not viewed.
export function reportRead() {
  clearTimeout(readTimer);
  readTimer = null;
  const r = activeId ? rooms.get(activeId) : null;
  if (!r || !r.joined || !viewing(r) || !socket || !socket.connected) return;
  const ids = [];
  for (const id of pendingRead) {
    const m = r.byId.get(id);
    if (m && m.userId !== me.userId && !r.marked.has(id)) ids.push(id);
  }
  pendingRead.clear();
  const top = maxSeq(r);
  const seq = top > Math.max(r.lastReadSeq, r.readSent) ? top : 0;
  if (!ids.length && !seq) return;
  const payload = { roomId: r.id };
  if (ids.length) payload.messageIds = ids;
  if (seq) payload.seq = seq;
  for (const id of ids) r.marked.add(id);
  if (seq) r.readSent = seq;
  request("markRead", payload).then((res) => {
    if (!res.ok) {
      // Reported again when seen again (or on the next message, switch or connect).
      for (const id of ids) r.marked.delete(id);
      if (seq && r.readSent === seq) r.readSent = r.lastReadSeq;
    }
    if (updateUnread(r, { lastReadSeq: res.ok ? res.lastReadSeq : undefined }) && rooms.get(r.id) === r) {
      saveRooms();
      renderRoomList();
    }
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
