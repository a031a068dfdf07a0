/* chat/owed.h — messages waiting, per room, to be owed to the room's offline members.
 *
 * The chat service hands every message its process stored (chat_owed_add); they gather
 * per room over the notifier's window, and when it closes the room's members are read
 * once and each member who is not present in the room then is owed, in one batch, the
 * window's messages newer than their read mark and not their own (chat/notify.h). Per
 * message that is O(1) whatever the size of the room (owed.c says why it matters). A
 * message that may mention someone ends its room's window at once: the members it
 * mentions are owed at once (urgent), the others' batches wait a window of the
 * notifier's.
 *
 * Ownership: the store, presence and notifier are borrowed and must outlive the
 * chat_owed_t until chat_owed_close; messages are referenced while they wait. Loop thread
 * only. */
#ifndef PARLEY_CHAT_OWED_H
#define PARLEY_CHAT_OWED_H

#include <uv.h>

#include "chat/notify.h"
#include "chat/presence.h"
#include "chat/store.h"

typedef struct chat_owed chat_owed_t;

/* Returns 0 or -ENOMEM. */
int chat_owed_new(uv_loop_t *loop, chat_store_t *store, chat_presence_t *presence,
                  chat_notify_t *notify, chat_owed_t **out);
/* msg was stored by this process: it joins its room's window (opened by the first). */
void chat_owed_add(chat_owed_t *o, chat_msg_t *msg);
/* Nothing more is owed: waiting windows are dropped (their messages stay stored, unread),
 * reads under way owe nothing when they return, and o frees itself once the loop has
 * closed its timer and the last read returned (the store answers every read by its
 * close). o may be NULL. */
void chat_owed_close(chat_owed_t *o);

#endif
