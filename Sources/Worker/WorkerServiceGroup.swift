import ServiceLifecycle

/// A worker as a swift-service-lifecycle service: it runs until the `ServiceGroup` shuts down
/// gracefully (SIGTERM, SIGINT), then takes no more jobs, lets its running steps finish within
/// its grace period, kills and reports those that do not, and closes its broker connection
/// (`WorkerService.shutdown`).
public struct WorkerLifecycle: Service {
    public let worker: WorkerService

    public init(_ worker: WorkerService) {
        self.worker = worker
    }

    public func run() async throws {
        async let running: Void = worker.run()
        // Returns on graceful shutdown; throws when the group is cancelled: shut down either way.
        try? await gracefulShutdown()
        await worker.shutdown()
        await running
    }
}
