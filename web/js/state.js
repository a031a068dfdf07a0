// What the client knows, shared by every module: who is signed in, the rooms held (their
// messages, members, typists, read marks and unread counts, read receipts), the active room,
// the names learnt for user ids and the direct messages of this visit; plus the limits, in
// one place.
//
// ES module bindings are read-only where imported: `me` and `activeId` change only through
// setMe() / setActiveId(); the maps and arrays are changed in place. The socket lives in
// connection.js. Room list and unread counts are saved to localStorage by saveRooms().
import { KEY, store } from "./storage.js";

// ---------------------------------------------------------------------------------
// Limits
export const ACK_TIMEOUT_MS = 10000;
export const PAGE = 50; // history page size
export const MAX_GAP_PAGES = 10; // at most this many pages fetched to fill a gap after reconnect
export const TYPING_IDLE_MS = 2500; // stop "typing" after this long without input
export const TYPING_REFRESH_MS = 3000; // repeat isTyping:true this often while typing goes on
export const TYPING_EXPIRE_MS = 7000; // forget a remote typist not heard from for this long

// ---------------------------------------------------------------------------------
// State
export let me = { token: null, userId: null, name: null };
export function setMe(m) {
  me = m;
}
export const names = new Map(Object.entries(store.get(KEY.names, {}) || {}));
/** @type {Map<string, Room>} */
export const rooms = new Map();
export let activeId = null;
export function setActiveId(id) {
  activeId = id;
}
export const dms = []; // {from, fromName, to, text, timestamp, mine}

/**
 * @typedef {{id:string, msgs:Map<number,object>, byId:Map<string,object>, unread:number,
 *   lastSeq:number, lastReadSeq:number, readSent:number, pending:boolean, leaving:boolean,
 *   joined:boolean, joining:Promise|null, members:Set<string>, typing:Map<string,number>,
 *   reachedStart:boolean, loadingOlder:boolean, readUpTo:Map<string,number>,
 *   marked:Set<string>}} Room
 */
export function makeRoom(id, unread = 0) {
  return {
    id,
    msgs: new Map(), // seq -> message
    byId: new Map(), // message id -> message
    unread,
    // The server's numbers (myRooms, roomRead, markRead acks, newMessage seqs), only ever
    // raised: the room's newest seq and this user's read mark; unread is their difference.
    lastSeq: 0,
    lastReadSeq: 0,
    readSent: 0, // highest seq this tab sent in markRead (not acked yet, or acked)
    pending: false, // added while offline: joined (and so made a membership) on connect
    leaving: false, // leaveRoom {forget} sent, no answer yet
    joined: false,
    joining: null,
    members: new Set(),
    typing: new Map(), // userId -> expiry timer
    reachedStart: false,
    loadingOlder: false,
    readUpTo: new Map(), // user id -> highest seq they reported read
    marked: new Set(), // message ids this user already reported as read
  };
}

export function updateTitle() {
  let n = 0;
  for (const r of rooms.values()) n += r.unread;
  document.title = n ? `(${n}) Parley` : "Parley";
}

// Whether the user is looking at room r: it is the selected one and the tab is visible.
// Such a room shows no badge; what it shows is reported read (receipts.js).
export function viewing(r) {
  return r.id === activeId && document.visibilityState === "visible";
}

// Folds the server's numbers for r ({lastSeq, lastReadSeq, unread}; any may be missing) into
// what is held and sets the badge from them: the room's unread count, 0 while it is viewed.
// A read this tab reported and the server has not confirmed yet counts already (no badge
// flashing up between the markRead and its answer). Returns whether the badge changed.
export function updateUnread(r, { lastSeq, lastReadSeq, unread } = {}) {
  const int = Number.isSafeInteger;
  if (!int(lastSeq) && int(lastReadSeq) && int(unread)) lastSeq = lastReadSeq + unread;
  if (int(lastSeq) && lastSeq > r.lastSeq) r.lastSeq = lastSeq;
  if (int(lastReadSeq) && lastReadSeq > r.lastReadSeq) r.lastReadSeq = lastReadSeq;
  const n = viewing(r) ? 0 : Math.max(0, r.lastSeq - Math.max(r.lastReadSeq, r.readSent));
  if (n === r.unread) return false;
  r.unread = n;
  return true;
}

export function saveRooms() {
  updateTitle();
  store.set(
    KEY.rooms,
    [...rooms.values()].map((r) => (r.pending ? { id: r.id, unread: r.unread, pending: true } : { id: r.id, unread: r.unread })),
  );
  if (activeId) store.set(KEY.active, activeId);
  else store.del(KEY.active);
}

export function learnName(userId, username) {
  if (typeof userId !== "string" || typeof username !== "string" || !username) return;
  if (names.get(userId) === username) return;
  names.set(userId, username);
  // Keep the cache bounded.
  if (names.size > 500) names.delete(names.keys().next().value);
  store.set(KEY.names, Object.fromEntries(names));
}

export function displayName(userId) {
  if (userId === me.userId) return me.name || "You";
  return names.get(userId) || shortId(userId);
}

export function shortId(id) {
  const s = String(id);
  return s.length > 12 ? `${s.slice(0, 10)}…` : s;
}
