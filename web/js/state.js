// What the client knows, shared by every module: who is signed in, the rooms held (their
// messages, members, typists, unread counts, read receipts), the active room, the names
// learnt for user ids and the direct messages of this visit; plus the limits, in one place.
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

export function saveRooms() {
  updateTitle();
  store.set(
    KEY.rooms,
    [...rooms.values()].map((r) => ({ id: r.id, unread: r.unread })),
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
