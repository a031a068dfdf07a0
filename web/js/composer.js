// The message box: sending (Enter sends, Shift+Enter adds a line; a rejected text is given
// back with the reason, and a not_in_room answer rejoins and retries once), and typing
// indicators both ways — ours sent while the box has text in the active room, others'
// shown under the messages until they stop, send or leave, or are not heard from.
import { el, errorText } from "./dom.js";
import { TYPING_IDLE_MS, TYPING_REFRESH_MS, TYPING_EXPIRE_MS, me, rooms, activeId, learnName, displayName } from "./state.js";
import { socket, request } from "./connection.js";
import { joinRoom } from "./rooms.js";

let typingRoom = null; // room we told the server we are typing in
let typingSentAt = 0;
let typingIdle = null;

export function bindComposer() {
  el.composerInput.addEventListener("input", () => {
    autoGrow();
    el.composerError.textContent = "";
    if (!activeId || !socket || !socket.connected) return;
    if (!el.composerInput.value) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (typingRoom !== activeId || now - typingSentAt > TYPING_REFRESH_MS) {
      if (typingRoom && typingRoom !== activeId) stopTyping();
      typingRoom = activeId;
      typingSentAt = now;
      request("typing", { roomId: activeId, isTyping: true });
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(() => stopTyping(), TYPING_IDLE_MS);
  });

  el.composerInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      el.composer.requestSubmit();
    }
  });

  el.composer.addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = activeId ? rooms.get(activeId) : null;
    const value = el.composerInput.value;
    if (!r || !value.trim()) return;
    el.composerError.textContent = "";
    stopTyping();
    el.composerInput.value = "";
    autoGrow();
    let res = await request("sendMessage", { roomId: r.id, text: value });
    if (!res.ok && res.error === "not_in_room") {
      // Rejoin (e.g. after a reconnect that was not recovered) and try once more.
      r.joined = false;
      const j = await joinRoom(r.id, { fillGap: true });
      if (j.ok) res = await request("sendMessage", { roomId: r.id, text: value });
    }
    if (!res.ok) {
      el.composerError.textContent = errorText(res.error);
      // Give the text back so nothing typed is lost.
      if (!el.composerInput.value) {
        el.composerInput.value = value;
        autoGrow();
      }
    }
    if (document.activeElement === document.body) el.composerInput.focus();
  });
}

// ---------------------------------------------------------------------------------
// Typing: ours (stopTyping; silent when the socket is gone) and others' (userTyping)
export function stopTyping(silent = false) {
  clearTimeout(typingIdle);
  typingIdle = null;
  if (typingRoom && !silent && socket && socket.connected) request("typing", { roomId: typingRoom, isTyping: false });
  typingRoom = null;
  typingSentAt = 0;
}

export function onUserTyping(p) {
  if (!p || typeof p.userId !== "string" || p.userId === me.userId) return;
  learnName(p.userId, p.username);
  const r = typingRoomOf(p);
  if (!r) return;
  clearTimeout(r.typing.get(p.userId));
  if (p.isTyping) {
    r.typing.set(
      p.userId,
      setTimeout(() => {
        r.typing.delete(p.userId);
        if (r.id === activeId) renderTyping();
      }, TYPING_EXPIRE_MS),
    );
  } else {
    r.typing.delete(p.userId);
  }
  if (r.id === activeId) renderTyping();
}

// userTyping names no room in the contract: use roomId when the server sends it, else
// the only room of ours the typist is a member of, else the active room if they are in it.
function typingRoomOf(p) {
  if (typeof p.roomId === "string") return rooms.get(p.roomId) || null;
  const theirs = [...rooms.values()].filter((r) => r.members.has(p.userId));
  if (theirs.length === 1) return theirs[0];
  const a = activeId ? rooms.get(activeId) : null;
  if (a && (theirs.includes(a) || rooms.size === 1)) return a;
  return null;
}

export function clearTypists(r) {
  for (const t of r.typing.values()) clearTimeout(t);
  r.typing.clear();
}

export function renderTyping() {
  const r = activeId ? rooms.get(activeId) : null;
  const who = r ? [...r.typing.keys()].map(displayName) : [];
  let s = "";
  if (who.length === 1) s = `${who[0]} is typing…`;
  else if (who.length === 2) s = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) s = "Several people are typing…";
  el.typing.textContent = s;
}

// The box grows with its text, up to 160 px.
function autoGrow() {
  const t = el.composerInput;
  t.style.height = "auto";
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}
