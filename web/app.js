// Parley web client. Plain JS, no build step; talks to the server only through the
// contract in docs/CHAT-API.md (dev login over HTTP, everything else over Socket.IO).
// User data is only ever put into the page as text (textContent), never as HTML.
"use strict";

(() => {
  // ---------------------------------------------------------------------------------
  // Storage
  const KEY = {
    token: "parley.token",
    userId: "parley.userId",
    name: "parley.name",
    rooms: "parley.rooms", // [{id, unread}]
    active: "parley.activeRoom",
    names: "parley.names", // {userId: username}
  };
  const store = {
    get(k, dflt = null) {
      try {
        const v = localStorage.getItem(k);
        return v === null ? dflt : JSON.parse(v);
      } catch {
        return dflt;
      }
    },
    set(k, v) {
      try {
        localStorage.setItem(k, JSON.stringify(v));
      } catch {
        /* storage full or disabled: the page still works for this visit */
      }
    },
    del(k) {
      try {
        localStorage.removeItem(k);
      } catch {
        /* ignore */
      }
    },
  };

  // ---------------------------------------------------------------------------------
  // DOM
  const $ = (id) => document.getElementById(id);
  const el = {
    me: $("me"),
    meName: $("me-name"),
    logout: $("logout"),
    banner: $("conn-banner"),
    loginView: $("login-view"),
    loginError: $("login-error"),
    nameForm: $("name-form"),
    nameInput: $("name-input"),
    tokenForm: $("token-form"),
    tokenInput: $("token-input"),
    chatView: $("chat-view"),
    roomList: $("room-list"),
    joinForm: $("join-form"),
    joinInput: $("join-input"),
    joinError: $("join-error"),
    room: $("room"),
    roomTitle: $("room-title"),
    roomEmpty: $("room-empty"),
    peopleToggle: $("people-toggle"),
    messagesWrap: $("messages-wrap"),
    historyStatus: $("history-status"),
    loadOlder: $("load-older"),
    scroller: $("scroller"),
    messages: $("messages"),
    jumpLatest: $("jump-latest"),
    typing: $("typing"),
    composer: $("composer"),
    composerLabel: $("composer-label"),
    composerInput: $("composer-input"),
    send: $("send"),
    composerError: $("composer-error"),
    side: $("side"),
    sideClose: $("side-close"),
    memberList: $("member-list"),
    dmList: $("dm-list"),
    dmForm: $("dm-form"),
    dmTo: $("dm-to"),
    dmToName: $("dm-to-name"),
    dmInput: $("dm-input"),
    dmError: $("dm-error"),
  };

  function text(tag, value, cls) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (value !== undefined && value !== null) n.textContent = String(value);
    return n;
  }

  // ---------------------------------------------------------------------------------
  // State
  const ACK_TIMEOUT_MS = 10000;
  const PAGE = 50; // history page size
  const MAX_GAP_PAGES = 10; // at most this many pages fetched to fill a gap after reconnect
  const TYPING_IDLE_MS = 2500; // stop "typing" after this long without input
  const TYPING_REFRESH_MS = 3000; // repeat isTyping:true this often while typing goes on
  const TYPING_EXPIRE_MS = 7000; // forget a remote typist not heard from for this long

  let me = { token: null, userId: null, name: null };
  let socket = null;
  let everConnected = false; // this socket has connected at least once
  let loggingOut = false;
  let manualReconnectTimer = null;
  const names = new Map(Object.entries(store.get(KEY.names, {}) || {}));
  /** @type {Map<string, Room>} */
  const rooms = new Map();
  let activeId = null;
  const dms = []; // {from, fromName, to, text, timestamp, mine}

  /**
   * @typedef {{id:string, msgs:Map<number,object>, byId:Map<string,object>, unread:number,
   *   joined:boolean, joining:Promise|null, members:Set<string>, typing:Map<string,number>,
   *   reachedStart:boolean, loadingOlder:boolean, readUpTo:Map<string,number>,
   *   marked:Set<string>}} Room
   */
  function makeRoom(id, unread = 0) {
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

  function updateTitle() {
    let n = 0;
    for (const r of rooms.values()) n += r.unread;
    document.title = n ? `(${n}) Parley` : "Parley";
  }

  function saveRooms() {
    updateTitle();
    store.set(
      KEY.rooms,
      [...rooms.values()].map((r) => ({ id: r.id, unread: r.unread })),
    );
    if (activeId) store.set(KEY.active, activeId);
    else store.del(KEY.active);
  }

  function learnName(userId, username) {
    if (typeof userId !== "string" || typeof username !== "string" || !username) return;
    if (names.get(userId) === username) return;
    names.set(userId, username);
    // Keep the cache bounded.
    if (names.size > 500) names.delete(names.keys().next().value);
    store.set(KEY.names, Object.fromEntries(names));
  }

  function displayName(userId) {
    if (userId === me.userId) return me.name || "You";
    return names.get(userId) || shortId(userId);
  }

  function shortId(id) {
    const s = String(id);
    return s.length > 12 ? `${s.slice(0, 10)}…` : s;
  }

  // ---------------------------------------------------------------------------------
  // Formatting
  function fmtTime(ts) {
    const d = new Date(Number(ts));
    if (Number.isNaN(d.getTime())) return { short: "", full: "", iso: "" };
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const short = sameDay ? time : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
    return { short, full: d.toLocaleString(), iso: d.toISOString() };
  }

  const ERRORS = {
    rate_limited: "You're sending too fast. Wait a moment and try again.",
    too_long: "That message is too long.",
    not_in_room: "You're not in this room (rejoining…). Try again in a moment.",
    invalid_payload: "The server did not accept that (invalid message).",
    forbidden: "That room name is reserved.",
    timeout: "No answer from the server. Check your connection and try again.",
    offline: "Not connected. Your message was not sent; it will be kept here.",
  };
  const errorText = (code) => ERRORS[code] || `Error: ${code}`;

  // ---------------------------------------------------------------------------------
  // Socket helpers
  function request(event, payload) {
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

  // ---------------------------------------------------------------------------------
  // Views
  function showLogin(message) {
    el.chatView.hidden = true;
    el.me.hidden = true;
    el.loginView.hidden = false;
    setBanner("");
    el.loginError.textContent = message || "";
    const prev = store.get(KEY.name, "");
    if (prev && !el.nameInput.value) el.nameInput.value = prev;
    el.nameInput.focus();
  }

  function showChat() {
    el.loginView.hidden = true;
    el.chatView.hidden = false;
    el.me.hidden = false;
    el.meName.textContent = me.name || shortId(me.userId || "");
    renderRoomList();
    renderActiveRoom();
    if (activeId) el.composerInput.focus();
    else el.joinInput.focus();
  }

  function setBanner(msg) {
    el.banner.textContent = msg;
    el.banner.classList.toggle("shown", !!msg);
  }

  // ---------------------------------------------------------------------------------
  // Login
  function decodeJwt(token) {
    try {
      const part = token.split(".")[1];
      const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
      const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return null;
    }
  }

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

  function login(token, userId, name) {
    // Another user (or the same name after the server forgot the old session): keep the
    // list of rooms, start their contents afresh.
    if (me.userId && userId !== me.userId) resetRooms({ keepList: true });
    me = { token, userId, name };
    store.set(KEY.token, token);
    store.set(KEY.userId, userId);
    store.set(KEY.name, name);
    if (userId && name) learnName(userId, name);
    el.loginError.textContent = "";
    showChat();
    connect();
  }

  function resetRooms({ keepList = false } = {}) {
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
    activeId = null;
    store.del(KEY.rooms);
    store.del(KEY.active);
  }

  el.logout.addEventListener("click", () => {
    loggingOut = true;
    stopTyping();
    if (socket) {
      socket.removeAllListeners();
      socket.disconnect();
    }
    socket = null;
    loggingOut = false;
    clearTimeout(manualReconnectTimer);
    store.del(KEY.token);
    store.del(KEY.userId);
    me = { token: null, userId: null, name: me.name };
    resetRooms();
    showLogin("You have logged out.");
  });

  // ---------------------------------------------------------------------------------
  // Connection
  function connect() {
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
      const first = !everConnected;
      everConnected = true;
      setBanner("");
      el.composerInput.disabled = !activeId;
      el.send.disabled = !activeId;
      if (s.recovered) {
        // Connection state recovery: the server replays what we missed; rooms are kept.
        for (const r of rooms.values()) if (!r.joined) joinRoom(r.id).catch(() => {});
        return;
      }
      for (const r of rooms.values()) {
        r.joined = false;
        r.joining = null;
      }
      // Rejoin every room; after a reconnect that was not recovered, also fill gaps.
      for (const r of rooms.values()) joinRoom(r.id, { fillGap: !first }).catch(() => {});
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

  // ---------------------------------------------------------------------------------
  // Rooms
  function validRoomId(id) {
    if (!id) return "Enter a room name.";
    if (new TextEncoder().encode(id).length > 128) return "Room names are at most 128 bytes.";
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f-\u009f]/.test(id)) return "Room names cannot contain control characters.";
    if (id.startsWith("user:")) return "Room names cannot start with “user:”.";
    return null;
  }

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

  // Joins (or re-joins) a room. With fillGap, fetches what was missed since the last
  // message we hold (history pages backwards from what messageHistory delivered).
  function joinRoom(id, { fillGap = false } = {}) {
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

  // messageHistory usually arrives before the joinRoom ack; if it did not bring anything
  // (or its payload was not understood), ask for the latest page.
  async function loadLatest(r) {
    if (r.msgs.size > 0) return;
    const res = await request("history", { roomId: r.id, limit: PAGE });
    if (res.ok && Array.isArray(res.messages)) {
      addMessages(r, res.messages, { live: false });
      if (res.messages.length < PAGE) r.reachedStart = true;
      if (r.id === activeId) renderHistoryStatus();
    }
  }

  async function fillGapAfter(r, lastSeq) {
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

  function maxSeq(r) {
    let m = 0;
    for (const s of r.msgs.keys()) if (s > m) m = s;
    return m;
  }

  function minSeq(r) {
    let m = Infinity;
    for (const s of r.msgs.keys()) if (s < m) m = s;
    return m === Infinity ? 0 : m;
  }

  function switchRoom(id, { focus = false } = {}) {
    if (!rooms.has(id)) return;
    if (activeId !== id) stopTyping();
    activeId = id;
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
    if (activeId === id) activeId = rooms.size ? rooms.keys().next().value : null;
    saveRooms();
    renderRoomList();
    renderActiveRoom();
    (activeId ? el.composerInput : el.joinInput).focus();
  }

  // ---------------------------------------------------------------------------------
  // Messages
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
      added++;
      if (m.userId === me.userId) ownAdded = true;
      if (active) insertMessageNode(m);
      else if (live && m.userId !== me.userId) r.unread++;
    }
    if (!added) return 0;
    if (!active) {
      if (live) {
        saveRooms();
        renderRoomList();
      }
      return added;
    }
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
  function fillViewport() {
    const r = activeId ? rooms.get(activeId) : null;
    if (!r || r.reachedStart || r.loadingOlder || !r.joined) return;
    if (el.scroller.scrollHeight <= el.scroller.clientHeight + 40) setTimeout(loadOlder, 0);
  }

  function dropMessage(r, seq) {
    const m = r.msgs.get(seq);
    r.msgs.delete(seq);
    if (m && typeof m.id === "string") r.byId.delete(m.id);
  }

  function onMessageHistory(payload) {
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

  function onNewMessage(m) {
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

  function renderActiveRoom() {
    const r = activeId ? rooms.get(activeId) : null;
    readObserver.disconnect();
    el.messages.replaceChildren();
    el.jumpLatest.hidden = true;
    el.roomEmpty.hidden = !!r;
    el.messagesWrap.hidden = !r;
    el.composerInput.disabled = !r;
    el.send.disabled = !r;
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

  function renderHistoryStatus() {
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

  el.loadOlder.addEventListener("click", () => loadOlder());

  function nearBottom() {
    const l = el.scroller;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }

  function scrollToBottom() {
    el.scroller.scrollTop = el.scroller.scrollHeight;
    el.jumpLatest.hidden = true;
  }

  el.jumpLatest.addEventListener("click", () => {
    scrollToBottom();
    el.scroller.focus();
  });

  // Scroll-back: at the top, fetch the page before the oldest message held.
  el.scroller.addEventListener("scroll", () => {
    if (nearBottom()) el.jumpLatest.hidden = true;
    if (el.scroller.scrollTop < 40) loadOlder();
  });

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

  // ---------------------------------------------------------------------------------
  // Read receipts: report others' messages once they have been visible in the active room.
  const pendingRead = new Set();
  let readTimer = null;
  const readObserver = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        // Mostly visible, or filling half the list (a message taller than the list).
        const big = e.rootBounds && e.intersectionRect.height >= e.rootBounds.height / 2;
        if (!e.isIntersecting || (e.intersectionRatio < 0.5 && !big)) continue;
        const id = e.target.dataset.id;
        if (id) pendingRead.add(id);
      }
      scheduleReadCheck();
    },
    { root: el.scroller, threshold: [0, 0.25, 0.5] },
  );

  function scheduleReadCheck() {
    if (readTimer) return;
    readTimer = setTimeout(flushRead, 300);
  }

  function flushRead() {
    readTimer = null;
    const r = activeId ? rooms.get(activeId) : null;
    if (!r || !r.joined || document.visibilityState !== "visible" || !socket || !socket.connected) return;
    const ids = [];
    for (const id of pendingRead) {
      const m = r.byId.get(id);
      if (m && m.userId !== me.userId && !r.marked.has(id)) ids.push(id);
    }
    pendingRead.clear();
    if (!ids.length) return;
    for (const id of ids) r.marked.add(id);
    request("markRead", { roomId: r.id, messageIds: ids }).then((res) => {
      if (!res.ok) for (const id of ids) r.marked.delete(id); // reported again when seen again
    });
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      // Re-observe so what is on screen now is counted.
      for (const n of el.messages.children) {
        if (!n.classList.contains("own")) {
          readObserver.unobserve(n);
          readObserver.observe(n);
        }
      }
    }
  });

  function onMessagesRead(p) {
    if (!p || typeof p.userId !== "string" || !Array.isArray(p.messageIds)) return;
    if (p.userId === me.userId) return;
    // The event names no room (unless the server adds roomId): find the messages among
    // the rooms we hold.
    const candidates = typeof p.roomId === "string" && rooms.has(p.roomId) ? [rooms.get(p.roomId)] : [...rooms.values()];
    for (const r of candidates) {
      let changed = false;
      for (const id of p.messageIds) {
        const m = typeof id === "string" ? r.byId.get(id) : null;
        if (!m) continue;
        if ((r.readUpTo.get(p.userId) || 0) < m.seq) {
          r.readUpTo.set(p.userId, m.seq);
          changed = true;
        }
      }
      if (changed && r.id === activeId) renderSeenAll(r);
    }
  }

  // "Seen by X" goes under the newest own message each reader has read up to.
  function renderSeenAll(r) {
    if (r.id !== activeId) return;
    const own = [...r.msgs.values()].filter((m) => m.userId === me.userId).map((m) => m.seq).sort((a, b) => a - b);
    const at = new Map(); // seq -> [user ids]
    for (const [uid, upTo] of r.readUpTo) {
      let target = 0;
      for (const seq of own) if (seq <= upTo) target = seq;
      if (!target) continue;
      if (!at.has(target)) at.set(target, []);
      at.get(target).push(uid);
    }
    for (const node of el.messages.querySelectorAll("li.own .seen")) {
      const seq = Number(node.parentElement.dataset.seq);
      const who = at.get(seq);
      const t = who ? `Seen by ${who.map(displayName).join(", ")}` : "";
      if (node.textContent !== t) node.textContent = t;
    }
  }

  // ---------------------------------------------------------------------------------
  // Typing
  let typingRoom = null; // room we told the server we are typing in
  let typingSentAt = 0;
  let typingIdle = null;

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

  function stopTyping(silent = false) {
    clearTimeout(typingIdle);
    typingIdle = null;
    if (typingRoom && !silent && socket && socket.connected) request("typing", { roomId: typingRoom, isTyping: false });
    typingRoom = null;
    typingSentAt = 0;
  }

  function onUserTyping(p) {
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

  function clearTypists(r) {
    for (const t of r.typing.values()) clearTimeout(t);
    r.typing.clear();
  }

  function renderTyping() {
    const r = activeId ? rooms.get(activeId) : null;
    const who = r ? [...r.typing.keys()].map(displayName) : [];
    let s = "";
    if (who.length === 1) s = `${who[0]} is typing…`;
    else if (who.length === 2) s = `${who[0]} and ${who[1]} are typing…`;
    else if (who.length > 2) s = "Several people are typing…";
    el.typing.textContent = s;
  }

  // ---------------------------------------------------------------------------------
  // Sending
  function autoGrow() {
    const t = el.composerInput;
    t.style.height = "auto";
    t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
  }

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

  // ---------------------------------------------------------------------------------
  // Presence
  function onUserJoined(p) {
    if (!p || typeof p.userId !== "string") return;
    learnName(p.userId, p.username);
    const r = presenceRoom(p);
    if (!r) return;
    r.members.add(p.userId);
    if (r.id === activeId) renderMembers();
  }

  function onUserLeft(p) {
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

  function renderMembers() {
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
  el.dmTo.addEventListener("input", updateDmToName);
  el.dmInput.addEventListener("input", () => {
    el.dmError.textContent = "";
  });
  el.joinInput.addEventListener("input", () => {
    el.joinError.textContent = "";
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

  function onDirectMessage(p) {
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
  // Room list
  function renderRoomList() {
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

  // ---------------------------------------------------------------------------------
  // People panel (an overlay at phone width)
  const mobile = window.matchMedia("(max-width: 760px)");
  function openSide() {
    el.side.classList.add("open");
    el.peopleToggle.setAttribute("aria-expanded", "true");
    el.peopleToggle.classList.remove("attention");
    el.sideClose.focus();
  }
  function closeSide(returnFocus = false) {
    if (!el.side.classList.contains("open")) return;
    el.side.classList.remove("open");
    el.peopleToggle.setAttribute("aria-expanded", "false");
    if (returnFocus) el.peopleToggle.focus();
  }
  el.peopleToggle.addEventListener("click", () => {
    if (el.side.classList.contains("open")) closeSide(true);
    else openSide();
  });
  el.sideClose.addEventListener("click", () => closeSide(true));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && el.side.classList.contains("open") && mobile.matches) closeSide(true);
  });
  mobile.addEventListener("change", () => closeSide());

  // ---------------------------------------------------------------------------------
  // Start
  function start() {
    const token = store.get(KEY.token);
    for (const r of store.get(KEY.rooms, []) || []) {
      if (r && typeof r.id === "string" && !validRoomId(r.id) && !rooms.has(r.id)) {
        rooms.set(r.id, makeRoom(r.id, Number(r.unread) || 0));
      }
    }
    const active = store.get(KEY.active);
    activeId = typeof active === "string" && rooms.has(active) ? active : rooms.size ? rooms.keys().next().value : null;
    if (activeId) rooms.get(activeId).unread = 0;
    if (typeof token === "string" && token) {
      me = { token, userId: store.get(KEY.userId), name: store.get(KEY.name) };
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
    seqs(roomId) {
      const r = rooms.get(roomId || activeId);
      return r ? [...r.msgs.keys()].sort((a, b) => a - b) : [];
    },
  };

  start();
})();
