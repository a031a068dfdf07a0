// The rooms of this user: joining (the join form, and rejoining after a reconnect), the
// room list with its unread badges, switching and leaving. What a room holds is in
// state.js; its messages are fetched and shown by messages.js. The list and the unread
// counts are kept in localStorage (saveRooms) so a reload shows the same rooms.
import { el, text, errorText } from "./dom.js";
import { KEY, store } from "./storage.js";
import { me, rooms, dms, activeId, setActiveId, makeRoom, saveRooms } from "./state.js";
import { socket, request } from "./connection.js";
import { renderActiveRoom, renderHistoryStatus, fillViewport, loadLatest, fillGapAfter, maxSeq } from "./messages.js";
import { stopTyping } from "./composer.js";
import { renderMembers, closeSide } from "./people.js";

// Why a room name is refused (the server's rules), or null when it is fine.
export function validRoomId(id) {
  if (!id) return "Enter a room name.";
  if (new TextEncoder().encode(id).length > 128) return "Room names are at most 128 bytes.";
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(id)) return "Room names cannot contain control characters.";
  if (id.startsWith("user:")) return "Room names cannot start with “user:”.";
  return null;
}

export function bindRooms() {
  el.joinForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = el.joinInput.value.trim();
    const bad = validRoomId(id);
    el.joinError.textContent = bad || "";
    if (bad) {
      el.joinInput.focus();
      return;
    }
    if (rooms.has(id)) {
      el.joinInput.value = "";
      switchRoom(id, { focus: true });
      return;
    }
    const r = makeRoom(id);
    rooms.set(id, r);
    const res = await joinRoom(id);
    if (!res.ok && res.error !== "offline" && res.error !== "timeout") {
      rooms.delete(id);
      saveRooms();
      renderRoomList();
      el.joinError.textContent = `Could not join “${id}”: ${errorText(res.error)}`;
      el.joinInput.focus();
      return;
    }
    if (!res.ok) el.joinError.textContent = `Saved “${id}”; it will be joined when the connection is back.`;
    el.joinInput.value = "";
    saveRooms();
    switchRoom(id, { focus: true });
  });

  el.joinInput.addEventListener("input", () => {
    el.joinError.textContent = "";
  });
}

// Joins (or re-joins) a room. With fillGap, fetches what was missed since the last
// message we hold (history pages backwards from what messageHistory delivered).
export function joinRoom(id, { fillGap = false } = {}) {
  const r = rooms.get(id);
  if (!r) return Promise.resolve({ ok: false, error: "no_room" });
  if (r.joining) return r.joining;
  const lastSeq = maxSeq(r);
  r.joining = request("joinRoom", { roomId: id }).then(async (res) => {
    r.joining = null;
    if (!res.ok) return res;
    r.joined = true;
    r.members = new Set(Array.isArray(res.members) ? res.members.filter((m) => typeof m === "string") : []);
    if (me.userId) r.members.add(me.userId);
    if (id === activeId) renderMembers();
    if (fillGap && lastSeq > 0) await fillGapAfter(r, lastSeq);
    else if (r.msgs.size === 0) await loadLatest(r);
    if (id === activeId) {
      renderHistoryStatus();
      fillViewport();
    }
    return res;
  });
  return r.joining;
}

export function switchRoom(id, { focus = false } = {}) {
  if (!rooms.has(id)) return;
  if (activeId !== id) stopTyping();
  setActiveId(id);
  const r = rooms.get(id);
  r.unread = 0;
  saveRooms();
  renderRoomList();
  renderActiveRoom();
  closeSide();
  if (focus) el.composerInput.focus();
}

async function leaveRoom(id) {
  const r = rooms.get(id);
  if (!r) return;
  if (socket && socket.connected) request("leaveRoom", { roomId: id });
  for (const t of r.typing.values()) clearTimeout(t);
  rooms.delete(id);
  if (activeId === id) setActiveId(rooms.size ? rooms.keys().next().value : null);
  saveRooms();
  renderRoomList();
  renderActiveRoom();
  (activeId ? el.composerInput : el.joinInput).focus();
}

// Drops every room's contents and the direct messages (logging out, or another user
// signing in: then keepList keeps the list of rooms, emptied).
export function resetRooms({ keepList = false } = {}) {
  for (const r of rooms.values()) for (const t of r.typing.values()) clearTimeout(t);
  const ids = [...rooms.keys()];
  rooms.clear();
  dms.length = 0;
  el.dmList.replaceChildren();
  if (keepList) {
    for (const id of ids) rooms.set(id, makeRoom(id));
    saveRooms();
    return;
  }
  setActiveId(null);
  store.del(KEY.rooms);
  store.del(KEY.active);
}

// ---------------------------------------------------------------------------------
// Room list
export function renderRoomList() {
  el.roomList.replaceChildren();
  for (const r of rooms.values()) {
    const li = document.createElement("li");
    li.className = "room-item";
    const b = document.createElement("button");
    b.type = "button";
    b.className = "room-btn";
    if (r.id === activeId) b.setAttribute("aria-current", "true");
    b.append(text("span", `# ${r.id}`, "room-name"));
    if (r.unread > 0) {
      const badge = text("span", r.unread > 99 ? "99+" : String(r.unread), "badge");
      badge.setAttribute("aria-hidden", "true");
      b.append(badge);
      b.setAttribute("aria-label", `${r.id}, ${r.unread} unread`);
    } else {
      b.setAttribute("aria-label", r.id);
    }
    b.addEventListener("click", () => switchRoom(r.id, { focus: true }));
    const leave = text("button", "×", "leave-btn");
    leave.type = "button";
    leave.setAttribute("aria-label", `Leave ${r.id}`);
    leave.title = `Leave ${r.id}`;
    leave.addEventListener("click", () => leaveRoom(r.id));
    li.append(b, leave);
    el.roomList.append(li);
  }
  if (!rooms.size) el.roomList.append(text("li", "No rooms yet.", "hint"));
}
