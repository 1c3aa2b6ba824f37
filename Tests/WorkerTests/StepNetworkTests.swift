import Protocol
import Testing
@testable import Worker

/// `opschain.config.network` read from the merged properties, and what the container gets.
@Suite(.timeLimit(.minutes(2))) struct StepNetworkTests {
    static func properties(_ network: JSON) -> JSON { ["opschain": ["config": ["network": network]]] }

    @Test func requestsAreReadFromTheProperties() throws {
        #expect(try StepNetwork.requested(by: [:]) == nil)
        #expect(try StepNetwork.requested(by: Self.properties(false)) == nil)
        #expect(try StepNetwork.requested(by: Self.properties(.null)) == nil)
        #expect(try StepNetwork.requested(by: Self.properties("none")) == nil)
        #expect(try StepNetwork.requested(by: Self.properties(true)) == "default")
        #expect(try StepNetwork.requested(by: Self.properties("egress-proxy")) == "egress-proxy")
        #expect(throws: StepFailure("opschain.config.network must be true, false or the name of a network, not 3")) {
            try StepNetwork.requested(by: Self.properties(3))
        }
        #expect(throws: StepFailure(#"opschain.config.network must be true, false or the name of a network, not "-x y""#)) {
            try StepNetwork.requested(by: Self.properties("-x y"))
        }
    }

    @Test func onlyOfferedNetworksAreGiven() throws {
        #expect(try StepNetwork.resolve(Self.properties(true), allowed: ["default"]) == "default")
        #expect(try StepNetwork.resolve(Self.properties(false), allowed: []) == nil)
        #expect(throws: StepFailure(#"the step asks for the network "default" (opschain.config.network), which this worker does not allow (its --step-networks: none)"#)) {
            try StepNetwork.resolve(Self.properties(true), allowed: [])
        }
    }

    @Test func theContainerGetsTheNetworkOrNone() throws {
        let runtime = DockerContainerRuntime(engine: try DockerEngine())
        func body(_ network: String?, asRoot: Bool = false) -> JSON {
            runtime.createBody(
                ContainerRun(image: "i", action: "a", stepContext: .init(), timeout: .seconds(1), labels: [:], limits: ContainerLimits(), network: network),
                asRoot: asRoot)
        }
        #expect(body(nil)["HostConfig"]?["NetworkMode"] == "none")
        #expect(body(nil)["NetworkDisabled"] == true)
        #expect(body("default")["HostConfig"]?["NetworkMode"] == "default")
        #expect(body("default")["NetworkDisabled"] == false)
        #expect(body(nil)["HostConfig"]?["CapAdd"] == [])
        #expect(body(nil, asRoot: true)["HostConfig"]?["CapAdd"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID"])
        #expect(body(nil)["HostConfig"]?["CapDrop"] == ["ALL"])
    }
}
