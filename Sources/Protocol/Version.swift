/// The StepFleet release; also `OPSCHAIN_VERSION` and the runner image tag.
public enum StepFleetVersion {
    public static let current = "0.1.0"
}
