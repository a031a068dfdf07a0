// Signing in and out, and which of the two views is shown. A name gets a development token
// from POST /api/dev/token (servers started with --dev-login); a pasted JWT is used as it is
// (its claims are read for the user id and name, never trusted: the server checks it). The
// session is kept in localStorage, so a reload signs in again; a token the server rejects
// brings the login view back (connection.js).
import { el, setBanner } from "./dom.js";
import { KEY, store } from "./storage.js";
import { me, setMe, activeId, learnName, shortId } from "./state.js";
import { connect, closeSocket } from "./connection.js";
import { resetRooms, renderRoomList } from "./rooms.js";
import { renderActiveRoom } from "./messages.js";

export function showLogin(message) {
  el.chatView.hidden = true;
  el.me.hidden = true;
  el.loginView.hidden = false;
  setBanner("");
  el.loginError.textContent = message || "";
  const prev = store.get(KEY.name, "");
  if (prev && !el.nameInput.value) el.nameInput.value = prev;
  el.nameInput.focus();
}

export function showChat() {
  el.loginView.hidden = true;
  el.chatView.hidden = false;
  el.me.hidden = false;
  el.meName.textContent = me.name || shortId(me.userId || "");
  renderRoomList();
  renderActiveRoom();
  if (activeId) el.composerInput.focus();
  else el.joinInput.focus();
}

// The claims of a JWT (not verified: only to show who the token is for), or null.
export function decodeJwt(token) {
  try {
    const part = token.split(".")[1];
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export function bindLogin() {
  el.nameForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = el.nameInput.value.trim();
    if (!name) {
      el.loginError.textContent = "Please enter a name.";
      el.nameInput.focus();
      return;
    }
    const btn = el.nameForm.querySelector("button");
    btn.disabled = true;
    el.loginError.textContent = "";
    try {
      const res = await fetch("/api/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name }),
      });
      if (!res.ok) {
        let detail = "";
        try {
          const b = await res.json();
          if (b && typeof b.message === "string") detail = `: ${b.message}`;
        } catch {
          /* not JSON */
        }
        el.loginError.textContent =
          res.status === 404
            ? "Name login is not enabled on this server (start it with --dev-login), paste a token instead."
            : `Login failed (HTTP ${res.status})${detail}.`;
        el.nameInput.focus();
        return;
      }
      const body = await res.json();
      if (!body || typeof body.token !== "string") throw new Error("bad reply");
      login(body.token, typeof body.userId === "string" ? body.userId : null, name);
    } catch {
      el.loginError.textContent = "Could not reach the server. Try again.";
      el.nameInput.focus();
    } finally {
      btn.disabled = false;
    }
  });

  el.tokenForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = el.tokenInput.value.trim();
    if (!token) {
      el.loginError.textContent = "Paste a token first.";
      el.tokenInput.focus();
      return;
    }
    const claims = decodeJwt(token);
    const userId = claims && typeof claims.sub === "string" ? claims.sub : null;
    const name = claims && typeof claims.name === "string" ? claims.name : userId;
    el.tokenInput.value = "";
    login(token, userId, name);
  });

  el.logout.addEventListener("click", () => {
    closeSocket();
    store.del(KEY.token);
    store.del(KEY.userId);
    setMe({ token: null, userId: null, name: me.name });
    resetRooms();
    showLogin("You have logged out.");
  });
}

function login(token, userId, name) {
  // Another user (or the same name after the server forgot the old session): keep the
  // list of rooms, start their contents afresh.
  if (me.userId && userId !== me.userId) resetRooms({ keepList: true });
  setMe({ token, userId, name });
  store.set(KEY.token, token);
  store.set(KEY.userId, userId);
  store.set(KEY.name, name);
  if (userId && name) learnName(userId, name);
  el.loginError.textContent = "";
  showChat();
  connect();
}
