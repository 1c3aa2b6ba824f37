/// The dashboard's style sheet (`GET /ui/app.css`).
enum DashboardStyle {
    static let source = #"""
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; background: #f4f6f9; }
        header#top { display: flex; align-items: center; gap: 18px; padding: 10px 20px; background: #1d2430; color: #e8ecf2; }
        header#top a { color: #c9d3e0; text-decoration: none; }
        header#top a.brand { color: #fff; font-weight: 700; font-size: 16px; }
        header#top nav { display: flex; gap: 14px; flex: 1; }
        header#top nav a.current { color: #fff; border-bottom: 2px solid #5aa0ff; }
        #who { color: #9fb0c5; }
        main { padding: 18px 20px 40px; max-width: 1400px; }
        h1 { font-size: 19px; margin: 4px 0 12px; }
        h2 { font-size: 15px; margin: 22px 0 8px; }
        a { color: #2163c4; }
        button, select, input { font: inherit; }
        button { padding: 5px 12px; border: 1px solid #8d9bb0; border-radius: 4px; background: #fff; cursor: pointer; }
        button.primary { background: #2163c4; border-color: #2163c4; color: #fff; }
        button.danger { border-color: #c23b3b; color: #c23b3b; }
        button:disabled { opacity: .5; cursor: default; }
        #notice { margin: 10px 20px 0; padding: 8px 12px; border-radius: 4px; background: #fff3d6; border: 1px solid #e7c66b; }
        #notice.error { background: #fde3e3; border-color: #e29a9a; }
        .muted { color: #6b778a; }
        .card { background: #fff; border: 1px solid #dde3eb; border-radius: 6px; padding: 12px 14px; margin-bottom: 14px; }
        table { border-collapse: collapse; width: 100%; background: #fff; }
        th, td { text-align: left; padding: 6px 9px; border-bottom: 1px solid #e6eaf0; vertical-align: top; }
        th { background: #eef1f6; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: #4b5668; }
        form.filters, form.inline { display: flex; gap: 10px; align-items: end; flex-wrap: wrap; margin-bottom: 12px; }
        label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: #4b5668; }
        code, .mono, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
        pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
        .badge { display: inline-block; min-width: 66px; text-align: center; padding: 1px 7px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e2e6ec; color: #3c4656; }
        .st-success { background: #d5f0dc; color: #17692f; }
        .st-error, .st-aborted { background: #fbd9d9; color: #9b1c1c; }
        .st-cancelled { background: #ececec; color: #555; }
        .st-running { background: #d9e8ff; color: #1a4f9c; }
        .st-queued, .st-pending { background: #fff0c9; color: #7a5a00; }
        .meta { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; }
        .meta dt { color: #6b778a; }
        .meta dd { margin: 0; }
        .actions { display: flex; gap: 8px; margin: 10px 0; }
        .change-layout { display: grid; grid-template-columns: minmax(420px, 1fr) minmax(420px, 1fr); gap: 14px; align-items: start; }
        ul.tree { list-style: none; margin: 0; padding: 0; }
        ul.tree li { display: flex; gap: 8px; align-items: baseline; padding: 4px 0; border-bottom: 1px dashed #e6eaf0; flex-wrap: wrap; }
        ul.tree li.selected { background: #eef5ff; }
        ul.tree .indent { display: inline-block; }
        ul.tree button.step-name { border: none; background: none; padding: 0; color: #2163c4; font-weight: 600; cursor: pointer; }
        ul.tree .detail { color: #6b778a; font-size: 12.5px; }
        ul.tree .step-error { flex-basis: 100%; color: #9b1c1c; font-size: 12.5px; white-space: pre-wrap; word-break: break-word; }
        .timeline .row { display: grid; grid-template-columns: 180px 1fr; gap: 8px; align-items: center; height: 22px; }
        .timeline .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-size: 12.5px; }
        .timeline .track { position: relative; height: 14px; background: #f0f2f6; border-radius: 2px; }
        .timeline .seg { position: absolute; top: 0; height: 14px; min-width: 2px; }
        .timeline .axis { position: relative; height: 18px; margin-left: 188px; font-size: 11px; color: #6b778a; }
        .timeline .tick { position: absolute; top: 0; transform: translateX(-50%); white-space: nowrap; }
        .seg-queued { background: #f3d27a; }
        .seg-build-initialise { background: #8d6bd1; }
        .seg-build { background: #b79cf0; }
        .seg-run-initialise { background: #2f7fd8; }
        .seg-run-running { background: #5aa0ff; }
        .seg-run-completing { background: #2a5fa6; }
        .seg-active { background: #9cc3ff; }
        .seg-children { background: #d7dde6; }
        .legend { display: flex; gap: 12px; flex-wrap: wrap; font-size: 12px; color: #4b5668; margin-top: 6px; }
        .legend span::before { content: ""; display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; background: var(--c, #ccc); }
        .legend .seg-queued::before { background: #f3d27a; } .legend .seg-build-initialise::before { background: #8d6bd1; } .legend .seg-build::before { background: #b79cf0; }
        .legend .seg-run-initialise::before { background: #2f7fd8; } .legend .seg-run-running::before { background: #5aa0ff; } .legend .seg-run-completing::before { background: #2a5fa6; }
        .legend .seg-children::before { background: #d7dde6; }
        .legend span { background: none !important; }
        .log { background: #151a22; color: #d8dee9; border-radius: 6px; padding: 8px 10px; max-height: 460px; overflow: auto; }
        .log .line { display: flex; gap: 8px; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; white-space: pre-wrap; word-break: break-word; }
        .log .stream { flex: none; width: 52px; color: #7d8aa0; }
        .log .stderr .text { color: #ff9b9b; }
        .log .stderr .stream { color: #ff6b6b; }
        .log .system .text { color: #9fd0a0; font-style: italic; }
        .diff .add { color: #17692f; } .diff .remove { color: #9b1c1c; } .diff .replace { color: #7a5a00; }
        .signin { max-width: 420px; margin: 60px auto; }
        .signin input { width: 100%; padding: 6px 8px; }
        """#
}
