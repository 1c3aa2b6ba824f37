import Foundation
import HTTPTypes
import Hummingbird
import Protocol

/// A refused request: its status and what is wrong, as `{"error": "..."}`.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let message: String

    public init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, message) }
}

/// Turns every error into a JSON answer: the store's refusals and bad input into 4xx, anything
/// unexpected into a 500 that is logged.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return JSONResponse.error(error.status, error.message)
        } catch let error as StoreError {
            switch error {
            case .notFound(let message): return JSONResponse.error(.notFound, message)
            case .conflict(let message): return JSONResponse.error(.conflict, message)
            case .invalid(let message): return JSONResponse.error(.badRequest, message)
            }
        } catch let error as HTTPError {
            return JSONResponse.error(error.status, error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return JSONResponse.error(.internalServerError, "internal error: \(error)")
        }
    }
}

enum JSONResponse {
    static func ok(_ value: JSON, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.serialized(pretty: true) + "\n")))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        ok(["error": .string(message)], status: status)
    }

    static func text(_ text: String, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

extension Request {
    /// The body as JSON: at most 1 MiB, parsed exactly; errors are 400 or 413. With `optional`,
    /// an empty body is an empty object.
    func jsonBody(optional: Bool = false) async throws -> JSON {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: 1 << 20)
        } catch {
            throw APIError(.contentTooLarge, "the request body is over 1 MiB")
        }
        guard buffer.readableBytes > 0 else {
            if optional { return .emptyObject }
            throw APIError.badRequest("the request needs a JSON body")
        }
        let json: JSON
        do {
            json = try JSON.parse(bytes: buffer.readableBytesView)
        } catch {
            throw APIError.badRequest("the body is not valid JSON: \(error)")
        }
        // A number the fleet cannot carry exactly would fail later, far from here (a change's
        // step context could not be stored): refuse it at the door.
        if let number = json.uncarriableNumber() { throw APIError.badRequest(number.description) }
        return json
    }
}

extension JSON {
    /// A required string member of a request body.
    func requiredString(_ key: String) throws -> String {
        guard let value = self[key] else { throw APIError.badRequest("missing \"\(key)\"") }
        guard let text = value.stringValue, !text.isEmpty else { throw APIError.badRequest("\"\(key)\" must be a non-empty string") }
        return text
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = self[key], value != .null else { return nil }
        guard let text = value.stringValue else { throw APIError.badRequest("\"\(key)\" must be a string") }
        return text
    }
}

/// Codes name projects and environments in URLs: lowercase letters, digits, '-' and '_'.
func validateCode(_ code: String, _ what: String) throws {
    let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    guard !code.isEmpty, code.count <= 64, code.allSatisfy(allowed.contains) else {
        throw APIError.badRequest("\(what) code \"\(code)\" must be 1 to 64 lowercase letters, digits, '-' or '_'")
    }
}
