import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `127.0.0.1:port` for the build-secret server and its client (plain sockets: the static
/// in-container programs have no networking library).
enum LoopbackAddress {
    /// Calls `body` with the address as a `sockaddr` and its length (for `bind` or `connect`).
    static func with<Result>(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
