// The page's elements (index.html), looked up once, and the helpers that put text into
// them. Nothing here knows about rooms, sockets or storage. User data reaches the page only
// through text() / textContent: never as HTML.
const $ = (id) => document.getElementById(id);
export const el = {
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
  leaveRoom: $("leave-room"),
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

// A new <tag> element (with class cls) holding value as text: the way user data goes in.
export function text(tag, value, cls) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (value !== undefined && value !== null) n.textContent = String(value);
  return n;
}

// A connection-state line at the top, announced politely (role=status); "" hides it.
export function setBanner(msg) {
  el.banner.textContent = msg;
  el.banner.classList.toggle("shown", !!msg);
}

// ---------------------------------------------------------------------------------
// Formatting
export function fmtTime(ts) {
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
// What an ack error code (docs/CHAT-API.md) means, in words.
export const errorText = (code) => ERRORS[code] || `Error: ${code}`;
