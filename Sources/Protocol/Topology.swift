/// Exchange and queue names shared by the dispatcher and the workers.
public enum Names {
    /// Direct exchange for step jobs; the routing key is the pool name.
    public static let jobsExchange = "stepfleet.jobs"
    /// Direct exchange for everything workers send back; routing keys below.
    public static let eventsExchange = "stepfleet.events"
    /// Fanout exchange for control messages to every worker.
    public static let controlExchange = "stepfleet.control"
    /// Exchange and queue for poison and over-delivered messages.
    public static let deadExchange = "stepfleet.dead"
    public static let deadQueue = "stepfleet.dead"
    /// The dispatcher's copy of everything dead-lettered (the exchange is a fanout), so that it
    /// notices step jobs the broker gave up on; `deadQueue` keeps everything for operators.
    public static let deadJobsQueue = "stepfleet.dead.dispatcher"

    public static let eventsQueue = "stepfleet.events"
    public static let logsQueue = "stepfleet.logs"
    /// The queue outcomes reach through `eventsExchange` (routing key `outcomesRoutingKey`).
    /// Never through the default exchange: a worker account may not write to `amq.default`,
    /// which would let it put messages on any queue, step jobs included.
    public static let outcomesQueue = "stepfleet.outcomes"

    public static let eventsRoutingKey = "events"
    public static let logsRoutingKey = "logs"
    public static let outcomesRoutingKey = "outcomes"
    /// Workers' `WorkerPresence` messages; each dispatcher reads them from a queue of its own.
    public static let presenceRoutingKey = "presence"
    /// A dispatcher's own presence queue (exclusive: it goes with the dispatcher's connection).
    public static func presenceQueue(dispatcher id: String) -> String { "stepfleet.presence.\(id)" }

    /// A worker's own control queue, bound to `controlExchange`. Named for the worker, so that
    /// a worker's broker account can be given rights on its own control queue and no other.
    public static func controlQueue(worker: String) -> String { "stepfleet.control.\(worker)" }

    /// The broker user a worker expects step jobs and control messages from, unless told
    /// otherwise (`stepfleet worker --dispatcher-user`); `ops/broker-account dispatcher` makes it.
    public static let conventionalDispatcherUser = "stepfleet-dispatcher"

    /// The quorum queue a pool's workers consume.
    public static func stepsQueue(pool: String) -> String { "stepfleet.steps.\(pool)" }

    /// The default pool, used when a project does not name one (`opschain.config.pool`).
    public static let defaultPool = "default"
}
