/// The console's one stylesheet, served by the binary at `/console.css` (system fonts, no
/// internet resources). Narrow windows get one column and scrollable tables.
enum ConsoleStyle {
    static let css = """
    :root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #5b636d; --line: #d0d7de; --accent: #0b57d0;
      --bad: #b3261e; --warn: #8a5300; --good: #1a7f37; }
    @media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9aa4ae; --line: #30363d; --accent: #7cacf8;
      --bad: #f2b8b5; --warn: #f0c674; --good: #7ee2a8; } }
    * { box-sizing: border-box; }
    body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
    a { color: var(--accent); }
    a:focus, button:focus, input:focus, select:focus, textarea:focus, main:focus { outline: 3px solid var(--accent); outline-offset: 2px; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    h3 { font-size: 1.05rem; margin: 16px 0 4px; }
    .skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: var(--bg); padding: 4px 8px; z-index: 1; }
    header.top { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; justify-content: space-between; padding: 8px 16px;
      border-bottom: 1px solid var(--line); }
    .brand { font-weight: 700; text-decoration: none; font-size: 1.2rem; }
    nav.account, nav.wsnav { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
    nav.wsnav { padding: 8px 16px; border-bottom: 1px solid var(--line); }
    .wsname { font-weight: 600; } .role, .muted, .who { color: var(--muted); }
    main { padding: 16px; max-width: 1100px; }
    h1 { font-size: 1.6rem; margin: 8px 0 16px; } h2 { font-size: 1.25rem; margin: 24px 0 8px; }
    table { border-collapse: collapse; width: 100%; display: block; overflow-x: auto; margin: 8px 0; }
    caption { text-align: left; color: var(--muted); padding: 4px 0; }
    th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
    form.stack { display: grid; gap: 6px; max-width: 560px; }
    form.inline { display: inline; } form.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 12px; }
    input, select, textarea, button { font: inherit; color: inherit; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
    button { cursor: pointer; background: var(--accent); color: var(--bg); border-color: var(--accent); }
    .actions { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
    td.actions form { display: inline-flex; gap: 4px; align-items: center; margin: 2px 0; }
    .error { color: var(--bad); font-weight: 600; } .warn { color: var(--warn); }
    dl.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
    dl.figures div { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
    dl.figures dt { color: var(--muted); } dl.figures dd { margin: 0; font-size: 1.5rem; font-weight: 600; }
    dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; } dl.facts dd { margin: 0; }
    .state.failed, .sev.critical, .sev.high { color: var(--bad); font-weight: 600; } .state.completed { color: var(--good); }
    .sev.medium { color: var(--warn); font-weight: 600; }
    .pre { white-space: pre-wrap; } pre { white-space: pre-wrap; overflow-x: auto; border: 1px solid var(--line); padding: 8px; border-radius: 6px; }
    .findings li { margin-bottom: 12px; }
    .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 16px; }
    figure.chart { margin: 0; } figure.chart svg { width: 100%; height: auto; }
    svg .axis { stroke: var(--line); } svg .label { fill: var(--muted); font-size: 11px; }
    .s-runs { fill: var(--accent); background: var(--accent); } .s-cost { fill: var(--good); background: var(--good); }
    .s-critical { fill: #8e0000; background: #8e0000; } .s-high { fill: var(--bad); background: var(--bad); }
    .s-medium { fill: #d29922; background: #d29922; } .s-low { fill: #57ab5a; background: #57ab5a; } .s-info { fill: #768390; background: #768390; }
    ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 12px; font-size: 0.9rem; }
    .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
    @media (max-width: 640px) { main { padding: 10px; } h1 { font-size: 1.3rem; } dl.facts { grid-template-columns: 1fr; } }
    """
}
