// The rooms of this user: the server's list of memberships (myRooms) with unread badges,
// joining (the join form; all memberships at once with joinRooms after each connect, and the
// ones another tab or device joins), read marks from any tab (roomRead), switching, and
// leaving for good (leaveRoom {forget}). What a room holds is in state.js; its messages are
// fetched and shown by messages.js. The list and the unread counts are also kept in
// localStorage (saveRooms), so a reload shows them before the server answers.
import { el, text, errorText } from "./dom.js";
import { KEY, store } from "./storage.js";
import { me, rooms, dms, activeId, setActiveId, makeRoom, saveRooms, updateUnread } from "./state.js";
import { request } from "./connection.js";
import { renderActiveRoom, renderHistoryStatus, fillViewport, loadLatest, fillGapAfter, maxSeq } from "./messages.js";
import { stopTyping } from "./composer.js";
import { renderMembers, closeSide } from "./people.js";
import { reportRead, scheduleReadCheck } from "./receipts.js";

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
    if (!res.ok) {
      // Not a membership yet: kept apart from the server's list until joined (onMyRooms).
      r.pending = true;
      el.joinError.textContent = `Saved “${id}”; it will be joined when the connection is back.`;
    }
    el.joinInput.value = "";
    saveRooms();
    switchRoom(id, { focus: true });
  });

  el.joinInput.addEventListener("input", () => {
    el.joinError.textContent = "";
  });

  el.leaveRoom.addEventListener("click", () => {
    if (activeId) forgetRoom(activeId);
  });
}

// Joins (or re-joins) a room. With fillGap, fetches what was missed since the last
// message we hold (history pages backwards from what messageHistory delivered).
export function joinRoom(id, { fillGap = false } = {}) {
  const r = rooms.get(id);
  if (!r) return Promise.resolve({ ok: false, error: "no_room" });
  if (r.joining) return r.joining;
  const lastSeq = fillGap ? maxSeq(r) : 0;
  r.joining = request("joinRoom", { roomId: id }).then((res) => joined(r, res, lastSeq));
  return r.joining;
}

// Joins the memberships in list with one joinRooms: every one (roomIds left out) after a
// connect, else those another tab or device joined. Each room's joining promise resolves to
// its own joinRoom-shaped answer; a room that held messages fills the gap since them.
function joinMemberships(list, all) {
  const lastSeqs = new Map(list.map((r) => [r.id, maxSeq(r)]));
  const batch = request("joinRooms", all ? {} : { roomIds: list.map((r) => r.id) });
  for (const r of list) {
    r.joining = batch.then((res) => {
      let ack = res;
      if (res.ok) {
        const one = Array.isArray(res.rooms) ? res.rooms.find((a) => a && a.roomId === r.id) : null;
        ack = one && typeof one === "object" ? one : { ok: false, error: "invalid_reply" };
      }
      return joined(r, ack, lastSeqs.get(r.id));
    });
  }
}

// After the server's answer to joining r: its members, then its messages (what was missed
// after lastSeq, or the latest page when messageHistory brought none).
async function joined(r, res, lastSeq) {
  r.joining = null;
  if (!res.ok || rooms.get(r.id) !== r) return res;
  r.joined = true;
  r.pending = false;
  r.members = new Set(Array.isArray(res.members) ? res.members.filter((m) => typeof m === "string") : []);
  if (me.userId) r.members.add(me.userId);
  if (r.id === activeId) renderMembers();
  if (lastSeq > 0) await fillGapAfter(r, lastSeq);
  else if (r.msgs.size === 0) await loadLatest(r);
  if (r.id === activeId) {
    renderHistoryStatus();
    fillViewport();
    scheduleReadCheck();
  }
  return res;
}

// myRooms: the user's memberships, [{roomId, lastSeq, lastReadSeq, unread}] by room id, on
// connect and whenever one is added or forgotten (from any tab or device). The list follows
// it: a room held here that is no longer a membership is left (forgotten elsewhere); a new one
// is added and joined. Rooms being joined here, or saved while offline, stay until joined.
export function onMyRooms(list) {
  if (!Array.isArray(list)) return;
  const items = list.filter((m) => m && typeof m.roomId === "string" && !validRoomId(m.roomId));
  const listed = new Set(items.map((m) => m.roomId));
  const before = activeId;
  for (const r of [...rooms.values()]) {
    if (listed.has(r.id) || r.joining || r.pending) continue;
    if (r.joined && !r.leaving) request("leaveRoom", { roomId: r.id });
    removeRoom(r);
  }
  const held = new Map(rooms);
  rooms.clear();
  for (const m of items) {
    const r = held.get(m.roomId) || makeRoom(m.roomId);
    held.delete(m.roomId);
    rooms.set(r.id, r);
    updateUnread(r, m);
  }
  for (const r of held.values()) rooms.set(r.id, r);
  if (!activeId || !rooms.has(activeId)) {
    // The room last shown (in any tab of this browser), else the first.
    const last = store.get(KEY.active);
    setActiveId(typeof last === "string" && rooms.has(last) ? last : rooms.size ? rooms.keys().next().value : null);
  }
  saveRooms();
  renderRoomList();
  if (activeId !== before) renderActiveRoom();

  const toJoin = items.map((m) => rooms.get(m.roomId)).filter((r) => !r.joined && !r.joining);
  if (toJoin.length) joinMemberships(toJoin, toJoin.length === items.length);
  for (const r of [...rooms.values()]) {
    if (!r.pending || r.joining) continue;
    joinRoom(r.id).then((res) => {
      if (res.ok || res.error === "offline" || res.error === "timeout") return;
      removeRoom(r);
      el.joinError.textContent = `Could not join “${r.id}”: ${errorText(res.error)}`;
    });
  }
  scheduleReadCheck();
}

// roomRead: this user's read mark moved in a room (in this tab or another): its badge
// follows, so reading a room anywhere clears it everywhere.
export function onRoomRead(p) {
  if (!p || typeof p.roomId !== "string") return;
  const r = rooms.get(p.roomId);
  if (r && updateUnread(r, p)) {
    saveRooms();
    renderRoomList();
  }
}

export function switchRoom(id, { focus = false } = {}) {
  if (!rooms.has(id)) return;
  if (activeId !== id) {
    stopTyping();
    reportRead(); // what the room being left showed
  }
  setActiveId(id);
  updateUnread(rooms.get(id));
  saveRooms();
  renderRoomList();
  renderActiveRoom();
  closeSide();
  scheduleReadCheck();
  if (focus) el.composerInput.focus();
}

// "Leave room" (the room header, or × in the list): ends the membership for good, in every
// tab (the others hear it through myRooms). A room saved while offline was never joined:
// it only goes from the list.
async function forgetRoom(id) {
  const r = rooms.get(id);
  if (!r || r.leaving) return;
  el.joinError.textContent = "";
  if (!r.pending) {
    r.leaving = true;
    const res = await request("leaveRoom", { roomId: id, forget: true });
    r.leaving = false;
    if (!res.ok) {
      el.joinError.textContent = `Could not leave “${id}”: ${res.error === "offline" ? "not connected." : errorText(res.error)}`;
      return;
    }
  }
  removeRoom(r);
  (activeId ? el.composerInput : el.joinInput).focus();
}

// Takes r out of the list (once), choosing another room when it was the one shown.
function removeRoom(r) {
  if (rooms.get(r.id) !== r) return;
  for (const t of r.typing.values()) clearTimeout(t);
  rooms.delete(r.id);
  const wasActive = activeId === r.id;
  if (wasActive) {
    stopTyping();
    setActiveId(rooms.size ? rooms.keys().next().value : null);
  }
  saveRooms();
  renderRoomList();
  if (wasActive) renderActiveRoom();
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
    leave.addEventListener("click", () => forgetRoom(r.id));
    li.append(b, leave);
    el.roomList.append(li);
  }
  if (!rooms.size) el.roomList.append(text("li", "No rooms yet.", "hint"));
}
