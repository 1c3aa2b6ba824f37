/// Who made the API request being handled: the name of the API token it came with (a bearer
/// token, or the token a dashboard session was signed in with). Set by `AuthMiddleware` for the
/// handler's task; nil for what no token reaches (`/healthz`, the sign-in).
enum APICaller {
    @TaskLocal static var tokenName: String?
}
