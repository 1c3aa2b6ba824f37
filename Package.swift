// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "StepFleet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "stepfleet", targets: ["stepfleet"]),
        .executable(name: "opschain-action", targets: ["opschain-action"]),
        .executable(name: "opschain-exec", targets: ["opschain-exec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.60.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
    ],
    targets: [
        // librabbitmq, wrapped: module map + shim header only.
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev", "libssl-dev"])]
        ),
        // The shared contract: pure values, no I/O.
        .target(name: "Protocol"),
        // Running host programs (git, tar) without blocking the cooperative pool.
        .target(name: "HostCommand"),
        // Async AMQP 0-9-1 client over librabbitmq.
        .target(
            name: "AMQP",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // What the dispatcher and the workers agree on about the broker: exchanges, queues, bindings.
        .target(name: "Fleet", dependencies: ["AMQP", "Protocol"]),
        .target(
            name: "Dispatcher",
            dependencies: [
                "Protocol", "AMQP", "Fleet", "HostCommand", "StepRunner",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Worker",
            dependencies: [
                "Protocol", "AMQP", "Fleet", "StepRunner", "HostCommand",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The in-container runner logic (actions, step_result.json).
        .target(
            name: "StepRunner",
            dependencies: [
                "Protocol", "HostCommand",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(name: "opschain-action", dependencies: ["StepRunner"]),
        .executableTarget(name: "opschain-exec", dependencies: ["StepRunner"]),
        .executableTarget(
            name: "stepfleet",
            dependencies: [
                "Protocol", "AMQP", "Fleet", "Dispatcher", "Worker", "StepRunner", "HostCommand",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
            ]
        ),
        .testTarget(
            name: "ProtocolTests",
            dependencies: [
                "Protocol",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")]
        ),
        // Helpers the end-to-end tests share: host commands, the private broker nodes, git repositories.
        .target(name: "TestSupport", dependencies: ["HostCommand", "Protocol"], path: "Tests/TestSupport"),
        .testTarget(name: "AMQPTests", dependencies: ["AMQP", "Protocol", "TestSupport"]),
        .testTarget(name: "StepRunnerTests", dependencies: ["StepRunner", "Protocol"]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "AMQP", "Fleet", "Protocol", "StepRunner", "TestSupport"]),
        .testTarget(name: "DispatcherTests", dependencies: ["Dispatcher", "Worker", "AMQP", "Fleet", "Protocol", "TestSupport"]),
        // Runs the `stepfleet` binary that `swift build --build-tests` builds (ops/test does).
        .testTarget(name: "ChaosTests", dependencies: ["TestSupport"]),
        // The command line as an operator uses it: the built `stepfleet` binary in a shell.
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "Protocol"]),
        // `stepfleet load` and `stepfleet bench dispatcher`: their pure parts, and short runs on the real broker.
        .testTarget(
            name: "LoadTests",
            dependencies: ["stepfleet", "Protocol", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
    ]
)
