#!/usr/bin/env node
// End-to-end browser check for Switchboard: headless Chromium with a fake camera and microphone
// publishes on the embedded /publish page (WHIP) and plays on the embedded /play page (WHEP);
// the play page's getStats() must show decoded video frames and received audio packets. Also:
// a refused request (invalid room name) must show the server's error in the status line, the
// viewer trickles its ICE candidates with PATCH (`trickle=1`), and both sessions end with DELETE.
//
// Chromium is started with a fixed set of flags (CHROMIUM_FLAGS), a fresh profile and a DevTools
// port; Playwright attaches over CDP. Chromium and the profile are removed on every exit path.
//
//   node browser.mjs <base-url> [--room NAME] [--token TOKEN] [--timeout-ms N] [--simulcast] [--relay]
//                    [--play-file URL] [--hold-ms N]
//
// With --play-file URL no session is made: a page plays the media file at URL in a <video>
// to its end, and the result's `file` says how (ended, frames decoded, duration, size) — how
// the recording tests check that a recorded WebM plays in a browser.
//
// With --hold-ms N both sessions stay up N ms longer before their DELETE (a recording
// test wants seconds of media).
//
// With --relay both pages are opened with `relay=1`: they gather TURN relay candidates only,
// through the ICE servers (and minted credentials) the endpoint hands out.
//
// With --simulcast the publish page sends three simulcast layers (`simulcast=1`) and, once the
// viewer decodes the top layer, the test turns that layer off on the publisher (as an encoder
// short of bandwidth would), waits for the viewer to decode a smaller layer without a stall,
// turns it back on and waits for the viewer to return to the top layer.
//
// Environment: CHROMIUM_BIN (default /usr/bin/chromium); CHROMIUM_EXTRA_FLAGS, space-separated
// flags added to CHROMIUM_FLAGS (e.g. --unsafely-treat-insecure-origin-as-secure=<origin> when
// the server is not on localhost, so the camera may be used over plain HTTP).
// Prints one JSON object on stdout (the result, also on failure); progress goes to stderr.
// Exit status: 0 if media flowed end to end, 1 otherwise, 2 on bad usage.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
];

function usage(message) {
  process.stderr.write(`${message}\nusage: node browser.mjs <base-url> [--room NAME] [--token TOKEN] [--timeout-ms N] [--simulcast] [--relay] [--play-file URL] [--hold-ms N]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { base: null, room: `e2e-${randomBytes(4).toString('hex')}`, token: '', timeoutMs: 45000, simulcast: false, relay: false, playFile: null, holdMs: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--room') opts.room = value();
    else if (arg === '--token') opts.token = value();
    else if (arg === '--timeout-ms') opts.timeoutMs = Number(value());
    else if (arg === '--simulcast') opts.simulcast = true;
    else if (arg === '--relay') opts.relay = true;
    else if (arg === '--play-file') opts.playFile = value();
    else if (arg === '--hold-ms') opts.holdMs = Number(value());
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else if (opts.base === null) opts.base = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (!opts.base) usage('missing <base-url>');
  try {
    opts.base = new URL(opts.base).href.replace(/\/+$/, '');
  } catch {
    usage(`not a URL: ${opts.base}`);
  }
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) usage('--timeout-ms must be a positive number');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();
const deadline = started + opts.timeoutMs;
const remaining = () => Math.max(1, deadline - Date.now());
const log = (message) => process.stderr.write(`[browser-e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`);

class StepError extends Error {}

/** Frames the viewer must decode after its first one, proving a continuous stream. */
const SUSTAINED_FRAMES = 15;

/** Starts Chromium with CHROMIUM_FLAGS (and CHROMIUM_EXTRA_FLAGS) and returns its DevTools WebSocket URL. */
function launchChromium(bin, profile) {
  const extra = (process.env.CHROMIUM_EXTRA_FLAGS || '').split(' ').filter(Boolean);
  const args = [...CHROMIUM_FLAGS, ...extra, `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank'];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderrTail = [];
  const endpoint = new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new StepError(`Chromium printed no DevTools endpoint within 20 s:\n${stderrTail.join('\n')}`)), Math.min(20000, remaining()));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        // D-Bus complaints are expected in containers and say nothing about the test.
        if (line.trim() && !/dbus|unexpected operator/i.test(line)) {
          stderrTail.push(line);
          if (stderrTail.length > 40) stderrTail.shift();
        }
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new StepError(`cannot start ${bin}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new StepError(`Chromium exited early (code ${code}, signal ${signal}):\n${stderrTail.join('\n')}`));
    });
  });
  return { child, endpoint, stderrTail };
}

async function stopChromium(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Runs in the page: a summary of window.pc.getStats(). */
async function pageStats() {
  const pc = window.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const result = { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState, inbound: {}, outbound: {}, layers: [], candidatePair: null };
  for (const s of byId.values()) {
    const codec = s.codecId && byId.get(s.codecId) ? byId.get(s.codecId).mimeType : null;
    if (s.type === 'inbound-rtp') {
      result.inbound[s.kind] = {
        codec,
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        framesReceived: s.framesReceived ?? null,
        framesDecoded: s.framesDecoded ?? null,
        keyFramesDecoded: s.keyFramesDecoded ?? null,
        framesDropped: s.framesDropped ?? null,
        freezeCount: s.freezeCount ?? null,
        frameWidth: s.frameWidth ?? null,
        frameHeight: s.frameHeight ?? null,
        pliCount: s.pliCount ?? null,
        nackCount: s.nackCount ?? null,
      };
    } else if (s.type === 'outbound-rtp') {
      if (s.kind === 'video' && s.rid) {
        result.layers.push({ rid: s.rid, frameWidth: s.frameWidth ?? 0, framesEncoded: s.framesEncoded ?? 0, active: s.active ?? null, packetsSent: s.packetsSent ?? 0 });
      }
      result.outbound[s.kind] = {
        codec,
        packetsSent: s.packetsSent ?? 0,
        bytesSent: s.bytesSent ?? 0,
        framesEncoded: s.framesEncoded ?? null,
        pliCount: s.pliCount ?? null,
        nackCount: s.nackCount ?? null,
      };
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      const local = pair && byId.get(pair.localCandidateId);
      const remote = pair && byId.get(pair.remoteCandidateId);
      if (pair) {
        result.candidatePair = {
          local: local ? `${local.candidateType} ${local.protocol} ${local.address}:${local.port}` : null,
          remote: remote ? `${remote.candidateType} ${remote.protocol} ${remote.address}:${remote.port}` : null,
          dtlsCipher: s.dtlsCipher ?? null,
          srtpCipher: s.srtpCipher ?? null,
          dtlsRole: s.dtlsRole ?? null,
        };
      }
    }
  }
  return result;
}

function pageStatus(page) {
  return page.evaluate(() => {
    const el = document.getElementById('status');
    return { text: el ? el.textContent : null, state: el ? el.dataset.state : null };
  });
}

/** Opens one of the embedded pages with autostart and collects its console for diagnostics. */
async function openPage(context, kind, diagnostics, { room = opts.room, label = kind, trickle = false } = {}) {
  const page = await context.newPage();
  const lines = [];
  diagnostics[label] = lines;
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') lines.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => lines.push(`pageerror: ${err.message}`));
  page.on('requestfailed', (req) => lines.push(`requestfailed: ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ''}`));
  page.on('response', (res) => {
    if (res.status() >= 400) lines.push(`http ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
  const query = new URLSearchParams({ room, autostart: '1' });
  if (trickle) query.set('trickle', '1');
  if (kind === 'publish' && opts.simulcast) query.set('simulcast', '1');
  if (opts.token) query.set('token', opts.token);
  if (opts.relay) query.set('relay', '1');
  const url = `${opts.base}/${kind}?${query}`;
  log(`open ${url.replace(/token=[^&]+/, 'token=***')}`);
  const res = await page.goto(url, { timeout: remaining(), waitUntil: 'domcontentloaded' });
  if (!res || !res.ok()) throw new StepError(`GET /${kind} answered ${res ? res.status() : 'nothing'}`);
  log(`${label}: page loaded`);
  return page;
}

/** Waits until the page's connection is up, failing fast if the page reports an error. */
async function waitConnected(page, kind) {
  try {
    await page.waitForFunction(() => {
      const status = document.getElementById('status');
      return (window.pc && window.pc.connectionState === 'connected') || status.dataset.state === 'error';
    }, null, { timeout: Math.min(remaining(), 25000), polling: 100 });
  } catch {
    const status = await pageStatus(page);
    throw new StepError(`${kind}: not connected in time (status: "${status.text}", stats: ${JSON.stringify(await page.evaluate(pageStats))})`);
  }
  const status = await pageStatus(page);
  if (status.state === 'error') throw new StepError(`${kind}: ${status.text}`);
  log(`${kind}: ${status.text}`);
}

/** Polls getStats() in the page until `done(stats)` holds; returns the last stats. */
async function pollStats(page, kind, what, done, limitMs) {
  const until = Math.min(deadline, Date.now() + limitMs);
  let stats = null;
  while (Date.now() < until) {
    stats = await page.evaluate(pageStats);
    if (stats && done(stats)) return stats;
    const status = await pageStatus(page);
    if (status.state === 'error') throw new StepError(`${kind}: ${status.text}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new StepError(`${kind}: ${what} not seen in time; last stats: ${JSON.stringify(stats)}`);
}

/** Plays the media file at `url` in a muted <video> to its end; what the element reports. */
async function playFile(context, url) {
  const page = await context.newPage();
  await page.setContent(`<video id="v" muted autoplay playsinline src="${url}"></video>`);
  const state = () => page.evaluate(() => {
    const v = document.getElementById('v');
    const q = v.getVideoPlaybackQuality();
    return {
      ended: v.ended, error: v.error ? `${v.error.code} ${v.error.message}` : null,
      currentTime: v.currentTime, duration: v.duration, width: v.videoWidth, height: v.videoHeight,
      totalVideoFrames: q.totalVideoFrames, droppedVideoFrames: q.droppedVideoFrames,
    };
  });
  try {
    await page.waitForFunction(() => {
      const v = document.getElementById('v');
      return v.ended || v.error;
    }, null, { timeout: remaining(), polling: 100 });
  } catch {
    throw new StepError(`the file did not play to its end: ${JSON.stringify(await state())}`);
  }
  const s = await state();
  if (s.error) throw new StepError(`the file failed to play: ${JSON.stringify(s)}`);
  return s;
}

/** Turns a simulcast layer of the publish page's video sender on or off. */
async function setLayerActive(publisher, rid, active) {
  await publisher.evaluate(async ([rid, active]) => {
    const sender = window.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    const params = sender.getParameters();
    for (const e of params.encodings) if (e.rid === rid) e.active = active;
    await sender.setParameters(params);
  }, [rid, active]);
}

/**
 * The simulcast scenario: the viewer reaches the top layer; the top layer is turned off and the
 * viewer keeps decoding a smaller one; it is turned on again and the viewer returns to it.
 * Every step requires frames to keep decoding after the switch (a switch off a keyframe shows
 * up as a stall and a burst of keyframe requests instead).
 */
async function switchLayers(publisher, viewer) {
  const steps = [];
  const video = (s) => s.inbound.video ?? {};
  // The publisher's biggest layer is what "top" means here (Chromium may cap layers by size).
  const pub = await pollStats(publisher, 'publish', 'simulcast layers being sent',
    (s) => s.layers.filter((l) => l.frameWidth > 0).length >= 2, 20000);
  const top = pub.layers.filter((l) => l.frameWidth > 0).sort((a, b) => b.frameWidth - a.frameWidth)[0];
  log(`publish: layers ${JSON.stringify(pub.layers.map((l) => `${l.rid}:${l.frameWidth}`))}; top is ${top.rid}`);
  const record = (name, s) => {
    const v = video(s);
    steps.push({ name, frameWidth: v.frameWidth, framesDecoded: v.framesDecoded, keyFramesDecoded: v.keyFramesDecoded, pliCount: v.pliCount, framesDropped: v.framesDropped, freezeCount: v.freezeCount });
    log(`play: ${name}: ${v.frameWidth}x${v.frameHeight}, framesDecoded=${v.framesDecoded}, keyFramesDecoded=${v.keyFramesDecoded}, pliCount=${v.pliCount}`);
    return v;
  };
  // 1. The top layer reaches the viewer (the server moves up once it measures it).
  let s = await pollStats(viewer, 'play', `the top layer (${top.frameWidth} wide)`,
    (x) => video(x).frameWidth >= top.frameWidth, 25000);
  let v = record('top', s);
  // 2. Top layer off: a smaller layer, still decoding.
  await setLayerActive(publisher, top.rid, false);
  s = await pollStats(viewer, 'play', 'a smaller layer after the top one stopped',
    (x) => video(x).frameWidth > 0 && video(x).frameWidth < top.frameWidth, 15000);
  const switched = video(s).framesDecoded;
  s = await pollStats(viewer, 'play', `${SUSTAINED_FRAMES} frames decoded on the smaller layer`,
    (x) => video(x).framesDecoded >= switched + SUSTAINED_FRAMES && video(x).frameWidth < top.frameWidth, 10000);
  record('down', s);
  // 3. Top layer back on: the viewer moves up again.
  await setLayerActive(publisher, top.rid, true);
  s = await pollStats(viewer, 'play', 'the top layer again',
    (x) => video(x).frameWidth >= top.frameWidth, 25000);
  const back = video(s).framesDecoded;
  s = await pollStats(viewer, 'play', `${SUSTAINED_FRAMES} frames decoded on the top layer again`,
    (x) => video(x).framesDecoded >= back + SUSTAINED_FRAMES, 10000);
  v = record('up', s);
  return { topRid: top.rid, topWidth: top.frameWidth, steps, publisherLayers: pub.layers };
}

/** Clicks Stop and returns the HTTP status of the DELETE the page sent for its session. */
async function stopSession(page) {
  await page.click('#stop', { timeout: Math.min(remaining(), 5000) });
  await page.waitForFunction(() => window.session && window.session.state === 'closed' && window.session.deleteStatus !== null,
    null, { timeout: Math.min(remaining(), 10000), polling: 100 }).catch(() => {});
  return page.evaluate(() => (window.session ? window.session.deleteStatus : null));
}

/** Everything that must not outlive this process; released by `cleanup()`. */
const resources = { profile: null, chromium: null, browser: null };

let cleanupDone = null;

/** Idempotent: every caller (normal end, timeout, signal) awaits the same single cleanup. */
function cleanup() {
  cleanupDone ??= (async () => {
    const { browser, chromium: child, profile } = resources;
    if (browser) await browser.close().catch(() => {});
    await stopChromium(child);
    if (profile) await rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }).catch(() => {});
  })();
  return cleanupDone;
}

for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]]) {
  process.once(signal, () => {
    log(`${signal}: stopping Chromium`);
    cleanup().finally(() => process.exit(code));
  });
}

async function run(result, diagnostics) {
  const bin = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  if (cleanupDone) throw new StepError('interrupted before Chromium started');
  const profile = await mkdtemp(path.join(tmpdir(), 'switchboard-e2e-chromium-'));
  if (cleanupDone) {
    await rm(profile, { recursive: true, force: true });
    throw new StepError('interrupted before Chromium started');
  }
  resources.profile = profile;
  try {
    const launched = launchChromium(bin, profile);
    resources.chromium = launched.child;
    const endpoint = await launched.endpoint;
    diagnostics.chromiumStderr = launched.stderrTail;
    const browser = await chromium.connectOverCDP(endpoint, { timeout: Math.min(remaining(), 15000) });
    resources.browser = browser;
    result.browserVersion = browser.version();
    log(`connected to Chromium ${result.browserVersion}`);
    const context = browser.contexts()[0] ?? (await browser.newContext());
    if (opts.playFile) {
      result.file = await playFile(context, opts.playFile);
      log(`file: ${JSON.stringify(result.file)}`);
      result.ok = true;
      return;
    }

    // A request the server refuses must surface its status and message in the status line.
    const refused = await openPage(context, 'play', diagnostics, { room: 'no such room!', label: 'refused' });
    try {
      await refused.waitForFunction(() => document.getElementById('status').dataset.state === 'error',
        null, { timeout: Math.min(remaining(), 10000), polling: 100 });
    } catch {
      throw new StepError(`an invalid room name did not produce an error on the play page (status: "${(await pageStatus(refused)).text}")`);
    }
    result.refusedStatus = (await pageStatus(refused)).text;
    log(`invalid room: ${result.refusedStatus}`);
    await refused.close();

    const publisher = await openPage(context, 'publish', diagnostics);
    await waitConnected(publisher, 'publish');
    const pubStats = await pollStats(publisher, 'publish', 'outgoing video packets',
      (s) => (s.outbound.video?.packetsSent ?? 0) > 0, 15000);
    result.publish = { status: (await pageStatus(publisher)).text, stats: pubStats };

    // The viewer sends its offer at once and trickles its candidates with PATCH.
    const viewer = await openPage(context, 'play', diagnostics, { trickle: true });
    await waitConnected(viewer, 'play');
    const first = await pollStats(viewer, 'play', 'decoded video frames and audio packets',
      (s) => (s.inbound.video?.framesDecoded ?? 0) > 0 && (s.inbound.audio?.packetsReceived ?? 0) > 0, 20000);
    const firstFrames = first.inbound.video.framesDecoded;
    log(`play: first frames decoded (${first.inbound.video.codec}); checking that media keeps flowing`);
    // Past the first keyframe: decoding must continue, not stall after a frame or two.
    const playStats = await pollStats(viewer, 'play', `${SUSTAINED_FRAMES} more decoded frames`,
      (s) => (s.inbound.video?.framesDecoded ?? 0) >= firstFrames + SUSTAINED_FRAMES, 10000);
    result.play = { status: (await pageStatus(viewer)).text, firstFramesDecoded: firstFrames, stats: playStats };
    result.publish.stats = await publisher.evaluate(pageStats);
    result.play.patchStatuses = await viewer.evaluate(() => window.session.patchStatuses);
    // WHEP server-sent events: the page learns the room is live and how many watch.
    try {
      await viewer.waitForFunction(() => window.session && window.session.live === true && window.session.viewerCount >= 1,
        null, { timeout: Math.min(remaining(), 10000), polling: 100 });
    } catch {
      throw new StepError(`play: no server-sent live state (live=${await viewer.evaluate(() => window.session && window.session.live)})`);
    }
    result.play.sse = await viewer.evaluate(() => ({
      live: window.session.live,
      viewerCount: window.session.viewerCount,
      text: document.getElementById('live').textContent,
    }));
    log(`play: server-sent events say "${result.play.sse.text}"`);
    log(`play: trickle PATCH statuses ${JSON.stringify(result.play.patchStatuses)}`);
    result.framesDecoded = playStats.inbound.video.framesDecoded;
    result.audioPacketsReceived = playStats.inbound.audio?.packetsReceived ?? 0;
    const v = playStats.inbound.video;
    log(`play: framesDecoded=${v.framesDecoded} (${v.codec} ${v.frameWidth}x${v.frameHeight}), audio packets=${result.audioPacketsReceived}`);

    if (opts.simulcast) result.simulcast = await switchLayers(publisher, viewer);
    if (opts.holdMs > 0) {
      log(`holding both sessions for ${opts.holdMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(opts.holdMs, remaining())));
    }

    result.play.deleteStatus = await stopSession(viewer);
    result.publish.deleteStatus = await stopSession(publisher);
    log(`DELETE: play ${result.play.deleteStatus}, publish ${result.publish.deleteStatus}`);
    result.ok = true;
  } finally {
    await cleanup();
  }
}

const result = { ok: false, base: opts.base, room: opts.room, framesDecoded: 0, audioPacketsReceived: 0, publish: null, play: null, error: null };
const diagnostics = {};
let timer;
try {
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepError(`gave up after ${opts.timeoutMs} ms`)), opts.timeoutMs + 5000);
  });
  await Promise.race([run(result, diagnostics), timeout]);
} catch (err) {
  const message = err instanceof StepError ? err.message : (err && err.stack) || String(err);
  result.error = message.replace(/\u001b\[[0-9;]*m/g, ''); // Playwright colours its call logs
  result.diagnostics = diagnostics;
  log(`FAILED: ${result.error}`);
} finally {
  clearTimeout(timer);
  await cleanup();
}
result.elapsedMs = Date.now() - started;
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(result.ok ? 0 : 1);
