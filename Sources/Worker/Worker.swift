import Protocol

/// The worker: job loop, git checkout cache, image builds and step containers (see
/// ARCHITECTURE.md). This module grows with the worker issue; today it holds only its namespace.
public enum WorkerModule {
    public static let version = StepFleetVersion.current
}
