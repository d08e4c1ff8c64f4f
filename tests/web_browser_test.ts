/// <reference lib="dom" />
/**
 * The web monitor in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by
 * `npm:puppeteer-core`): the tracker page of a real `tracker --web` child, the token rule when
 * bound off loopback, and a share page fed by a fake snapshot source that the test moves on
 * only once the page has drawn the previous state (observed with `waitForFunction`, never a
 * sleep). Every wait has a timeout. Screenshots go to the test's temp folder and to
 * /tmp/p2p-share-screens/.
 *
 * The leak sanitizers stay on: see {@linkcode closeBrowser} for how the browser is stopped
 * without leaving puppeteer-core's timer behind.
 */

import assert from "node:assert/strict";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { startWebMonitor } from "../lib/cli/web.ts";
import type { EventSink, P2PEvent } from "../lib/events.ts";
import {
  createMeta,
  type JsonEvent,
  perms,
  randomFile,
  type RunningCli,
  spawnCli,
  startSeeder,
  type TempDir,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { fetchText, randomHex } from "./tracker_kit.ts";
import { fakePeer, FakeShare } from "./web_kit.ts";

const CHROMIUM = "/usr/bin/chromium";
/** The launch flags our build machines need (see DENO-NOTES.md, "Browser tests"). */
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-dev-shm-usage",
];
/** Where the screenshots are copied for people to look at. */
const SCREENS_DIR = "/tmp/p2p-share-screens";
/** Limit for one page load or one wait on the page. */
const PAGE_TIMEOUT_MS = 10_000;
/** Limit for a child to print its `listening` events. */
const LISTEN_TIMEOUT_MS = 15_000;

/** Runs `fn` with a fresh headless Chromium (own profile in `dir`), closed afterwards. */
async function withBrowser<T>(dir: TempDir, fn: (browser: Browser) => Promise<T>): Promise<T> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(
      `${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); .ci/run does`,
    );
  }
  // Chromium keeps a singleton socket folder in TMPDIR, which a killed Chromium leaves
  // behind: it goes into the test's own folder, removed with it.
  const tmp = dir.join("chromium-tmp");
  await Deno.mkdir(tmp, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_FLAGS, `--user-data-dir=${dir.join("chromium-profile")}`],
    env: { ...Deno.env.toObject(), TMPDIR: tmp },
    defaultViewport: { width: 1200, height: 900 },
    timeout: 30_000,
    protocolTimeout: 30_000,
  });
  try {
    return await fn(browser);
  } finally {
    await closeBrowser(browser);
  }
}

/**
 * Stops Chromium. Not with `browser.close()`: puppeteer-core then starts a 100 ms timer per
 * page (it waits for a frame swap) that outlives the test, and Deno 2.9 reports that timer as a
 * leak even with the ops sanitizer off for the test (the resources sanitizer counts timers
 * too). Disconnecting first and then killing Chromium's process group (puppeteer starts it
 * detached, as the group leader) ends everything at once and keeps both sanitizers on.
 */
async function closeBrowser(browser: Browser): Promise<void> {
  const proc = browser.process();
  const pid = proc?.pid;
  if (proc === null || pid === undefined) {
    await browser.close();
    return;
  }
  const exited = proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  await browser.disconnect();
  try {
    Deno.kill(-pid, "SIGKILL");
  } catch {
    proc.kill("SIGKILL");
  }
  await waitFor(exited, 10_000, "chromium to exit");
}

/** Saves a full-page screenshot in the temp folder and copies it to /tmp/p2p-share-screens. */
async function screenshot(page: Page, dir: TempDir, name: string): Promise<string> {
  const path = dir.join(name);
  await page.screenshot({ path: path as `${string}.png`, fullPage: true });
  await Deno.mkdir(SCREENS_DIR, { recursive: true });
  await Deno.copyFile(path, `${SCREENS_DIR}/${name}`);
  return path;
}

/** Waits until `fn(arg)` is truthy in the page. */
async function waitInPage<A extends string | number | null>(
  page: Page,
  what: string,
  fn: (arg: A) => boolean,
  arg: A,
) {
  try {
    // A plain value in, a plain value out: puppeteer's handle types add nothing here.
    const check = fn as (arg: string | number | null) => boolean;
    await page.waitForFunction(check, { timeout: PAGE_TIMEOUT_MS, polling: "mutation" }, arg);
  } catch (err) {
    const state = await page.evaluate(() => JSON.stringify(document.body.dataset)).catch(() => "?");
    throw new Error(`page never showed ${what} (body data: ${state}): ${(err as Error).message}`);
  }
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

/** SIGTERM, then the exit (SIGKILL after 10 s). */
async function stopChild(running: RunningCli) {
  killQuietly(running.child, "SIGTERM");
  const timer = setTimeout(() => killQuietly(running.child, "SIGKILL"), 10_000);
  try {
    return await running.finished();
  } finally {
    clearTimeout(timer);
  }
}

/** The `listening` event of `service` from a `--json` child. */
function listening(running: RunningCli, service: string): Promise<JsonEvent> {
  return running.log.next("listening", {
    match: (e) => e.service === service,
    timeoutMs: LISTEN_TIMEOUT_MS,
    what: `the ${service} listening event`,
  });
}

/** Announces a peer to the tracker at `base`, as a seeder or peer would. */
async function announce(
  base: string,
  params: { infoHash: string; port: number; left: number; event?: string; name?: string },
): Promise<void> {
  const query = new URLSearchParams({
    info_hash: params.infoHash,
    peer_id: randomHex(40),
    port: String(params.port),
    left: String(params.left),
    event: params.event ?? "started",
    ...(params.name === undefined ? {} : { name: params.name }),
  });
  const answer = await fetchText(`${base}/announce?${query}`);
  assert.equal(answer.status, 200, answer.text);
}

/** The cells of the tracker page's row for `infoHash`. */
function swarmRow(page: Page, infoHash: string): Promise<string[]> {
  return page.$eval(
    `tr[data-info-hash="${infoHash}"]`,
    (tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? ""),
  );
}

Deno.test({
  name: "tracker --web: the page lists every swarm live and stops cleanly with the tracker",
  async fn() {
    await using dir = await tempDir("p2p_web_");
    const tracker = spawnCli(
      ["tracker", "--host", "127.0.0.1", "--port", "0", "--web", "127.0.0.1:0", "--json"],
      { perms: ["--allow-net=127.0.0.1"] },
    );
    try {
      const base = `http://127.0.0.1:${(await listening(tracker, "tracker")).port}`;
      const web = await listening(tracker, "web");
      assert.equal(web.host, "127.0.0.1");
      const url = String(web.url);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, "loopback: no token in the URL");

      const video = randomHex(64);
      await announce(base, { infoHash: video, port: 6001, left: 0, name: "holiday-video.mkv" });
      await announce(base, { infoHash: video, port: 6002, left: 1000 });
      await announce(base, { infoHash: video, port: 6003, left: 0, event: "completed" });

      await withBrowser(dir, async (browser) => {
        const page = await browser.newPage();
        const res = await page.goto(url, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        assert.equal(res?.status(), 200);
        await waitInPage(
          page,
          "the announced swarm",
          (hash) => document.querySelector(`tr[data-info-hash="${hash}"]`) !== null,
          video,
        );
        const [file, seeders, leechers, completed] = await swarmRow(page, video);
        assert.match(file, /holiday-video\.mkv/);
        assert.ok(file.includes(video));
        assert.deepEqual([seeders, leechers, completed], ["2", "1", "1"]);

        // A swarm announced while the page is open appears without a reload.
        const iso = randomHex(64);
        await announce(base, { infoHash: iso, port: 6004, left: 0, name: "debian-13.iso" });
        await announce(base, { infoHash: iso, port: 6005, left: 5 });
        await waitInPage(
          page,
          "the second swarm, live",
          (hash) => document.querySelector(`tr[data-info-hash="${hash}"]`) !== null,
          iso,
        );
        assert.deepEqual((await swarmRow(page, iso)).slice(1), ["1", "1", "0"]);
        assert.match(
          await page.$eval("#tracker-totals", (el) => el.textContent ?? ""),
          /2 shared files, 3 seeders, 2 downloading/,
        );
        await screenshot(page, dir, "tracker.png");

        // Stopping the tracker with the page still open: the event stream must not hold it up.
        const result = await stopChild(tracker);
        assert.equal(result.code, 0, result.stderr);
        await waitInPage(
          page,
          "that the program stopped",
          () => document.body.dataset.conn === "stopped",
          null,
        );
      });
    } finally {
      await stopChild(tracker);
    }
  },
});

Deno.test({
  name: "--web bound off loopback answers 401 without the token, and serves the page with it",
  async fn() {
    await using dir = await tempDir("p2p_web_");
    // The rule depends on the bind address: bind everywhere, connect through loopback.
    const tracker = spawnCli(
      ["tracker", "--host", "127.0.0.1", "--port", "0", "--web", "0.0.0.0:0", "--json"],
      { perms: ["--allow-net=127.0.0.1,0.0.0.0"] },
    );
    try {
      const web = await listening(tracker, "web");
      assert.equal(web.host, "0.0.0.0");
      const url = new URL(String(web.url));
      const token = url.searchParams.get("token") ?? "";
      assert.match(token, /^[A-Za-z0-9_-]{32}$/, "a random token, printed in the URL");
      const plain = `http://127.0.0.1:${web.port}/`;

      for (const path of ["", "events", "snapshot", "app.js", `?token=${token.slice(1)}`]) {
        const answer = await fetchText(`${plain}${path}`);
        assert.equal(answer.status, 401, `/${path}`);
      }

      await withBrowser(dir, async (browser) => {
        const page = await browser.newPage();
        const refused = await page.goto(plain, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        assert.equal(refused?.status(), 401);
        assert.match(await page.content(), /needs its token/);
        await screenshot(page, dir, "web-401.png");

        const good = await page.goto(`${plain}?token=${token}`, {
          waitUntil: "load",
          timeout: PAGE_TIMEOUT_MS,
        });
        assert.equal(good?.status(), 200);
        await waitInPage(
          page,
          "the live tracker view",
          () => document.body.dataset.role === "tracker" && document.body.dataset.conn === "live",
          null,
        );

        // The cookie set by that first request now carries the token, event stream included.
        const again = await page.goto(plain, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        assert.equal(again?.status(), 200);
        await waitInPage(
          page,
          "the live view through the cookie",
          () => document.body.dataset.role === "tracker" && document.body.dataset.conn === "live",
          null,
        );
      });
    } finally {
      const result = await stopChild(tracker);
      assert.equal(result.code, 0, result.stderr);
    }
  },
});

/** Events the program would send, collected. */
class Collect implements EventSink {
  readonly events: P2PEvent[] = [];
  emit(event: P2PEvent): void {
    this.events.push(event);
  }
}

/** What the share page shows, read in the page. */
interface ShownShare {
  pct: string;
  piecesDone: number;
  mapVerified: number;
  mapInFlight: number;
  greenPixels: number;
  peerRows: number;
  events: string[];
  complete: boolean;
  summaryShown: boolean;
  summary: string;
}

function readShare(page: Page): Promise<ShownShare> {
  return page.evaluate(() => {
    const canvas = document.getElementById("piece-map") as HTMLCanvasElement;
    const ctx = canvas.getContext("2d");
    let greenPixels = 0;
    if (ctx !== null && canvas.width > 0 && canvas.height > 0) {
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] === 47 && data[i + 1] === 158 && data[i + 2] === 90) greenPixels++;
      }
    }
    const summary = document.getElementById("summary");
    return {
      pct: document.getElementById("pct")?.textContent ?? "",
      piecesDone: Number(document.body.dataset.piecesDone),
      mapVerified: Number(canvas.dataset.verified),
      mapInFlight: Number(canvas.dataset.inFlight),
      greenPixels,
      peerRows: document.querySelectorAll("#peers tbody tr").length,
      events: [...document.querySelectorAll("#events li .what")].map((el) => el.textContent ?? ""),
      complete: document.body.dataset.complete === "true",
      summaryShown: summary !== null && !summary.hidden,
      summary: document.getElementById("summary-text")?.textContent ?? "",
    };
  });
}

Deno.test({
  name: "share page: progress rises, the piece map fills and the page shows completion",
  async fn() {
    await using dir = await tempDir("p2p_web_");
    const pieces = 1200;
    const share = new FakeShare(pieces, 256 * 1024);
    share.peers = [
      fakePeer("192.168.1.20:5001", {
        piecesHeld: pieces,
        downloadRateBytesPerSec: 6_200_000,
        choked: false,
        chokingUs: false,
      }),
      fakePeer("192.168.1.31:40112", {
        direction: "in",
        piecesHeld: 310,
        downloadRateBytesPerSec: 1_900_000,
        uploadRateBytesPerSec: 750_000,
        choked: false,
        interested: true,
      }),
      fakePeer("192.168.1.44:6881", { piecesHeld: 12, chokingUs: true, interested: true }),
    ];
    const sink = new Collect();
    const controller = new AbortController();
    const monitor = await startWebMonitor({
      listen: "127.0.0.1:0",
      source: share,
      signal: controller.signal,
      sink,
    });
    try {
      assert.match(monitor.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      assert.deepEqual(sink.events, [{
        event: "listening",
        host: "127.0.0.1",
        port: Number(new URL(monitor.url).port),
        service: "web",
        url: monitor.url,
      }]);

      await withBrowser(dir, async (browser) => {
        const page = await browser.newPage();
        const res = await page.goto(monitor.url, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        assert.equal(res?.status(), 200);

        const shown: ShownShare[] = [];
        const steps = [0, 150, 400, 700, 1000];
        for (const [i, done] of steps.entries()) {
          share.setDone(done, done === 0 ? 0 : 8);
          share.downloadRate = [0, 4_000_000, 7_500_000, 6_000_000, 8_100_000][i];
          share.uploadRate = [0, 200_000, 900_000, 750_000, 1_200_000][i];
          share.bytesDownloaded = done * share.pieceLength;
          share.bytesUploaded = i * 40 * share.pieceLength;
          if (i === 1) {
            monitor.events.emit({
              event: "peer_connected",
              peer: "192.168.1.20:5001",
              direction: "out",
            });
            monitor.events.emit({
              event: "peer_connected",
              peer: "192.168.1.31:40112",
              direction: "in",
            });
          }
          if (i === 3) {
            monitor.events.emit({
              event: "piece_failed",
              index: 733,
              peer: "192.168.1.44:6881",
              reason: "piece 733 from 192.168.1.44:6881 failed SHA-256 verification; discarded",
            });
            // Not an event kind yet: the page shows any event, this one with its own label.
            monitor.events.emit(
              {
                event: "peer_banned",
                peer: "192.168.1.44:6881",
                reason: "sent a bad piece",
              } as unknown as P2PEvent,
            );
          }
          await waitInPage(
            page,
            `${done} pieces done`,
            (n) => document.body.dataset.piecesDone === String(n),
            done,
          );
          shown.push(await readShare(page));
          if (i === 3) await screenshot(page, dir, "share-progress.png");
        }

        for (let i = 1; i < shown.length; i++) {
          const [before, after] = [shown[i - 1], shown[i]];
          assert.ok(
            parseFloat(after.pct) > parseFloat(before.pct),
            `${before.pct} -> ${after.pct}`,
          );
          assert.ok(after.greenPixels > before.greenPixels, "the piece map fills");
        }
        assert.equal(shown[0].pct, "0.0%");
        assert.equal(shown[0].greenPixels, 0);
        assert.deepEqual(shown.map((s) => s.mapVerified), steps);
        assert.equal(shown[2].mapInFlight, 8);
        assert.equal(shown[4].peerRows, 3);
        assert.equal(shown[4].complete, false);
        assert.equal(shown[4].summaryShown, false);
        assert.deepEqual(shown[4].events.slice(0, 4), [
          "peer banned",
          "piece failed verification",
          "peer joined",
          "peer joined",
        ]);

        share.setDone(pieces);
        share.downloadRate = 0;
        monitor.events.emit({
          event: "complete",
          path: "downloads/holiday-video.mkv",
          bytes: share.bytesTotal,
          piecesFetched: pieces,
          bytesFetched: share.bytesTotal,
          bytesDownloaded: share.bytesTotal,
          bytesUploaded: 160 * share.pieceLength,
          piecesTotal: pieces,
          seconds: 41.2,
        });
        await waitInPage(
          page,
          "completion",
          () => document.body.dataset.complete === "true",
          null,
        );
        const done = await readShare(page);
        assert.equal(done.pct, "100.0%");
        assert.equal(done.mapVerified, pieces);
        assert.ok(done.greenPixels > shown[4].greenPixels);
        assert.equal(done.summaryShown, true);
        assert.match(done.summary, /fetched 1200 of 1200 pieces in 41s/);
        assert.match(done.summary, /downloads\/holiday-video\.mkv/);
        assert.equal(done.events[0], "download complete");
        await screenshot(page, dir, "share-complete.png");

        // The program stops: the page keeps the last state and says so.
        controller.abort();
        await monitor.finished;
        await waitInPage(
          page,
          "that the program stopped",
          () => document.body.dataset.conn === "stopped",
          null,
        );
        assert.equal((await readShare(page)).complete, true);
      });
    } finally {
      controller.abort();
      await monitor.finished;
    }
  },
});

Deno.test({
  name: "share page: a 100,000-piece map stays readable, several pieces to a square",
  async fn() {
    await using dir = await tempDir("p2p_web_");
    const pieces = 100_000;
    const share = new FakeShare(pieces, 16 * 1024);
    share.setDone(0);
    // Rarest-first leaves a scattered map: a hard case for run-length encoding.
    for (let i = 0; i < pieces; i++) {
      if (((i * 2654435761) >>> 0) % 100 < 35) share.states[i] = 2;
      else if (i % 997 === 0) share.states[i] = 1;
    }
    const controller = new AbortController();
    const monitor = await startWebMonitor({
      listen: "127.0.0.1:0",
      source: share,
      signal: controller.signal,
      sink: new Collect(),
    });
    try {
      await withBrowser(dir, async (browser) => {
        const page = await browser.newPage();
        await page.goto(monitor.url, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        const first = share.piecesDone;
        await waitInPage(
          page,
          "the first map",
          (n) => document.body.dataset.piecesDone === String(n),
          first,
        );
        let shown = await readShare(page);
        assert.equal(shown.mapVerified, first);
        const perCell = await page.$eval(
          "#piece-map",
          (el) => Number((el as HTMLElement).dataset.perCell),
        );
        assert.ok(perCell > 1, `one square per ${perCell} pieces`);

        // A few more pieces arrive: they travel as a delta and the page keeps an exact count.
        for (let i = 50_000; i < 50_400; i++) share.states[i] = 2;
        const second = share.piecesDone;
        assert.ok(second > first);
        await waitInPage(
          page,
          "the updated map",
          (n) => document.body.dataset.piecesDone === String(n),
          second,
        );
        shown = await readShare(page);
        assert.equal(shown.mapVerified, second);
        assert.equal(shown.mapInFlight, share.states.filter((s) => s === 1).length);
        await screenshot(page, dir, "share-100k.png");
      });
    } finally {
      controller.abort();
      await monitor.finished;
    }
  },
});

Deno.test({
  name: "seed and download --web: the real pages show a rate-limited download from start to end",
  async fn() {
    await using dir = await tempDir("p2p_web_");
    const source = dir.join("movie.bin");
    await randomFile(source, 4 * 1024 * 1024);
    const { meta } = await createMeta(source, { pieceSize: "64K" });
    const data = dir.join("data");
    const downloads = dir.join("downloads");
    await Deno.mkdir(data);
    await Deno.mkdir(downloads);
    await using seeder = await startSeeder({
      meta,
      workdir: data,
      source,
      extraArgs: ["--web", "127.0.0.1:0"],
    });
    const seedWeb = await seeder.log.next("listening", {
      match: (e) => e.service === "web",
      timeoutMs: LISTEN_TIMEOUT_MS,
    });
    const download = spawnCli([
      "download",
      "--meta",
      meta,
      "--peer",
      `127.0.0.1:${seeder.port}`,
      "--workdir",
      downloads,
      "--max-download-rate",
      "1M",
      "--seed-for",
      "60s",
      "--listen-host",
      "127.0.0.1",
      "--web",
      "127.0.0.1:0",
      "--json",
    ], { perms: perms.download(meta, downloads) });
    try {
      const web = await listening(download, "web");
      await withBrowser(dir, async (browser) => {
        const page = await browser.newPage();
        await page.goto(String(web.url), { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        const seen: number[] = [];
        await waitFor(
          async () => {
            const now = await readShare(page);
            if (seen.at(-1) !== now.piecesDone) seen.push(now.piecesDone);
            return now.complete;
          },
          30_000,
          "the download page to show completion",
        );
        assert.ok(seen.length >= 3, `progress rose step by step: ${seen.join(", ")}`);
        const done = await readShare(page);
        assert.equal(done.pct, "100.0%");
        assert.equal(done.mapVerified, 64);
        assert.equal(done.summaryShown, true);
        await screenshot(page, dir, "download-real.png");

        const seedPage = await browser.newPage();
        await seedPage.goto(String(seedWeb.url), { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
        await waitInPage(seedPage, "the seeder", () => document.body.dataset.role === "seed", null);
        await screenshot(seedPage, dir, "seed-real.png");
      });
    } finally {
      await stopChild(download);
    }
  },
});
