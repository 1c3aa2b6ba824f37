#ifndef STEPFLEET_CRABBITMQ_SHIM_H
#define STEPFLEET_CRABBITMQ_SHIM_H

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

/* A non-blocking eventfd that wakes the connection thread's poll. */
static inline int stepfleet_wake_fd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

/* amqp_login is variadic; Swift cannot call it. PLAIN login, non-variadic. The client's
   capabilities are announced: librabbitmq 0.11 announces only authentication_failure_close
   and exchange_exchange_bindings, so without this the broker never sends connection.blocked /
   unblocked (a resource alarm is then silent) nor basic.cancel for a consumer it drops. */
static inline amqp_rpc_reply_t stepfleet_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max,
    int frame_max, int heartbeat, const char *user, const char *password) {
  static const char *names[] = {"authentication_failure_close", "exchange_exchange_bindings",
                                "connection.blocked", "consumer_cancel_notify", "publisher_confirms",
                                "basic.nack"};
  amqp_table_entry_t capabilities[6];
  for (int i = 0; i < 6; i++) {
    capabilities[i].key = amqp_cstring_bytes(names[i]);
    capabilities[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capabilities[i].value.value.boolean = 1;
  }
  amqp_table_entry_t properties[1];
  properties[0].key = amqp_cstring_bytes("capabilities");
  properties[0].value.kind = AMQP_FIELD_KIND_TABLE;
  properties[0].value.value.table.num_entries = 6;
  properties[0].value.value.table.entries = capabilities;
  amqp_table_t table;
  table.num_entries = 1;
  table.entries = properties;
  return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, &table,
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

/* basic.cancel without waiting for cancel-ok: sent from inside frame handling. */
static inline int stepfleet_amqp_cancel_nowait(
    amqp_connection_state_t state, amqp_channel_t channel, amqp_bytes_t tag) {
  amqp_basic_cancel_t request;
  request.consumer_tag = tag;
  request.nowait = 1;
  return amqp_send_method(state, channel, AMQP_BASIC_CANCEL_METHOD, &request);
}

/* basic.consume with a consumer tag of our own, without waiting for consume-ok: the
   connection thread matches the consume-ok (or its absence) to the tag itself, so an
   unanswered consume never holds the thread. */
static inline int stepfleet_amqp_consume_send(
    amqp_connection_state_t state, amqp_channel_t channel, amqp_bytes_t queue, amqp_bytes_t tag) {
  amqp_basic_consume_t request;
  request.ticket = 0;
  request.queue = queue;
  request.consumer_tag = tag;
  request.no_local = 0;
  request.no_ack = 0;
  request.exclusive = 0;
  request.nowait = 0;
  request.arguments = amqp_empty_table;
  return amqp_send_method(state, channel, AMQP_BASIC_CONSUME_METHOD, &request);
}

/* channel.close without waiting for close-ok (for a channel that may be stuck). */
static inline int stepfleet_amqp_send_channel_close(
    amqp_connection_state_t state, amqp_channel_t channel) {
  amqp_channel_close_t request;
  request.reply_code = AMQP_REPLY_SUCCESS;
  request.reply_text = amqp_cstring_bytes("closing");
  request.class_id = 0;
  request.method_id = 0;
  return amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_METHOD, &request);
}

/* Bytes written to the socket that the peer has not acknowledged yet (-1 on error). */
static inline int stepfleet_unsent_bytes(int sockfd) {
  int pending = 0;
  if (sockfd < 0 || ioctl(sockfd, SIOCOUTQ, &pending) != 0) return -1;
  return pending;
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

/* Method numbers and flags behind casted macros, as constants Swift can import. */
static const amqp_method_number_t stepfleet_basic_deliver = AMQP_BASIC_DELIVER_METHOD;
static const amqp_method_number_t stepfleet_basic_ack = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t stepfleet_basic_nack = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t stepfleet_basic_return = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t stepfleet_basic_cancel = AMQP_BASIC_CANCEL_METHOD;
static const amqp_method_number_t stepfleet_basic_consume_ok = AMQP_BASIC_CONSUME_OK_METHOD;
static const amqp_method_number_t stepfleet_channel_close = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t stepfleet_connection_close = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t stepfleet_connection_blocked = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t stepfleet_connection_unblocked = AMQP_CONNECTION_UNBLOCKED_METHOD;
static const uint8_t stepfleet_frame_method = AMQP_FRAME_METHOD;
static const uint8_t stepfleet_frame_heartbeat = AMQP_FRAME_HEARTBEAT;
static const amqp_flags_t stepfleet_flag_content_type = AMQP_BASIC_CONTENT_TYPE_FLAG;
static const amqp_flags_t stepfleet_flag_headers = AMQP_BASIC_HEADERS_FLAG;
static const amqp_flags_t stepfleet_flag_delivery_mode = AMQP_BASIC_DELIVERY_MODE_FLAG;
static const amqp_flags_t stepfleet_flag_correlation_id = AMQP_BASIC_CORRELATION_ID_FLAG;
static const amqp_flags_t stepfleet_flag_reply_to = AMQP_BASIC_REPLY_TO_FLAG;
static const amqp_flags_t stepfleet_flag_expiration = AMQP_BASIC_EXPIRATION_FLAG;
static const amqp_flags_t stepfleet_flag_message_id = AMQP_BASIC_MESSAGE_ID_FLAG;
static const amqp_flags_t stepfleet_flag_timestamp = AMQP_BASIC_TIMESTAMP_FLAG;
static const amqp_flags_t stepfleet_flag_type = AMQP_BASIC_TYPE_FLAG;
static const amqp_flags_t stepfleet_flag_app_id = AMQP_BASIC_APP_ID_FLAG;
static const amqp_flags_t stepfleet_flag_user_id = AMQP_BASIC_USER_ID_FLAG;

#endif
