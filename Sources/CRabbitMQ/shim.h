#ifndef STEPFLEET_CRABBITMQ_SHIM_H
#define STEPFLEET_CRABBITMQ_SHIM_H

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#include <poll.h>

/* amqp_login is variadic; Swift cannot call it. PLAIN login, non-variadic. */
static inline amqp_rpc_reply_t stepfleet_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max,
    int frame_max, int heartbeat, const char *user, const char *password) {
  return amqp_login(state, vhost, channel_max, frame_max, heartbeat,
                    AMQP_SASL_METHOD_PLAIN, user, password);
}

/* Sends one heartbeat frame on channel 0. */
static inline int stepfleet_amqp_send_heartbeat(amqp_connection_state_t state) {
  amqp_frame_t frame;
  frame.frame_type = AMQP_FRAME_HEARTBEAT;
  frame.channel = 0;
  return amqp_send_frame(state, &frame);
}

/* Replies to a broker-initiated channel.close so the channel number is free again. */
static inline int stepfleet_amqp_send_channel_close_ok(
    amqp_connection_state_t state, amqp_channel_t channel) {
  amqp_channel_close_ok_t reply;
  reply.dummy = 0;
  return amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &reply);
}

static inline int stepfleet_amqp_send_connection_close_ok(
    amqp_connection_state_t state) {
  amqp_connection_close_ok_t reply;
  reply.dummy = 0;
  return amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &reply);
}

/* Polls the connection's socket and an extra wake-up descriptor. Returns
   a bit set: 1 = socket readable (or error/hangup), 2 = wake-up readable. */
static inline int stepfleet_poll2(int sockfd, int wakefd, int timeout_ms) {
  struct pollfd fds[2];
  fds[0].fd = sockfd; fds[0].events = POLLIN; fds[0].revents = 0;
  fds[1].fd = wakefd; fds[1].events = POLLIN; fds[1].revents = 0;
  int n = poll(fds, 2, timeout_ms);
  if (n <= 0) return n < 0 ? -1 : 0;
  int result = 0;
  if (fds[0].revents) result |= 1;
  if (fds[1].revents) result |= 2;
  return result;
}

#endif
