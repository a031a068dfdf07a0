// localStorage, as JSON under the keys in KEY. Every call survives storage that is full or
// disabled (private browsing, quota): reads fall back to a default, writes are dropped and
// the page still works for this visit. Used by state.js (rooms, names), login.js (the
// session) and app.js (restoring them at start-up).
export const KEY = {
  token: "parley.token",
  userId: "parley.userId",
  name: "parley.name",
  rooms: "parley.rooms", // [{id, unread, pending?}]
  active: "parley.activeRoom",
  names: "parley.names", // {userId: username}
};
export const store = {
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
