/**
 * @module web/page
 * The monitor's HTML page and style sheet, embedded as strings so that a compiled binary
 * carries them (nothing is read from disk, nothing loaded from elsewhere: no CDN, no web
 * fonts). The script is in `page_script`. Pure: constants only.
 */

/** The page: a skeleton that the script fills for a share or for a tracker. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="color-scheme" content="light">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<title>p2p-share monitor</title>
</head>
<body data-conn="connecting">
<header class="top">
  <div class="brand">p2p-share <span class="muted">monitor</span></div>
  <div class="conn"><span class="dot"></span><span id="conn-text">connecting...</span></div>
</header>
<main>
  <p id="waiting" class="card waiting">Waiting for the program to answer...</p>

  <section id="share" hidden>
    <div class="card head">
      <div class="title-row"><h1 id="name"></h1><span id="role" class="badge"></span></div>
      <div class="meta"><span id="size"></span> &middot; <span id="layout"></span></div>
      <div class="meta">info hash <code id="hash"></code></div>
    </div>

    <div id="summary" class="card summary" hidden>
      <h2 id="summary-title">Download complete</h2>
      <p id="summary-text"></p>
    </div>

    <div class="card">
      <div class="progress-row">
        <div id="pct" class="pct">0.0%</div>
        <div class="progress-info">
          <div id="bytes-line"></div>
          <div id="eta-line" class="muted"></div>
        </div>
      </div>
      <div class="bar"><div id="bar-fill" class="bar-fill"></div></div>
    </div>

    <div class="grid">
      <div class="card">
        <h2>Transfer rates</h2>
        <div class="rates">
          <div><span class="key down"></span>Download <strong id="rate-down">0 B/s</strong>
            <div class="muted small" id="total-down"></div></div>
          <div><span class="key up"></span>Upload <strong id="rate-up">0 B/s</strong>
            <div class="muted small" id="total-up"></div></div>
        </div>
        <canvas id="rate-chart" class="chart" aria-label="download and upload rates over the last minutes"></canvas>
        <div class="muted small axis"><span id="chart-from">1 min ago</span><span id="chart-max"></span><span>now</span></div>
      </div>
      <div class="card">
        <h2>Pieces</h2>
        <canvas id="piece-map" class="map" aria-label="piece map"></canvas>
        <div class="legend">
          <span><span class="key verified"></span>verified <b id="n-verified">0</b></span>
          <span><span class="key inflight"></span>in flight <b id="n-inflight">0</b></span>
          <span><span class="key missing"></span>missing <b id="n-missing">0</b></span>
        </div>
        <div class="muted small" id="map-scale"></div>
      </div>
    </div>

    <div class="card">
      <h2>Peers <span id="peer-count" class="count"></span></h2>
      <table id="peers">
        <thead><tr><th>Address</th><th>Direction</th><th class="n">Has</th>
          <th class="n">Download</th><th class="n">Upload</th><th>State</th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="no-peers" class="muted">No peers connected.</p>
    </div>
  </section>

  <section id="tracker" hidden>
    <div class="card head">
      <div class="title-row"><h1>Tracker</h1><span class="badge">tracker</span></div>
      <div class="meta" id="tracker-totals"></div>
    </div>
    <div class="card">
      <h2>Swarms</h2>
      <table id="swarms">
        <thead><tr><th>File</th><th class="n">Seeders</th><th class="n">Downloading</th>
          <th class="n">Completed</th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="no-swarms" class="muted">Nothing is being shared through this tracker yet.</p>
      <p class="muted small">Names are given by the peers and are not verified.</p>
    </div>
  </section>

  <section id="events-card" class="card" hidden>
    <h2>Recent events</h2>
    <ol id="events" class="events"></ol>
    <p id="no-events" class="muted">Nothing has happened yet.</p>
  </section>
</main>
<footer class="muted small">Read-only view served by p2p-share itself; it updates twice a second.</footer>
<script src="/app.js" defer></script>
</body>
</html>
`;

/** The style sheet: system fonts, no external resources. */
export const PAGE_CSS = `:root {
  --fg: #1d2330; --muted: #667085; --bg: #f4f6f9; --card: #fff; --line: #e4e7ec;
  --verified: #2f9e5a; --inflight: #f0a030; --missing: #dfe3e8; --down: #2f6fde; --up: #c2417f;
  --bad: #c8372d; --warn: #b76e00;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
.top { display: flex; justify-content: space-between; align-items: center; padding: .7rem 1.5rem;
  background: #1d2330; color: #fff; }
.brand { font-weight: 600; letter-spacing: .02em; }
.top .muted { color: #aab2c0; font-weight: 400; }
.conn { display: flex; align-items: center; gap: .45rem; font-size: .9em; color: #d0d5dd; }
.dot { width: .6rem; height: .6rem; border-radius: 50%; background: #98a2b3; display: inline-block; }
body[data-conn="live"] .dot { background: #3ccf7a; }
body[data-conn="reconnecting"] .dot { background: var(--inflight); }
body[data-conn="stopped"] .dot { background: #98a2b3; }
main { max-width: 72rem; margin: 1rem auto; padding: 0 1rem; }
footer { max-width: 72rem; margin: 0 auto 1.5rem; padding: 0 1rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 1rem 1.2rem; margin-bottom: 1rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 1rem; }
.grid .card { margin-bottom: 0; }
.grid { margin-bottom: 1rem; }
h1 { font-size: 1.35rem; margin: 0; word-break: break-all; }
h2 { font-size: 1rem; margin: 0 0 .7rem; }
.title-row { display: flex; align-items: center; gap: .7rem; flex-wrap: wrap; }
.meta { color: var(--muted); margin-top: .3rem; }
code { font: .85em ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; word-break: break-all; }
.badge { font-size: .75rem; text-transform: uppercase; letter-spacing: .06em; padding: .15rem .5rem;
  border-radius: 999px; background: #e8eefc; color: #2f4f9e; }
.badge.done { background: #e3f5ea; color: #1f7a45; }
.muted { color: var(--muted); }
.small { font-size: .85em; }
.waiting { color: var(--muted); }
.progress-row { display: flex; align-items: baseline; gap: 1.2rem; flex-wrap: wrap; }
.pct { font-size: 2.4rem; font-weight: 650; font-variant-numeric: tabular-nums; }
.bar { height: .7rem; background: var(--missing); border-radius: 999px; overflow: hidden;
  margin-top: .6rem; }
.bar-fill { height: 100%; width: 0; background: var(--verified); }
.summary { border-color: #9fd8b4; background: #f1fbf5; }
.summary h2 { color: #1f7a45; font-size: 1.1rem; }
.summary p { margin: 0; }
.rates { display: flex; gap: 2rem; margin-bottom: .6rem; flex-wrap: wrap; }
.rates strong { font-variant-numeric: tabular-nums; margin-left: .3rem; }
.key { display: inline-block; width: .75rem; height: .75rem; border-radius: 2px;
  margin-right: .35rem; vertical-align: -1px; }
.key.down { background: var(--down); } .key.up { background: var(--up); }
.key.verified { background: var(--verified); } .key.inflight { background: var(--inflight); }
.key.missing { background: var(--missing); }
canvas { display: block; width: 100%; }
canvas.chart { height: 150px; }
.axis { display: flex; justify-content: space-between; margin-top: .2rem; }
.legend { display: flex; gap: 1.2rem; flex-wrap: wrap; margin-top: .6rem; }
.legend b { font-variant-numeric: tabular-nums; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .85em; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.count { color: var(--muted); font-weight: 400; }
.tag { display: inline-block; font-size: .75rem; padding: 0 .4rem; border-radius: 4px;
  background: #eef0f3; color: #475467; margin-right: .25rem; }
.tag.on { background: #fdf0dc; color: #8a5300; }
.events { list-style: none; margin: 0; padding: 0; max-height: 22rem; overflow-y: auto; }
.events li { padding: .3rem 0; border-bottom: 1px solid var(--line); display: flex; gap: .7rem; }
.events time { color: var(--muted); font-variant-numeric: tabular-nums; flex: none; }
.events .what { font-weight: 600; flex: none; }
.events .detail { color: #344054; word-break: break-all; }
.events li.bad .what { color: var(--bad); }
.events li.warn .what { color: var(--warn); }
.events li.good .what { color: var(--verified); }
`;
