/// worker → dispatcher, on `stepfleet.events` with routing key `presence`, every few seconds
/// while the worker runs: that it is there, busy or idle (the step events say nothing of an
/// idle worker). Not kept: a dispatcher that is not listening misses it, and the next one
/// comes a few seconds later.
public struct WorkerPresence: WireMessage, Hashable {
    public static let messageType = "worker_presence"
    /// Longest worker or pool name a dispatcher records.
    public static let maximumNameLength = 200

    public var worker: String
    public var pool: String
    public var slots: Int
    public var slotsInUse: Int
    /// Taking no more jobs (drained or shutting down).
    public var draining: Bool
    public var at: EpochMilliseconds

    public init(worker: String, pool: String, slots: Int, slotsInUse: Int, draining: Bool, at: EpochMilliseconds) {
        self.worker = worker
        self.pool = pool
        self.slots = slots
        self.slotsInUse = slotsInUse
        self.draining = draining
        self.at = at
    }

    /// Why a dispatcher does not record it, if it must not (hostile input: names and counts
    /// are shown on the dashboard).
    public var refusal: String? {
        if worker.isEmpty || worker.count > Self.maximumNameLength { return "the worker name is empty or over \(Self.maximumNameLength) characters" }
        if pool.isEmpty || pool.count > Self.maximumNameLength { return "the pool name is empty or over \(Self.maximumNameLength) characters" }
        if slots < 0 || slotsInUse < 0 || slots > 1_000_000 || slotsInUse > 1_000_000 { return "the slot counts are out of range" }
        return nil
    }
}
