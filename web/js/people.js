// The side panel: who is in the active room (userJoined / userLeft, and the members a
// joinRoom ack lists), direct messages (sendDirect / directMessage, kept for this visit
// only), and at phone width the panel as an overlay that the People button opens.
import { el, text, errorText, fmtTime } from "./dom.js";
import { me, names, rooms, activeId, dms, learnName, displayName } from "./state.js";
import { request } from "./connection.js";
import { renderTyping } from "./composer.js";

const mobile = window.matchMedia("(max-width: 760px)");

export function bindPeople() {
  el.dmTo.addEventListener("input", updateDmToName);
  el.dmInput.addEventListener("input", () => {
    el.dmError.textContent = "";
  });

  el.dmForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const to = el.dmTo.value.trim();
    const value = el.dmInput.value;
    el.dmError.textContent = "";
    if (!to) {
      el.dmError.textContent = "Choose someone from the list (or enter a user id).";
      el.dmTo.focus();
      return;
    }
    if (!value.trim()) {
      el.dmInput.focus();
      return;
    }
    el.dmInput.value = "";
    const res = await request("sendDirect", { toUserId: to, text: value });
    if (!res.ok) {
      el.dmError.textContent = errorText(res.error);
      if (!el.dmInput.value) el.dmInput.value = value;
      return;
    }
    addDm({ from: me.userId, fromName: me.name, to, text: value, timestamp: Date.now(), mine: true });
  });

  el.peopleToggle.addEventListener("click", () => {
    if (el.side.classList.contains("open")) closeSide(true);
    else openSide();
  });
  el.sideClose.addEventListener("click", () => closeSide(true));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && el.side.classList.contains("open") && mobile.matches) closeSide(true);
  });
  mobile.addEventListener("change", () => closeSide());
}

// ---------------------------------------------------------------------------------
// Presence
export function onUserJoined(p) {
  if (!p || typeof p.userId !== "string") return;
  learnName(p.userId, p.username);
  const r = presenceRoom(p);
  if (!r) return;
  r.members.add(p.userId);
  if (r.id === activeId) renderMembers();
}

export function onUserLeft(p) {
  if (!p || typeof p.userId !== "string") return;
  learnName(p.userId, p.username);
  const r = presenceRoom(p);
  if (!r) {
    // Whatever room it was, they are not typing there any more.
    for (const x of rooms.values()) {
      if (x.typing.has(p.userId)) {
        clearTimeout(x.typing.get(p.userId));
        x.typing.delete(p.userId);
      }
    }
    renderTyping();
    return;
  }
  r.members.delete(p.userId);
  if (r.typing.has(p.userId)) {
    clearTimeout(r.typing.get(p.userId));
    r.typing.delete(p.userId);
  }
  if (r.id === activeId) {
    renderMembers();
    renderTyping();
  }
}

// userJoined/userLeft name no room in the contract: use roomId when the server sends
// it, else the only room we are in; with several rooms, ask again for every room's
// members (joinRoom is idempotent and its ack lists them) a moment later.
let presenceTimer = null;
function presenceRoom(p) {
  if (typeof p.roomId === "string") return rooms.get(p.roomId) || null;
  const joined = [...rooms.values()].filter((r) => r.joined);
  if (joined.length === 1) return joined[0];
  if (!presenceTimer) {
    presenceTimer = setTimeout(() => {
      presenceTimer = null;
      for (const r of rooms.values()) if (r.joined) refreshMembers(r);
    }, 500);
  }
  return null;
}

async function refreshMembers(r) {
  const res = await request("joinRoom", { roomId: r.id });
  if (!res.ok || !Array.isArray(res.members) || !rooms.has(r.id)) return;
  r.members = new Set(res.members.filter((m) => typeof m === "string"));
  if (me.userId) r.members.add(me.userId);
  if (r.id === activeId) renderMembers();
}

export function renderMembers() {
  const r = activeId ? rooms.get(activeId) : null;
  el.memberList.replaceChildren();
  const ids = r ? [...r.members] : [];
  ids.sort((a, b) => (a === me.userId ? -1 : b === me.userId ? 1 : displayName(a).localeCompare(displayName(b))));
  for (const id of ids) {
    const li = document.createElement("li");
    li.className = "member";
    const dot = text("span", "", "dot");
    dot.setAttribute("aria-hidden", "true");
    const name = text("span", id === me.userId ? `${displayName(id)} (you)` : displayName(id), "member-name");
    name.title = id;
    li.append(dot, name);
    if (id !== me.userId) {
      const b = text("button", "Message", "btn btn-small");
      b.type = "button";
      b.setAttribute("aria-label", `Direct message ${displayName(id)}`);
      b.addEventListener("click", () => {
        el.dmTo.value = id;
        updateDmToName();
        el.dmInput.focus();
      });
      li.append(b);
    }
    el.memberList.append(li);
  }
  if (!ids.length) el.memberList.append(text("li", r ? "Nobody here yet." : "—", "hint"));
  el.peopleToggle.textContent = r ? `People (${ids.length})` : "People";
}

// ---------------------------------------------------------------------------------
// Direct messages
function updateDmToName() {
  const id = el.dmTo.value.trim();
  el.dmToName.textContent = id && names.has(id) ? `Sending to ${names.get(id)}` : "";
}

export function onDirectMessage(p) {
  if (!p || typeof p.text !== "string") return;
  learnName(p.from, p.fromName);
  const mine = p.from === me.userId; // sent from another connection of ours
  addDm({
    from: p.from,
    fromName: p.fromName,
    to: typeof p.to === "string" ? p.to : typeof p.toUserId === "string" ? p.toUserId : mine ? null : me.userId,
    text: p.text,
    timestamp: p.timestamp,
    mine,
  });
  if (!mine && mobile.matches && !el.side.classList.contains("open")) {
    el.peopleToggle.classList.add("attention");
  }
}

function addDm(d) {
  dms.push(d);
  if (dms.length > 200) {
    dms.shift();
    el.dmList.firstElementChild && el.dmList.firstElementChild.remove();
  }
  const li = document.createElement("li");
  li.className = d.mine ? "dm-msg own" : "dm-msg";
  const meta = document.createElement("div");
  meta.className = "meta";
  let who;
  if (d.mine) who = d.to ? `You → ${displayName(d.to)}` : "You (another device)";
  else who = `${d.fromName || displayName(d.from)} → you`;
  const t = fmtTime(d.timestamp);
  const time = text("time", t.short);
  if (t.iso) time.dateTime = t.iso;
  time.title = t.full;
  meta.append(text("span", who, "author"), " ", time);
  li.append(meta, text("p", d.text, "body"));
  if (!d.mine && typeof d.from === "string") {
    const reply = text("button", "Reply", "btn btn-small");
    reply.type = "button";
    reply.setAttribute("aria-label", `Reply to ${d.fromName || displayName(d.from)}`);
    reply.addEventListener("click", () => {
      el.dmTo.value = d.from;
      updateDmToName();
      el.dmInput.focus();
    });
    li.append(reply);
  }
  el.dmList.append(li);
  el.dmList.scrollTop = el.dmList.scrollHeight;
}

// ---------------------------------------------------------------------------------
// People panel (an overlay at phone width)
function openSide() {
  el.side.classList.add("open");
  el.peopleToggle.setAttribute("aria-expanded", "true");
  el.peopleToggle.classList.remove("attention");
  el.sideClose.focus();
}
export function closeSide(returnFocus = false) {
  if (!el.side.classList.contains("open")) return;
  el.side.classList.remove("open");
  el.peopleToggle.setAttribute("aria-expanded", "false");
  if (returnFocus) el.peopleToggle.focus();
}
