/// Who sent a worker message: the broker user that published it (its `user_id`, which the
/// broker verifies against the connection's login) and the worker name in its body. A claim
/// binds an attempt's lease to the claimer's identity; every later message about that attempt
/// must carry the same one. With one broker account per worker the user alone tells workers
/// apart; a fleet sharing one account relies on the names, which that account's holders can forge.
public struct WorkerIdentity: Codable, Sendable, Hashable, CustomStringConvertible {
    public var user: String
    public var worker: String

    public init(user: String, worker: String) {
        self.user = user
        self.worker = worker
    }

    public var description: String { "worker \(worker) (broker user \(user))" }
}
