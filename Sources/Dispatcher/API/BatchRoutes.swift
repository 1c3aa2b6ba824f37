import Hummingbird
import Protocol

/// `POST /batches`, `GET /batches`, `GET /batches/ID`, `POST /batches/ID/cancel`,
/// `POST /batches/ID/retry`.
extension HTTPAPI {
    func addBatchRoutes(to router: Router<BasicRequestContext>) {
        router.post("/batches") { request, _ in
            let body = try await request.jsonBody()
            let asked = try WorkRequest.BatchRequest(body)
            let (batch, created) = try await submitter.createBatch(asked, user: asked.user ?? "unknown", requestId: try body.requestId())
            service?.outboxChanged()
            return JSONResponse.ok(try await batchView(batch.id), status: created ? .created : .ok)
        }
        router.get("/batches") { request, _ in
            let query = request.uri.queryParameters
            let limit = try batchListLimit(query.get("limit"))
            if let status = query.get("status"), BatchStatus(rawValue: status) == nil {
                throw APIError.badRequest("unknown status \"\(status.prefix(40))\" (\(BatchStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            let project = query.get("project"), status = query.get("status")
            let batches = try await store.read { db in
                try Store.batches(db, project: project, status: status, limit: limit).map { ($0, try Store.batchCounts(db, $0.id)) }
            }
            return JSONResponse.ok(.array(batches.map { Views.batch($0.0, counts: $0.1) }))
        }
        router.get("/batches/:batch") { _, context in
            JSONResponse.ok(try await batchView(try context.parameters.require("batch")))
        }
        router.post("/batches/:batch/cancel") { _, context in
            let batch = try await engine.cancelBatch(try context.parameters.require("batch"))
            service?.outboxChanged()
            return JSONResponse.ok(try await batchView(batch.id))
        }
        router.post("/batches/:batch/retry") { request, context in
            let body = try await request.jsonBody(optional: true)
            guard case .object = body else { throw APIError.badRequest("the body must be a JSON object") }
            let (batch, created) = try await engine.retryBatch(
                try context.parameters.require("batch"), user: try body.optionalString("user") ?? "unknown", requestId: try body.requestId())
            service?.outboxChanged()
            return JSONResponse.ok(try await batchView(batch.id), status: created ? .created : .ok)
        }
    }

    private func batchView(_ id: String) async throws -> JSON {
        let (batch, members) = try await store.read { db in (try Store.batch(db, id), try Store.batchMembers(db, id)) }
        return Views.batchWithMembers(batch, members)
    }

    /// `?limit=`: 1 to 1000, 100 when absent.
    private func batchListLimit(_ text: String?) throws -> Int {
        guard let text else { return 100 }
        guard let value = Int(text), (1...1000).contains(value) else {
            throw APIError.badRequest("limit must be a whole number from 1 to 1000, not \"\(text.prefix(40))\"")
        }
        return value
    }
}
