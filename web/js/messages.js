// The active room's messages: the list (index.html #messages), kept in seq order and
// deduplicated, scrolled so that what the reader is looking at stays put; history (the
// latest page on joining, scroll-back at the top, and filling the gap a reconnect left);
// and the server's messageHistory and newMessage events. Messages of a room that is not
// viewed only raise its unread badge (to its newest seq minus the read mark). Read marks
// and receipts are in receipts.js.
import { el, text, fmtTime } from "./dom.js";
import { PAGE, MAX_GAP_PAGES, me, rooms, activeId, learnName, displayName, saveRooms, updateTitle, updateUnread } from "./state.js";
import { request } from "./connection.js";
import { renderRoomList } from "./rooms.js";
import { renderTyping } from "./composer.js";
import { renderMembers } from "./people.js";
import { readObserver, scheduleReadCheck, renderSeenAll } from "./receipts.js";

export function bindMessages() {
  el.loadOlder.addEventListener("click", () => loadOlder());

  el.jumpLatest.addEventListener("click", () => {
    scrollToBottom();
    el.scroller.focus();
  });

  // Scroll-back: at the top, fetch the page before the oldest message held.
  el.scroller.addEventListener("scroll", () => {
    if (nearBottom()) el.jumpLatest.hidden = true;
    if (el.scroller.scrollTop < 40) loadOlder();
  });
}

// ---------------------------------------------------------------------------------
// The message list
function validMessage(m) {
  return (
    m &&
    typeof m === "object" &&
    typeof m.roomId === "string" &&
    Number.isFinite(Number(m.seq)) &&
    typeof m.text === "string"
  );
}

// Adds messages to a room (deduplicated by seq); renders them when the room is shown,
// keeping what the reader is looking at in place when older messages come in above it.
function addMessages(r, list, { live }) {
  const active = r.id === activeId;
  const wasNearBottom = active && nearBottom();
  const anchor = active && !wasNearBottom ? scrollAnchor() : null;
  let added = 0;
  let ownAdded = false;
  for (const raw of list) {
    if (!validMessage(raw)) continue;
    const seq = Number(raw.seq);
    if (r.msgs.has(seq)) continue;
    const m = { ...raw, seq };
    r.msgs.set(seq, m);
    if (typeof m.id === "string") r.byId.set(m.id, m);
    learnName(m.userId, m.username);
    if (seq === 1) r.reachedStart = true;
    if (seq > r.lastSeq) r.lastSeq = seq;
    added++;
    if (m.userId === me.userId) ownAdded = true;
    if (active) insertMessageNode(m);
  }
  if (!added) return 0;
  if (updateUnread(r)) {
    saveRooms();
    renderRoomList();
  }
  if (!active) return added;
  if (wasNearBottom || (live && ownAdded)) scrollToBottom();
  else {
    restoreAnchor(anchor);
    if (live) el.jumpLatest.hidden = false;
  }
  renderSeenAll(r);
  renderHistoryStatus();
  scheduleReadCheck();
  fillViewport();
  return added;
}

// The first message at least partly visible, and where it is relative to the top.
function scrollAnchor() {
  const top = el.scroller.scrollTop;
  for (const c of el.messages.children) {
    if (c.offsetTop + c.offsetHeight > top) return { node: c, offset: c.offsetTop - top };
  }
  return null;
}

function restoreAnchor(a) {
  if (a && a.node.isConnected) el.scroller.scrollTop = a.node.offsetTop - a.offset;
}

// When the messages do not fill the list, scrolling cannot trigger scroll-back: load more.
export function fillViewport() {
  const r = activeId ? rooms.get(activeId) : null;
  if (!r || r.reachedStart || r.loadingOlder || !r.joined) return;
  if (el.scroller.scrollHeight <= el.scroller.clientHeight + 40) setTimeout(loadOlder, 0);
}

function dropMessage(r, seq) {
  const m = r.msgs.get(seq);
  r.msgs.delete(seq);
  if (m && typeof m.id === "string") r.byId.delete(m.id);
}

export function onMessageHistory(payload) {
  let roomId = null;
  let list = null;
  if (Array.isArray(payload)) {
    list = payload;
    roomId = payload.length && payload[0] ? payload[0].roomId : null;
  } else if (payload && typeof payload === "object") {
    list = Array.isArray(payload.messages) ? payload.messages : [];
    roomId = typeof payload.roomId === "string" ? payload.roomId : list[0] && list[0].roomId;
  }
  if (!list || !roomId) return;
  const r = rooms.get(roomId);
  if (!r) return;
  const wasEmpty = r.msgs.size === 0;
  addMessages(r, list, { live: false });
  if (list.length < PAGE && wasEmpty) r.reachedStart = true;
  if (r.id === activeId) {
    if (wasEmpty) scrollToBottom();
    renderHistoryStatus();
  }
}

export function onNewMessage(m) {
  if (!validMessage(m)) return;
  const r = rooms.get(m.roomId);
  if (!r) return;
  // The sender stopped typing.
  if (r.typing.has(m.userId)) {
    clearTimeout(r.typing.get(m.userId));
    r.typing.delete(m.userId);
    if (r.id === activeId) renderTyping();
  }
  addMessages(r, [m], { live: true });
}

function messageNode(m) {
  const own = m.userId === me.userId;
  const li = document.createElement("li");
  li.className = own ? "msg own" : "msg";
  li.dataset.seq = String(m.seq);
  if (typeof m.id === "string") li.dataset.id = m.id;

  const meta = document.createElement("div");
  meta.className = "meta";
  const who = text("span", own ? "You" : m.username || displayName(m.userId), "author");
  const t = fmtTime(m.timestamp);
  const time = text("time", t.short);
  if (t.iso) time.dateTime = t.iso;
  time.title = t.full;
  meta.append(who, " ", time);

  const body = text("p", m.text, "body");
  li.append(meta, body);
  if (own) {
    li.append(text("p", "", "seen"));
  }
  return li;
}

function insertMessageNode(m) {
  const list = el.messages;
  if (list.querySelector(`li[data-seq="${m.seq}"]`)) return;
  const node = messageNode(m);
  // Usually appended; history pages go above: before the first node with a larger seq.
  const last = list.lastElementChild;
  let before = null;
  if (last && Number(last.dataset.seq) > m.seq) {
    for (const c of list.children) {
      if (Number(c.dataset.seq) > m.seq) {
        before = c;
        break;
      }
    }
  }
  list.insertBefore(node, before);
  if (m.userId !== me.userId) readObserver.observe(node);
}

export function renderActiveRoom() {
  const r = activeId ? rooms.get(activeId) : null;
  readObserver.disconnect();
  el.messages.replaceChildren();
  el.jumpLatest.hidden = true;
  el.roomEmpty.hidden = !!r;
  el.messagesWrap.hidden = !r;
  el.composerInput.disabled = !r;
  el.send.disabled = !r;
  el.leaveRoom.hidden = !r;
  el.roomTitle.textContent = r ? `# ${r.id}` : "No room";
  el.composerLabel.textContent = r ? `Message # ${r.id}` : "Message";
  el.composerInput.placeholder = r ? `Message # ${r.id}` : "Join a room first";
  el.composerError.textContent = "";
  renderMembers();
  renderTyping();
  if (!r) {
    renderHistoryStatus();
    return;
  }
  const sorted = [...r.msgs.values()].sort((a, b) => a.seq - b.seq);
  const frag = document.createDocumentFragment();
  for (const m of sorted) frag.append(messageNode(m));
  el.messages.append(frag);
  for (const node of el.messages.children) {
    const m = r.msgs.get(Number(node.dataset.seq));
    if (m && m.userId !== me.userId) readObserver.observe(node);
  }
  renderSeenAll(r);
  renderHistoryStatus();
  scrollToBottom();
  if (r.joined && r.msgs.size === 0) loadLatest(r);
  else fillViewport();
  updateTitle();
}

export function renderHistoryStatus() {
  const r = activeId ? rooms.get(activeId) : null;
  if (!r) {
    el.historyStatus.textContent = "";
    el.loadOlder.hidden = true;
    return;
  }
  el.loadOlder.hidden = r.reachedStart || r.msgs.size === 0 || r.loadingOlder;
  if (r.loadingOlder) el.historyStatus.textContent = "Loading older messages…";
  else if (r.msgs.size === 0) el.historyStatus.textContent = r.joined ? "No messages yet. Say hello!" : "";
  else if (r.reachedStart) el.historyStatus.textContent = "Beginning of the conversation";
  else el.historyStatus.textContent = "";
}

function nearBottom() {
  const l = el.scroller;
  return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
}

function scrollToBottom() {
  el.scroller.scrollTop = el.scroller.scrollHeight;
  el.jumpLatest.hidden = true;
}

// ---------------------------------------------------------------------------------
// History

// messageHistory usually arrives before the joinRoom ack; if it did not bring anything
// (or its payload was not understood), ask for the latest page.
export async function loadLatest(r) {
  if (r.msgs.size > 0) return;
  const res = await request("history", { roomId: r.id, limit: PAGE });
  if (res.ok && Array.isArray(res.messages)) {
    addMessages(r, res.messages, { live: false });
    if (res.messages.length < PAGE) r.reachedStart = true;
    if (r.id === activeId) renderHistoryStatus();
  }
}

export async function fillGapAfter(r, lastSeq) {
  // The newest page first (whether or not messageHistory has arrived yet), then pages
  // backwards until everything after lastSeq is held.
  const latest = await request("history", { roomId: r.id, limit: 100 });
  if (!latest.ok || !Array.isArray(latest.messages)) return;
  addMessages(r, latest.messages, { live: false });
  let pages = 0;
  for (;;) {
    const missingBelow = lowestAboveContiguous(r, lastSeq);
    if (missingBelow === null) return; // nothing after lastSeq is missing
    if (pages++ >= MAX_GAP_PAGES) {
      // Too much was missed: drop what we held before the gap; scroll-back reloads it.
      for (const seq of [...r.msgs.keys()]) if (seq <= lastSeq) dropMessage(r, seq);
      r.reachedStart = false;
      if (r.id === activeId) renderActiveRoom();
      return;
    }
    const res = await request("history", { roomId: r.id, beforeSeq: missingBelow, limit: 100 });
    if (!res.ok || !Array.isArray(res.messages) || res.messages.length === 0) return;
    addMessages(r, res.messages, { live: false });
  }
}

// The lowest held seq above lastSeq if some seq between lastSeq and it is missing,
// else null. (history beforeSeq=<that> returns the missing ones.)
function lowestAboveContiguous(r, lastSeq) {
  let top = maxSeq(r);
  if (top <= lastSeq) return null;
  // Walk down from the top until a hole is found.
  let s = top;
  while (s > lastSeq && r.msgs.has(s)) s--;
  if (s <= lastSeq) return null;
  return s + 1;
}

export function maxSeq(r) {
  let m = 0;
  for (const s of r.msgs.keys()) if (s > m) m = s;
  return m;
}

function minSeq(r) {
  let m = Infinity;
  for (const s of r.msgs.keys()) if (s < m) m = s;
  return m === Infinity ? 0 : m;
}

async function loadOlder() {
  const r = activeId ? rooms.get(activeId) : null;
  if (!r || r.loadingOlder || r.reachedStart || !r.joined || r.msgs.size === 0) return;
  const before = minSeq(r);
  if (before <= 1) {
    r.reachedStart = true;
    renderHistoryStatus();
    return;
  }
  r.loadingOlder = true;
  renderHistoryStatus();
  const res = await request("history", { roomId: r.id, beforeSeq: before, limit: PAGE });
  r.loadingOlder = false;
  if (res.ok && Array.isArray(res.messages)) {
    addMessages(r, res.messages, { live: false });
    if (res.messages.length < PAGE) r.reachedStart = true;
  }
  renderHistoryStatus();
}
