import Protocol

/// The dispatcher: state machine, store, outbox and HTTP API (see ARCHITECTURE.md).
/// This module grows with the dispatcher issue; today it holds only its namespace.
public enum DispatcherModule {
    public static let version = StepFleetVersion.current
}
