import Protocol

/// The in-container programs `opschain-action` and `opschain-exec` (see ARCHITECTURE.md,
/// "Actions"). This module grows with the worker issue; today it holds only its namespace.
public enum StepRunnerModule {
    public static let version = StepFleetVersion.current
}
