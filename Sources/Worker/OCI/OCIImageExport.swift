import AsyncHTTPClient
import Foundation
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

extension DockerEngine {
    /// Writes the image as the engine exports it (`GET /images/{name}/get`: a tar with
    /// `manifest.json`, the image's configuration and one tar per layer) to `path`. Works
    /// whatever the engine's store (overlay2, containerd).
    func exportImage(_ reference: String, to path: String, timeout: TimeAmount = .minutes(10)) async throws(DockerError) {
        let operation = "export image \(reference)"
        let response = try await request(.GET, "/images/\(reference)/get", timeout: timeout)
        try await expect(response, operation)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw DockerError(operation: operation, status: nil, message: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        do {
            for try await chunk in response.body {
                try chunk.withUnsafeReadableBytes { bytes throws in
                    var written = 0
                    while written < bytes.count {
                        let count = write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                        if count < 0 && errno == EINTR { continue }
                        guard count > 0 else {
                            let code = errno
                            throw DockerError(
                                operation: operation, status: nil,
                                message: code == ENOSPC
                                    ? "the layer cache's disk is full writing \(path); free space there"
                                    : "cannot write \(path): \(String(cString: strerror(code)))")
                        }
                        written += count
                    }
                }
            }
        } catch let error as DockerError {
            throw error
        } catch {
            throw DockerError(operation: operation, status: nil, message: "the export stream broke: \(error)")
        }
    }
}
