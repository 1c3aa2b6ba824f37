/// The dashboard's one HTML page (`GET /ui/`): a shell that loads `app.js` and `app.css` from
/// the dispatcher itself; the script builds every view from the API's JSON with DOM text nodes.
enum DashboardPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>StepFleet</title>
        <link rel="stylesheet" href="/ui/app.css">
        <script src="/ui/app.js" defer></script>
        </head>
        <body>
        <header id="top">
          <a class="brand" href="#/changes">StepFleet</a>
          <nav id="nav" hidden>
            <a href="#/changes" data-page="changes">Changes</a>
            <a href="#/new" data-page="new">New change</a>
            <a href="#/properties" data-page="properties">Properties</a>
            <a href="#/workers" data-page="workers">Workers</a>
          </nav>
          <span id="who"></span>
          <button id="sign-out" type="button" hidden>Sign out</button>
        </header>
        <div id="notice" role="status" hidden></div>
        <main id="main"><p class="muted">Loading…</p></main>
        </body>
        </html>

        """#
}
