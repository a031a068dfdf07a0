// Parley web client. Plain JS, native ES modules, no build step; talks to the server only
// through the contract in docs/CHAT-API.md (dev login over HTTP, everything else over
// Socket.IO). User data is only ever put into the page as text (textContent), never as HTML.
//
// This is the entry point (index.html loads it with type="module", after the classic script
// /socket.io/socket.io.min.js that defines the global `io`). It wires the page's controls
// and restores the session kept in localStorage. The modules, in js/:
//   storage.js     localStorage as JSON, surviving storage that is full or disabled
//   dom.js         the page's elements, text() and the formatting of times and errors
//   state.js       limits and shared state: who is signed in, the rooms, the active room
//   connection.js  the Socket.IO socket, request() with ack and timeout, server events
//   login.js       signing in and out; the login and chat views
//   rooms.js       memberships (myRooms), joining, the room list with unread badges,
//                  switching, leaving
//   messages.js    the active room's message list, history and scroll-back
//   receipts.js    read marks (markRead when viewing a room) and read receipts, both ways
//   composer.js    the message box: sending and typing indicators
//   people.js      members, direct messages, the people panel
// The modules import each other's functions in cycles; that is fine because while loading
// they use only the leaves (storage.js, dom.js, state.js, which import nothing else of
// ours): they call each other only from event handlers and from start() below.
import { KEY, store } from "./js/storage.js";
import { me, setMe, rooms, activeId, setActiveId, makeRoom } from "./js/state.js";
import { socket, connect } from "./js/connection.js";
import { bindLogin, decodeJwt, showChat, showLogin } from "./js/login.js";
import { bindRooms, validRoomId } from "./js/rooms.js";
import { bindMessages } from "./js/messages.js";
import { bindReceipts } from "./js/receipts.js";
import { bindComposer } from "./js/composer.js";
import { bindPeople } from "./js/people.js";

function start() {
  const token = store.get(KEY.token);
  for (const r of store.get(KEY.rooms, []) || []) {
    if (r && typeof r.id === "string" && !validRoomId(r.id) && !rooms.has(r.id)) {
      const room = makeRoom(r.id, Number(r.unread) || 0);
      room.pending = r.pending === true;
      rooms.set(r.id, room);
    }
  }
  const active = store.get(KEY.active);
  setActiveId(typeof active === "string" && rooms.has(active) ? active : rooms.size ? rooms.keys().next().value : null);
  if (activeId) rooms.get(activeId).unread = 0;
  if (typeof token === "string" && token) {
    setMe({ token, userId: store.get(KEY.userId), name: store.get(KEY.name) });
    if (!me.userId) {
      const c = decodeJwt(token);
      if (c && typeof c.sub === "string") me.userId = c.sub;
    }
    showChat();
    connect();
  } else {
    showLogin("");
  }
}

// For tests and debugging: a read-only view of the client state.
window.parley = {
  get connected() {
    return !!(socket && socket.connected);
  },
  get recovered() {
    return !!(socket && socket.recovered);
  },
  get userId() {
    return me.userId;
  },
  get activeRoom() {
    return activeId;
  },
  // The room list as shown: [{id, unread, joined, lastReadSeq}].
  rooms() {
    return [...rooms.values()].map((r) => ({ id: r.id, unread: r.unread, joined: r.joined, lastReadSeq: r.lastReadSeq }));
  },
  seqs(roomId) {
    const r = rooms.get(roomId || activeId);
    return r ? [...r.msgs.keys()].sort((a, b) => a - b) : [];
  },
};

bindLogin();
bindRooms();
bindMessages();
bindReceipts();
bindComposer();
bindPeople();
start();
