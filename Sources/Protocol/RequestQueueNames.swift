/// The exchanges and queue through which other systems hand the fleet work and follow it.
extension Names {
    /// Fanout exchange other systems publish change and batch requests to (any routing key).
    public static let requestsExchange = "stepfleet.requests"
    /// The dispatcher's durable quorum queue of requests, bound to `requestsExchange`.
    public static let requestsQueue = "stepfleet.requests"
    /// Direct exchange the dispatcher answers requests on: the routing key is the request's
    /// `reply_to`, so a client binds its reply queue here with its own name as the key. (The
    /// dispatcher's account may not write to the default exchange, which reaches every queue.)
    public static let repliesExchange = "stepfleet.replies"
    /// Topic exchange of status notifications: `change.PROJECT.ENVIRONMENT.STATUS` and
    /// `batch.ID.STATUS`.
    public static let notificationsExchange = "stepfleet.notifications"
    /// A request redelivered this many times (the dispatcher could not take it for now) is
    /// dead-lettered instead of looping.
    public static let requestDeliveryLimit = 5
}
