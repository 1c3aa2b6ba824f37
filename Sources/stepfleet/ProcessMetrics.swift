import CoreMetrics
import Dispatcher
import Prometheus
import Worker

/// The process's metrics backend: swift-prometheus behind swift-metrics, bootstrapped once.
/// Everything recorded through swift-metrics in this process (the AMQP client, the worker, the
/// dispatcher) lands in its registry, which `/metrics` renders.
enum ProcessMetrics {
    private static let factory: PrometheusMetricsFactory = {
        var factory = DispatcherMetrics.withBuckets(PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
        for (label, bounds) in WorkerMetrics.buckets {
            factory.durationHistogramBuckets[label] = bounds.map { Duration.milliseconds(Int64(($0 * 1000).rounded())) }
        }
        MetricsSystem.bootstrap(factory)
        return factory
    }()

    /// Bootstraps `MetricsSystem` on first use; the factory (and its registry) every time.
    static func bootstrap() -> PrometheusMetricsFactory { factory }
}
