/// <reference lib="dom" />
/**
 * @module web/page_script
 * The monitor page's script, written as a type-checked function and embedded into
 * {@linkcode PAGE_SCRIPT} by its source text (so a compiled binary carries it and the page
 * loads nothing from elsewhere). It runs in the browser, never in Deno: it listens to the
 * event stream, keeps the piece states (full map, then deltas), and redraws only what
 * changed, at most once per animation frame. Pure: constants only, on the Deno side.
 *
 * `monitorApp` must stay self-contained: it may use browser globals and its parameter, and
 * nothing else from this module (its text is all the page gets).
 */

import { applyPieceMap } from "./piece_map.ts";
import type {
  HelloMessage,
  MonitorView,
  RateSample,
  ShareView,
  SnapshotMessage,
  StampedEvent,
  TickMessage,
  TrackerView,
} from "./view.ts";

/** Seconds of rate history the chart shows. */
const CHART_WINDOW_SEC = 300;

function monitorApp(decodeMap: typeof applyPieceMap, chartWindowSec: number): void {
  const byId = <T extends HTMLElement = HTMLElement>(id: string): T => {
    const el = document.getElementById(id);
    if (el === null) throw new Error(`page element #${id} is missing`);
    return el as T;
  };
  const setText = (id: string, text: string): void => {
    const el = byId(id);
    if (el.textContent !== text) el.textContent = text;
  };
  const make = (tag: string, text?: string, className?: string): HTMLElement => {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (className !== undefined) el.className = className;
    return el;
  };

  // ---- formatting (binary units, as the terminal output)
  const fmtBytes = (bytes: number): string => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1023.95 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return unit === 0
      ? `${Math.round(bytes)} B`
      : `${value.toFixed(value < 9.995 ? 2 : 1)} ${units[unit]}`;
  };
  const fmtRate = (bytesPerSec: number): string => `${fmtBytes(bytesPerSec)}/s`;
  const fmtDuration = (seconds: number): string => {
    if (!Number.isFinite(seconds) || seconds < 0) return "--";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  };
  const fmtClock = (ms: number): string => {
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()]
      .map((n) => String(n).padStart(2, "0"))
      .join(":");
  };
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;

  // ---- state
  let view: MonitorView | null = null;
  let states: Uint8Array | undefined;
  let history: RateSample[] = [];
  let events: StampedEvent[] = [];
  let summary: StampedEvent | null = null;
  const dirty = { view: false, map: false, chart: false, events: false };
  let frameRequested = false;

  const schedule = (): void => {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(() => {
      frameRequested = false;
      render();
    });
  };

  const setConn = (state: string, text: string): void => {
    document.body.dataset.conn = state;
    setText("conn-text", text);
  };

  // ---- applying messages
  const applyView = (next: MonitorView, t: number): void => {
    if (next.role !== "tracker") {
      const share = next as ShareView;
      if (share.pieceMap !== undefined) {
        states = decodeMap(share.pieceMap, share.piecesTotal, { base: states });
        dirty.map = true;
      }
      history.push([t, share.downloadRateBytesPerSec, share.uploadRateBytesPerSec]);
      dirty.chart = true;
    }
    view = next;
    dirty.view = true;
  };

  const trimHistory = (now: number): void => {
    const from = now - chartWindowSec - 5;
    let drop = 0;
    while (drop < history.length && history[drop][0] < from) drop++;
    if (drop > 0) history = history.slice(drop);
  };

  const onHello = (msg: HelloMessage): void => {
    states = undefined;
    history = msg.history.slice();
    events = msg.events.slice();
    summary = msg.summary;
    view = null;
    if (msg.view !== null) applyView(msg.view, msg.t);
    history = msg.history.slice(); // the hello snapshot's own sample is already in it
    trimHistory(msg.t);
    Object.assign(dirty, { view: true, map: true, chart: true, events: true });
    setConn("live", "live");
  };

  const onSnapshot = (msg: SnapshotMessage): void => {
    applyView(msg.view, msg.t);
    trimHistory(msg.t);
  };

  const onTick = (msg: TickMessage): void => {
    if (view !== null && view.role !== "tracker") {
      history.push([msg.t, view.downloadRateBytesPerSec, view.uploadRateBytesPerSec]);
      trimHistory(msg.t);
      dirty.chart = true;
    }
  };

  const onEvent = (msg: StampedEvent): void => {
    events.push(msg);
    if (events.length > 100) events.shift();
    if (msg.event.event === "complete") summary = msg;
    dirty.events = true;
    dirty.view = true;
  };

  // ---- drawing
  const canvasContext = (
    canvas: HTMLCanvasElement,
    cssHeight: number,
  ): CanvasRenderingContext2D | null => {
    const ratio = Math.max(1, Math.min(3, globalThis.devicePixelRatio || 1));
    const cssWidth = Math.max(50, Math.floor(canvas.clientWidth || 300));
    const width = Math.round(cssWidth * ratio);
    const height = Math.round(cssHeight * ratio);
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    canvas.style.height = `${cssHeight}px`;
    const ctx = canvas.getContext("2d");
    if (ctx === null) return null;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    return ctx;
  };

  const COLORS = { verified: [47, 158, 90], inflight: [240, 160, 48], missing: [223, 227, 232] };
  const rgb = (c: number[]): string => `rgb(${c[0]},${c[1]},${c[2]})`;
  const mix = (a: number[], b: number[], f: number): number[] =>
    a.map((v, i) => Math.round(v + (b[i] - v) * f));

  const drawPieceMap = (share: ShareView): void => {
    const canvas = byId<HTMLCanvasElement>("piece-map");
    const n = share.piecesTotal;
    const cssWidth = Math.max(50, Math.floor(canvas.clientWidth || 300));
    const maxHeight = 220;
    // The biggest square cells that fit; past one piece per 4-pixel cell, cells aggregate.
    let cell = 4;
    for (const size of [24, 20, 16, 14, 12, 10, 8, 6, 5, 4]) {
      const cols = Math.floor(cssWidth / size);
      if (Math.ceil(n / cols) * size <= maxHeight) {
        cell = size;
        break;
      }
    }
    const cols = Math.max(1, Math.floor(cssWidth / cell));
    const maxCells = cols * Math.floor(maxHeight / cell);
    const perCell = n > maxCells ? Math.ceil(n / maxCells) : 1;
    const cells = Math.ceil(n / perCell);
    const rows = Math.max(1, Math.ceil(cells / cols));
    const ctx = canvasContext(canvas, rows * cell);
    let verified = 0;
    let inFlight = 0;
    const gap = cell >= 6 ? 1 : 0;
    for (let c = 0; c < cells; c++) {
      const start = c * perCell;
      const end = Math.min(n, start + perCell);
      let v = 0;
      let f = 0;
      for (let i = start; i < end; i++) {
        const s = states ? states[i] : 0;
        if (s === 2) v++;
        else if (s === 1) f++;
      }
      verified += v;
      inFlight += f;
      if (ctx === null) continue;
      const color = f > 0
        ? COLORS.inflight
        : mix(COLORS.missing, COLORS.verified, v / (end - start));
      ctx.fillStyle = rgb(color);
      ctx.fillRect((c % cols) * cell, Math.floor(c / cols) * cell, cell - gap, cell - gap);
    }
    canvas.dataset.verified = String(verified);
    canvas.dataset.inFlight = String(inFlight);
    canvas.dataset.perCell = String(perCell);
    setText("n-verified", String(verified));
    setText("n-inflight", String(inFlight));
    setText("n-missing", String(n - verified - inFlight));
    setText(
      "map-scale",
      n === 0
        ? "This share has no pieces."
        : `${plural(n, "piece")} of ${fmtBytes(share.pieceLength)}; ${
          perCell === 1 ? "one square per piece" : `one square per ${perCell} pieces`
        }`,
    );
  };

  // A round top for the chart in binary units: 1, 2, 5, 10, 20, 50... KiB/s, MiB/s, GiB/s.
  const niceCeiling = (value: number): number => {
    let unit = 1;
    while (value / unit >= 1000 && unit < 1024 ** 4) unit *= 1024;
    for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500]) {
      if (value <= step * unit) return step * unit;
    }
    return 1024 * unit;
  };

  const drawChart = (): void => {
    const canvas = byId<HTMLCanvasElement>("rate-chart");
    const height = 150;
    const ctx = canvasContext(canvas, height);
    if (ctx === null || history.length === 0) return;
    const width = Math.max(50, Math.floor(canvas.clientWidth || 300));
    const now = history[history.length - 1][0];
    // The window grows with the history, from one minute up to the full span kept.
    const span = Math.min(chartWindowSec, Math.max(60, now - history[0][0]));
    const from = now - span;
    setText(
      "chart-from",
      span >= 90 ? `${Math.round(span / 60)} min ago` : `${Math.round(span)} s ago`,
    );
    let peak = 0;
    for (const [t, down, up] of history) if (t >= from) peak = Math.max(peak, down, up);
    const top = niceCeiling(Math.max(peak, 1024));
    setText("chart-max", `scale ${fmtRate(top)}`);
    const x = (t: number) => ((t - from) / span) * width;
    const y = (rate: number) => height - 2 - (rate / top) * (height - 6);
    ctx.strokeStyle = "#eef0f3";
    ctx.lineWidth = 1;
    for (const f of [0.25, 0.5, 0.75, 1]) {
      ctx.beginPath();
      ctx.moveTo(0, Math.round(y(top * f)) + 0.5);
      ctx.lineTo(width, Math.round(y(top * f)) + 0.5);
      ctx.stroke();
    }
    const line = (index: 1 | 2, color: string, fill: string | null): void => {
      const points = history.filter((s) => s[0] >= from);
      if (points.length === 0) return;
      ctx.beginPath();
      points.forEach((
        s,
        i,
      ) => (i === 0 ? ctx.moveTo(x(s[0]), y(s[index])) : ctx.lineTo(x(s[0]), y(s[index]))));
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.stroke();
      if (fill !== null) {
        ctx.lineTo(x(points[points.length - 1][0]), height);
        ctx.lineTo(x(points[0][0]), height);
        ctx.closePath();
        ctx.fillStyle = fill;
        ctx.fill();
      }
    };
    line(1, "#2f6fde", "rgba(47,111,222,0.12)");
    line(2, "#c2417f", null);
  };

  // ---- the share view
  const renderShare = (share: ShareView): void => {
    byId("share").hidden = false;
    byId("tracker").hidden = true;
    const seeding = share.role === "seed";
    setText("name", share.name);
    const role = byId("role");
    role.textContent = seeding ? "seeding" : share.complete ? "complete" : "downloading";
    role.className = share.complete ? "badge done" : "badge";
    setText("size", fmtBytes(share.bytesTotal));
    setText("layout", `${plural(share.piecesTotal, "piece")} of ${fmtBytes(share.pieceLength)}`);
    setText("hash", share.infoHash);
    const fraction = share.bytesTotal > 0
      ? share.bytesDone / share.bytesTotal
      : (share.complete ? 1 : 0);
    // Never round up to 100% before the last piece is in.
    const pct = share.complete ? 100 : Math.min(99.9, Math.floor(fraction * 1000) / 10);
    setText("pct", `${pct.toFixed(1)}%`);
    byId("bar-fill").style.width = `${pct}%`;
    setText(
      "bytes-line",
      `${fmtBytes(share.bytesDone)} of ${
        fmtBytes(share.bytesTotal)
      } \u00b7 ${share.piecesDone}/${share.piecesTotal} pieces`,
    );
    setText(
      "eta-line",
      share.complete
        ? (seeding ? "holding every piece, serving it to others" : "every piece is verified")
        : `ETA ${share.etaSeconds === null ? "--" : fmtDuration(share.etaSeconds)}`,
    );
    setText("rate-down", fmtRate(share.downloadRateBytesPerSec));
    setText("rate-up", fmtRate(share.uploadRateBytesPerSec));
    setText("total-down", `${fmtBytes(share.bytesDownloaded)} received`);
    setText("total-up", `${fmtBytes(share.bytesUploaded)} sent`);
    document.title = `${pct.toFixed(1)}% ${share.name} \u2014 p2p-share`;

    const summaryCard = byId("summary");
    summaryCard.hidden = !(share.complete && !seeding);
    if (!summaryCard.hidden) {
      const done = summary?.event;
      if (done !== undefined) {
        const seconds = Number(done.seconds);
        const bytesFetched = Number(done.bytesFetched);
        const rate = seconds > 0 && bytesFetched > 0
          ? `, ${fmtRate(bytesFetched / seconds)} on average`
          : "";
        setText(
          "summary-text",
          `${share.name} (${
            fmtBytes(share.bytesTotal)
          }): fetched ${done.piecesFetched} of ${done.piecesTotal} pieces in ${
            fmtDuration(seconds)
          }${rate}; saved to ${done.path}. Uploaded ${
            fmtBytes(share.bytesUploaded)
          } to other peers.`,
        );
      } else {
        setText(
          "summary-text",
          `${share.name} (${
            fmtBytes(share.bytesTotal)
          }): all ${share.piecesTotal} pieces verified. Received ${
            fmtBytes(share.bytesDownloaded)
          }, sent ${fmtBytes(share.bytesUploaded)}.`,
        );
      }
    }

    setText(
      "peer-count",
      share.peerCount > share.peers.length
        ? `(${share.peerCount}, busiest ${share.peers.length} shown)`
        : `(${share.peerCount})`,
    );
    byId("no-peers").hidden = share.peers.length > 0;
    const body = document.createElement("tbody");
    for (const p of share.peers) {
      const tr = document.createElement("tr");
      tr.dataset.address = p.address;
      tr.append(
        make("td", p.address),
        make("td", p.direction === "in" ? "incoming" : "outgoing"),
        make(
          "td",
          share.piecesTotal > 0
            ? `${p.piecesHeld} (${Math.floor((100 * p.piecesHeld) / share.piecesTotal)}%)`
            : String(p.piecesHeld),
          "n",
        ),
        make("td", fmtRate(p.downloadRateBytesPerSec), "n"),
        make("td", fmtRate(p.uploadRateBytesPerSec), "n"),
      );
      const flags = make("td");
      const tag = (on: boolean, yes: string, no: string) =>
        flags.append(make("span", on ? yes : no, on ? "tag on" : "tag"));
      tag(p.choked, "choked", "unchoked");
      tag(p.chokingUs, "choking us", "serving us");
      if (p.interested) flags.append(make("span", "interested", "tag"));
      tr.append(flags);
      body.append(tr);
    }
    byId("peers").querySelector("tbody")?.replaceWith(body);

    document.body.dataset.role = share.role;
    document.body.dataset.piecesDone = String(share.piecesDone);
    document.body.dataset.complete = String(share.complete);
  };

  // ---- the tracker view
  const renderTracker = (tracker: TrackerView): void => {
    byId("share").hidden = true;
    byId("tracker").hidden = false;
    setText(
      "tracker-totals",
      `${plural(tracker.swarmCount, "shared file")}, ${
        plural(tracker.seeders, "seeder")
      }, ${tracker.leechers} downloading`,
    );
    byId("no-swarms").hidden = tracker.swarms.length > 0;
    const body = document.createElement("tbody");
    for (const s of tracker.swarms) {
      const tr = document.createElement("tr");
      tr.dataset.infoHash = s.infoHash;
      const file = make("td");
      if (s.name !== undefined) file.append(make("div", s.name, "swarm-name"));
      file.append(make("code", s.infoHash, "muted"));
      tr.append(
        file,
        make("td", String(s.seeders), "n"),
        make("td", String(s.leechers), "n"),
        make("td", String(s.completed), "n"),
      );
      body.append(tr);
    }
    byId("swarms").querySelector("tbody")?.replaceWith(body);
    document.title = `Tracker (${plural(tracker.swarmCount, "file")}) \u2014 p2p-share`;
    document.body.dataset.role = "tracker";
    document.body.dataset.swarms = String(tracker.swarmCount);
  };

  // ---- the events list
  const describe = (e: StampedEvent["event"]): { what: string; detail: string; tone: string } => {
    const s = (
      key: string,
    ): string => (e[key] === undefined || e[key] === null ? "" : String(e[key]));
    switch (e.event) {
      case "peer_connected":
        return {
          what: "peer joined",
          detail: `${s("peer")} (${e.direction === "in" ? "incoming" : "outgoing"})`,
          tone: "",
        };
      case "peer_disconnected":
        return { what: "peer left", detail: `${s("peer")}: ${s("reason")}`, tone: "" };
      case "peer_banned":
        return {
          what: "peer banned",
          detail: `${s("peer")}${e.reason ? `: ${s("reason")}` : ""}`,
          tone: "bad",
        };
      case "piece_failed":
        return {
          what: "piece failed verification",
          detail: `piece ${s("index")} from ${s("peer")}`,
          tone: "bad",
        };
      case "complete":
        return {
          what: "download complete",
          detail: `${fmtBytes(Number(e.bytes))} in ${fmtDuration(Number(e.seconds))} \u2192 ${
            s("path")
          }`,
          tone: "good",
        };
      case "file_complete":
        return {
          what: "file complete",
          detail: `${s("file")} (${fmtBytes(Number(e.bytes))})`,
          tone: "good",
        };
      case "started":
        return {
          what: "download started",
          detail: `${s("piecesNeeded")} of ${s("piecesTotal")} pieces to fetch`,
          tone: "",
        };
      case "serving":
        return {
          what: "serving",
          detail: `${s("name")} on ${s("host")}:${s("port")}`,
          tone: "good",
        };
      case "listening":
        return {
          what: `listening (${s("service")})`,
          detail: s("url") || `${s("host")}:${s("port")}`,
          tone: "",
        };
      case "ingested":
        return {
          what: "ingested",
          detail: `${s("pieces")}/${s("piecesTotal")} pieces from ${s("source")}`,
          tone: "",
        };
      case "rechecking":
        return { what: "rechecking", detail: `${s("path")}: ${s("reason")}`, tone: "warn" };
      case "warning":
        return { what: "warning", detail: s("message"), tone: "warn" };
      case "error":
        return { what: "error", detail: s("message"), tone: "bad" };
      case "info":
        return { what: "info", detail: s("message"), tone: "" };
      default: {
        const rest = Object.entries(e)
          .filter(([k]) => k !== "event")
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        return { what: String(e.event).replaceAll("_", " "), detail: rest, tone: "" };
      }
    }
  };

  const renderEvents = (): void => {
    // A tracker has little to tell: its card appears only once there is something.
    byId("events-card").hidden = events.length === 0 && view?.role === "tracker";
    byId("no-events").hidden = events.length > 0;
    const list = document.createElement("ol");
    list.id = "events";
    list.className = "events";
    for (let i = events.length - 1; i >= 0 && i >= events.length - 50; i--) {
      const { time, event } = events[i];
      const { what, detail, tone } = describe(event);
      const li = make("li", undefined, tone);
      li.dataset.event = event.event;
      li.append(
        make("time", fmtClock(time)),
        make("span", what, "what"),
        make("span", detail, "detail"),
      );
      list.append(li);
    }
    byId("events").replaceWith(list);
  };

  const render = (): void => {
    if (view === null) return;
    byId("waiting").hidden = true;
    if (dirty.view) {
      if (view.role === "tracker") renderTracker(view);
      else renderShare(view);
    }
    if (view.role !== "tracker") {
      if (dirty.map || dirty.view) drawPieceMap(view);
      if (dirty.chart) drawChart();
    }
    if (dirty.events) renderEvents();
    Object.assign(dirty, { view: false, map: false, chart: false, events: false });
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered ?? "0") + 1);
  };

  // Redraw the canvases when the window changes size.
  addEventListener("resize", () => {
    dirty.map = true;
    dirty.chart = true;
    schedule();
  });

  // ---- the stream
  const token = new URLSearchParams(location.search).get("token");
  const eventsUrl = `/events${token === null ? "" : `?token=${encodeURIComponent(token)}`}`;
  let source: EventSource | null = null;
  let stopped = false;

  const handle = <T>(fn: (msg: T) => void) => (e: Event): void => {
    try {
      fn(JSON.parse((e as MessageEvent<string>).data) as T);
      schedule();
    } catch {
      // Out of step (a delta that does not apply) or garbled: start again from a fresh hello,
      // after a pause so that a page that keeps failing does not spin.
      source?.close();
      setConn("reconnecting", "resynchronising...");
      setTimeout(connect, 1000);
    }
  };

  const connect = (): void => {
    source?.close();
    const es = new EventSource(eventsUrl);
    source = es;
    es.addEventListener("hello", handle(onHello));
    es.addEventListener("snapshot", handle(onSnapshot));
    es.addEventListener("tick", handle(onTick));
    es.addEventListener("p2p", handle(onEvent));
    es.addEventListener("bye", () => {
      stopped = true;
      es.close();
      setConn("stopped", "stopped: the program has finished; this is its last state");
      document.body.dataset.stopped = "true";
    });
    es.addEventListener("error", () => {
      if (stopped) return;
      if (es.readyState === EventSource.CLOSED) {
        setConn("stopped", "disconnected (reload to try again)");
      } else {
        setConn("reconnecting", "reconnecting...");
      }
    });
  };
  connect();
}

/** The page's script: the app function's source text, called with the piece map decoder. */
export const PAGE_SCRIPT = `"use strict";
(${monitorApp.toString()})(${applyPieceMap.toString()}, ${CHART_WINDOW_SEC});
`;
