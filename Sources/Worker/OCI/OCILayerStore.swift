import Crypto
import Foundation
import Protocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The host's content-addressed layer cache: each layer of a step image, unpacked once into
/// `<directory>/<diff-id hex>/fs` (an overlay lower directory) and shared by every step and
/// image that has it. Layers come from the engine's image export (`GET /images/{name}/get`),
/// never from the engine's own storage paths, so this works with overlay2 and the containerd
/// store alike. The engine may remove an image while a step runs on it: the step's file
/// system is in this cache, not in the engine's store. A layer goes once no step has used it
/// for `idle` and no running step holds it (its lease, `OCIStepLease`).
final class OCILayerStore: Sendable {
    let directory: String
    let engine: DockerEngine
    /// One export per image at a time; steps of the same image wait for it.
    private let exports = Mutex<[String: Task<Result<Void, StepFailure>, Never>]>([:])

    init(directory: String, engine: DockerEngine) {
        self.directory = directory
        self.engine = engine
    }

    var lockPath: String { directory + "/.lock" }

    /// A running step's lease: the layers it stands on, one name a line.
    func leasePath(_ id: String) -> String { directory + "/.lease-" + id }

    func leaseIDs() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(".lease-") }.map { String($0.dropFirst(".lease-".count)) }
    }

    /// The layers some running step stands on.
    func leasedLayers() -> Set<String> {
        Set(leaseIDs().flatMap { id in
            ((try? String(contentsOfFile: leasePath(id), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        })
    }

    func layerDirectory(_ diffID: String) -> String { directory + "/" + Self.hex(diffID) + "/fs" }

    static func hex(_ diffID: String) -> String {
        String(diffID.split(separator: ":").last ?? Substring(diffID))
    }

    /// The image's layers as lower directories (the top layer first), unpacking those the
    /// cache lacks.
    func layers(of image: JSON, reference: String) async throws(StepFailure) -> [String] {
        guard let diffIDs = image["RootFS"]?["Layers"]?.arrayValue?.compactMap(\.stringValue), !diffIDs.isEmpty else {
            throw StepFailure("the step image \(reference) has no layers the engine reports; run it with --runtime docker")
        }
        for diffID in diffIDs where !Self.isDigest(diffID) {
            throw StepFailure("the step image \(reference) names a layer \(diffID.prefix(80)) that is not a sha256 digest")
        }
        let missing = diffIDs.filter { !FileManager.default.fileExists(atPath: layerDirectory($0)) }
        if !missing.isEmpty {
            let id = image["Id"]?.stringValue ?? reference
            let task = exports.withLock { tasks in
                if let running = tasks[id] { return running }
                let task = Task { () -> Result<Void, StepFailure> in
                    do throws(StepFailure) {
                        try await self.unpack(reference, diffIDs: diffIDs)
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
                tasks[id] = task
                return task
            }
            let result = await task.value
            _ = exports.withLock { $0.removeValue(forKey: id) }
            try result.get()
        }
        let now = Date()
        for diffID in diffIDs {
            try? FileManager.default.setAttributes([.modificationDate: now], ofItemAtPath: directory + "/" + Self.hex(diffID))
        }
        return diffIDs.reversed().map(layerDirectory)
    }

    static func isDigest(_ text: String) -> Bool {
        let parts = text.split(separator: ":")
        return parts.count == 2 && parts[0] == "sha256" && parts[1].count == 64 && parts[1].allSatisfy(\.isHexDigit)
    }

    /// Exports the image once and unpacks each layer the cache lacks.
    private func unpack(_ reference: String, diffIDs: [String]) async throws(StepFailure) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StepFailure("cannot create the layer cache at \(directory): \(error.localizedDescription)")
        }
        let export = directory + "/.export-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: export) }
        do {
            try await engine.exportImage(reference, to: export)
        } catch {
            throw StepFailure("cannot get the step image's layers from the engine: \(error)")
        }
        let descriptor = open(export, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StepFailure("cannot read the exported image: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let files: [String: (offset: Int64, size: Int64)]
        do {
            files = try Self.index(descriptor)
        } catch {
            throw StepFailure("the engine's export of \(reference) is not a valid tar: \(error)")
        }
        guard let manifestFile = files["manifest.json"] else { throw StepFailure("the engine's export of \(reference) has no manifest.json") }
        let manifest = try Self.json(descriptor, manifestFile, "manifest.json")
        guard let layerFiles = manifest.arrayValue?.first?["Layers"]?.arrayValue?.compactMap(\.stringValue), layerFiles.count == diffIDs.count else {
            throw StepFailure("the engine's export of \(reference) lists other layers than the image has")
        }
        for (diffID, file) in zip(diffIDs, layerFiles) where !FileManager.default.fileExists(atPath: layerDirectory(diffID)) {
            guard let region = files[file] ?? files[file.hasPrefix("./") ? String(file.dropFirst(2)) : file] else {
                throw StepFailure("the engine's export of \(reference) lacks the layer file \(file)")
            }
            try unpackLayer(diffID, descriptor: descriptor, region: region)
        }
    }

    private func unpackLayer(_ diffID: String, descriptor: Int32, region: (offset: Int64, size: Int64)) throws(StepFailure) {
        let short = Self.hex(diffID).prefix(12)
        // The bytes must be the layer the image names.
        var magic = [UInt8](repeating: 0, count: 2)
        _ = magic.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, 2, off_t(region.offset)) }
        if magic == [0x1f, 0x8b] {
            throw StepFailure("the engine exports layer \(short) compressed; the oci runtime unpacks only uncompressed layers: run this worker with --runtime docker")
        }
        guard Self.sha256(descriptor, region) == Self.hex(diffID) else {
            throw StepFailure("layer \(short) of the step image does not match its digest; refusing it")
        }
        let staging = directory + "/.unpack-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: staging) }
        guard mkdir(staging, 0o700) == 0, mkdir(staging + "/fs", 0o755) == 0 else {
            let reason = errno == ENOSPC ? "the layer cache's disk is full" : String(cString: strerror(errno))
            throw StepFailure("cannot unpack layer \(short) into the layer cache at \(directory): \(reason)")
        }
        var unpacker = OCILayerUnpacker(source: descriptor, offset: region.offset, size: region.size, destination: staging + "/fs")
        do {
            try unpacker.unpack()
        } catch {
            throw StepFailure("layer \(short) of the step image will not unpack: \(error)")
        }
        // Another worker sharing the cache may have unpacked it meanwhile: keep theirs.
        if rename(staging, directory + "/" + Self.hex(diffID)) != 0 && errno != EEXIST && errno != ENOTEMPTY {
            throw StepFailure("cannot place layer \(short) in the layer cache: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Pruning

    /// Removes layers no step has started on for `idle` and no running step holds. Returns
    /// how many went. Takes the cache's lock without waiting (skips a turn when busy).
    func prune(idle: Duration, now: Date = Date(), leases: Set<String>) -> Int {
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { return 0 }
        defer { close(lock) }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else { return 0 }
        defer { flock(lock, LOCK_UN) }
        let idleSeconds = Double(Clock.milliseconds(idle)) / 1000
        var trash: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let path = directory + "/" + name
            if name.hasPrefix(".unpack-") || name.hasPrefix(".export-") || name.hasPrefix(".trash-") {
                // Left by a dead unpack: old enough to be no one's.
                if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, now.timeIntervalSince(modified) > 3600 {
                    trash.append(path)
                }
                continue
            }
            guard !name.hasPrefix("."), !leases.contains(name) else { continue }
            guard let used = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, now.timeIntervalSince(used) > idleSeconds else { continue }
            let moved = directory + "/.trash-\(UUID().uuidString)"
            if rename(path, moved) == 0 { trash.append(moved) }
        }
        flock(lock, LOCK_UN)
        for path in trash { try? FileManager.default.removeItem(atPath: path) }
        return trash.count
    }

    /// Runs `body` holding the cache's lock shared: a prune does not remove a layer while a
    /// step takes it.
    func withSharedLock<T>(_ body: () throws(StepFailure) -> T) throws(StepFailure) -> T {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw StepFailure("cannot open the layer cache's lock \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        // A prune holds it only while it renames; ten seconds is far past that.
        let deadline = ContinuousClock.now + .seconds(10)
        while flock(lock, LOCK_SH | LOCK_NB) != 0 {
            guard ContinuousClock.now < deadline else { throw StepFailure("the layer cache at \(directory) stayed locked for 10 s; try again") }
            usleep(10_000)
        }
        defer { flock(lock, LOCK_UN) }
        return try body()
    }

    // MARK: The export's tar

    /// Regular files of the export: name → (data offset, size).
    static func index(_ descriptor: Int32) throws(OCILayerUnpacker.Failure) -> [String: (offset: Int64, size: Int64)] {
        var files: [String: (offset: Int64, size: Int64)] = [:]
        var offset: Int64 = 0
        var longName: String?
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            let got = header.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, 512, off_t(offset)) }
            guard got == 512 else { throw OCILayerUnpacker.Failure(description: "truncated at byte \(offset)") }
            if header.allSatisfy({ $0 == 0 }) { return files }
            guard OCILayerUnpacker.checksumMatches(header), let size = OCILayerUnpacker.number(header[124..<136]), size >= 0 else {
                throw OCILayerUnpacker.Failure(description: "a corrupt header at byte \(offset)")
            }
            let start = offset + 512
            var name = longName ?? {
                let prefix = OCILayerUnpacker.cString(header[345..<500])
                let base = OCILayerUnpacker.cString(header[0..<100])
                return prefix.isEmpty ? base : prefix + "/" + base
            }()
            longName = nil
            switch header[156] {
            case UInt8(ascii: "L"), UInt8(ascii: "x"):
                guard size < 1 << 20 else { throw OCILayerUnpacker.Failure(description: "an oversized name record") }
                var record = [UInt8](repeating: 0, count: Int(size))
                _ = record.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, Int(size), off_t(start)) }
                longName = header[156] == UInt8(ascii: "L") ? OCILayerUnpacker.cString(record[...]) : OCILayerUnpacker.paxRecords(record)["path"]
            case UInt8(ascii: "0"), 0:
                if name.hasPrefix("./") { name.removeFirst(2) }
                files[name] = (start, size)
            default:
                break
            }
            offset = start + (size + 511) / 512 * 512
        }
    }

    private static func json(_ descriptor: Int32, _ region: (offset: Int64, size: Int64), _ name: String) throws(StepFailure) -> JSON {
        guard region.size < 16 << 20 else { throw StepFailure("the engine's export has an oversized \(name)") }
        var bytes = [UInt8](repeating: 0, count: Int(region.size))
        _ = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, Int(region.size), off_t(region.offset)) }
        do {
            return try JSON.parse(bytes: Data(bytes))
        } catch {
            throw StepFailure("the engine's export has an unreadable \(name)")
        }
    }

    private static func sha256(_ descriptor: Int32, _ region: (offset: Int64, size: Int64)) -> String {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var position: Int64 = 0
        while position < region.size {
            let chunk = Int(min(Int64(buffer.count), region.size - position))
            let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, chunk, off_t(region.offset + position)) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return "" }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
            position += Int64(got)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
