/* chat/service.h — the chat service on the Socket.IO layer (docs/CHAT-API.md).
 *
 * Registers the auth middleware and the chat events on the root namespace, keeps
 * presence (which users are in which room, counting their connections), enforces the
 * payload rules and rate limits, and stores messages through chat/store.h before they
 * are announced: a newMessage and the sender's ack go out only once the message is
 * durable, in seq order. */
#ifndef PARLEY_CHAT_SERVICE_H
#define PARLEY_CHAT_SERVICE_H

#include <stddef.h>

#include "chat/auth.h"
#include "chat/store.h"
#include "parley/sio.h"

typedef struct {
    size_t max_text;       /* code points per message (4000) */
    double rate_burst;     /* token bucket size per connection (5) */
    double rate_per_sec;   /* refill per second (5) */
    size_t presence_limit; /* above this many members no userJoined/userLeft (1000) */
    size_t history_size;   /* messages sent on joinRoom (50) */
} chat_config_t;

void chat_config_defaults(chat_config_t *cfg);

typedef struct chat_service chat_service_t;

/* Attaches the service to io's root namespace. store and auth are borrowed and must
 * outlive the service. */
int chat_service_new(sio_server_t *io, chat_store_t *store, const chat_auth_t *auth,
                     const chat_config_t *cfg, chat_service_t **out);
/* Shutdown, first step: from now on nothing is announced (stores still finishing their
 * work call back into the service, which then only releases what it holds). Then close
 * the Socket.IO server, then the store, then chat_service_free. */
void chat_service_stop(chat_service_t *svc);
void chat_service_free(chat_service_t *svc);

/* Distinct users present in a room (for the HTTP API). */
size_t chat_service_room_users(const chat_service_t *svc, const char *room_id);

#endif
