// The Socket.IO connection: one socket per signed-in session (the global `io` of the
// classic script /socket.io/socket.io.min.js), the connection banner, rejoining rooms after
// a reconnect (the server's myRooms, which follows every connect, leads rooms.js to join the
// memberships with joinRooms), and the server's events handed to the modules that own them. request() is
// the only way the other modules talk to the server: an emit with an ack and a timeout that
// always resolves, to the ack or to {ok:false, error:"offline"|"timeout"|"invalid_reply"}.
import { el, setBanner } from "./dom.js";
import { KEY, store } from "./storage.js";
import { ACK_TIMEOUT_MS, me, rooms, activeId } from "./state.js";
import { showLogin } from "./login.js";
import { joinRoom, onMyRooms, onRoomRead } from "./rooms.js";
import { onMessageHistory, onNewMessage } from "./messages.js";
import { onMessagesRead } from "./receipts.js";
import { onUserTyping, stopTyping, clearTypists, renderTyping } from "./composer.js";
import { onUserJoined, onUserLeft, onDirectMessage } from "./people.js";

export let socket = null; // read-only where imported; set here only
let everConnected = false; // this socket has connected at least once
let loggingOut = false;
let manualReconnectTimer = null;

// emit(event, payload) with an ack: resolves to the ack, or to an {ok:false, error} of ours.
export function request(event, payload) {
  return new Promise((resolve) => {
    if (!socket || !socket.connected) {
      resolve({ ok: false, error: "offline" });
      return;
    }
    socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, res) => {
      if (err) resolve({ ok: false, error: "timeout" });
      else if (res && typeof res === "object") resolve(res);
      else resolve({ ok: false, error: "invalid_reply" });
    });
  });
}

// A new socket for me.token (replacing any other): the banner follows its state; on every
// connect the rooms are joined again (through myRooms). Rejected auth sends the user back
// to the login view.
export function connect() {
  if (socket) {
    socket.removeAllListeners();
    socket.disconnect();
  }
  everConnected = false;
  if (typeof io !== "function") {
    setBanner("Could not load the chat client (/socket.io/socket.io.min.js).");
    return;
  }
  setBanner("Connecting to the server…");
  socket = io({
    forceNew: true,
    auth: { token: me.token },
    reconnectionDelay: 500,
    reconnectionDelayMax: 3000,
  });
  const s = socket;

  s.on("connect", () => {
    if (s !== socket) return;
    clearTimeout(manualReconnectTimer);
    everConnected = true;
    setBanner("");
    el.composerInput.disabled = !activeId;
    el.send.disabled = !activeId;
    if (s.recovered) {
      // Connection state recovery: the server replays what we missed; rooms are kept.
      for (const r of rooms.values()) if (!r.joined) joinRoom(r.id).catch(() => {});
      return;
    }
    // A new session is in no room: the myRooms that follows joins the memberships again
    // (filling the gap after the messages held), and the rooms saved while offline.
    for (const r of rooms.values()) {
      r.joined = false;
      r.joining = null;
      r.readSent = 0;
    }
  });

  s.on("connect_error", (err) => {
    if (s !== socket) return;
    const msg = err && err.message;
    if (msg === "Authentication failed") {
      s.removeAllListeners();
      s.disconnect();
      socket = null;
      store.del(KEY.token);
      showLogin(
        "Your session was not accepted by the server (Authentication failed). Choose a name or paste a new token to sign in again.",
      );
      return;
    }
    if (!s.active) {
      // The server refused the connection for another reason: try again shortly.
      scheduleManualReconnect(s);
    }
    setBanner(everConnected ? "Connection lost — reconnecting…" : "Connecting to the server…");
  });

  s.on("disconnect", (reason) => {
    if (s !== socket || loggingOut) return;
    setBanner("Connection lost — reconnecting…");
    stopTyping(true);
    for (const r of rooms.values()) clearTypists(r);
    renderTyping();
    if (reason === "io server disconnect") scheduleManualReconnect(s);
  });

  s.on("myRooms", onMyRooms);
  s.on("roomRead", onRoomRead);
  s.on("messageHistory", onMessageHistory);
  s.on("newMessage", onNewMessage);
  s.on("userJoined", onUserJoined);
  s.on("userLeft", onUserLeft);
  s.on("userTyping", onUserTyping);
  s.on("messagesRead", onMessagesRead);
  s.on("directMessage", onDirectMessage);
}

// The client does not reconnect by itself after the server ended the session
// ("io server disconnect") or refused it; do it, with a delay.
function scheduleManualReconnect(s) {
  clearTimeout(manualReconnectTimer);
  manualReconnectTimer = setTimeout(() => {
    if (s === socket && !s.connected) s.connect();
  }, 1500);
}

// Logging out: closes the socket for good (no banner, no reconnection).
export function closeSocket() {
  loggingOut = true;
  stopTyping();
  if (socket) {
    socket.removeAllListeners();
    socket.disconnect();
  }
  socket = null;
  loggingOut = false;
  clearTimeout(manualReconnectTimer);
}
