import ServiceLifecycle

/// The dispatcher's broker side as a swift-service-lifecycle service: started when the
/// `ServiceGroup` runs it, stopped on the group's graceful shutdown (SIGTERM, SIGINT): no more
/// deliveries are taken, those received are handled (their transactions finish) and acked, the
/// outbox round in progress ends, then the broker connection closes.
extension DispatcherService: Service {
    public nonisolated func run() async throws {
        try await start()
        // Returns on graceful shutdown; throws when the group is cancelled: stop either way.
        try? await gracefulShutdown()
        await stop()
    }
}
