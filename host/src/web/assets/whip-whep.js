// Switchboard WHIP (RFC 9725) / WHEP client for browsers. No dependencies.
//
//   const session = new Session({ endpoint: 'whip/lobby', kind: 'whip', stream, token });
//   // options: trickle (send the offer at once), simulcast (publish three layers)
//   session.addEventListener('state', () => console.log(session.state));
//   await session.start();   // offer -> POST application/sdp -> answer
//   await session.stop();    // DELETE the session resource, close the connection
//
// ICE: by default the offer is sent once local gathering completes (bounded by
// GATHER_TIMEOUT_MS), so servers without trickle support get every candidate up front. With
// `trickle: true` the offer is sent at once. Either way, candidates found after the POST are sent
// with PATCH application/trickle-ice-sdpfrag (If-Match: the ETag) when the server returned an ETag.
// ICE servers come from `Link: <...>; rel="ice-server"` headers of an OPTIONS request made before
// the offer is created (RFC 9725 section 4.6); a server that does not answer OPTIONS is fine.

const GATHER_TIMEOUT_MS = 2500;
/** The WHEP server-sent events extension's link relation. */
const SSE_REL = 'urn:ietf:params:whep:ext:core:server-sent-events';

/** The URL of the first `Link` with `rel` (quoted or not), or null. */
export function findLink(header, rel) {
  if (!header) return null;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part);
    const params = m ? m[2].split(';').map((p) => p.trim()) : [];
    if (params.includes(`rel="${rel}"`) || params.includes(`rel=${rel}`)) return m[1];
  }
  return null;
}

/** Simulcast layers a publisher sends with `simulcast: true`. */
export const SIMULCAST_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];
const HTTP_TIMEOUT_MS = 15000;

/** An HTTP request answered with a non-success status; `message` carries the server's text. */
export class HttpError extends Error {
  constructor(status, statusText, body) {
    const detail = (body || '').trim().slice(0, 300);
    super(`HTTP ${status}${statusText ? ' ' + statusText : ''}${detail ? ': ' + detail : ''}`);
    this.name = 'HttpError';
    this.status = status;
  }
}

/**
 * Parses `Link` header values into RTCIceServer entries (only rel="ice-server" links).
 * Handles several links in one header, quoted parameters and commas inside URLs.
 */
export function parseIceServerLinks(header) {
  const servers = [];
  if (!header) return servers;
  let i = 0;
  const n = header.length;
  while (i < n) {
    const open = header.indexOf('<', i);
    if (open < 0) break;
    const close = header.indexOf('>', open + 1);
    if (close < 0) break;
    const url = header.slice(open + 1, close).trim();
    const params = {};
    i = close + 1;
    // Parameters: ; name=value | ; name="quoted value", until the next top-level comma.
    while (i < n) {
      while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
      if (header[i] === ',') { i++; break; }
      if (header[i] !== ';') { i++; continue; }
      i++;
      let eq = i;
      while (eq < n && !'=;,'.includes(header[eq])) eq++;
      const name = header.slice(i, eq).trim().toLowerCase();
      i = eq;
      let value = '';
      if (header[i] === '=') {
        i++;
        while (i < n && header[i] === ' ') i++;
        if (header[i] === '"') {
          i++;
          while (i < n && header[i] !== '"') {
            if (header[i] === '\\' && i + 1 < n) i++;
            value += header[i++];
          }
          i++;
        } else {
          const start = i;
          while (i < n && header[i] !== ';' && header[i] !== ',') i++;
          value = header.slice(start, i).trim();
        }
      }
      if (name) params[name] = value;
    }
    const rels = (params.rel || '').toLowerCase().split(/\s+/);
    if (!rels.includes('ice-server') || !/^(stuns?|turns?):/i.test(url)) continue;
    const server = { urls: url };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

async function request(url, init) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), HTTP_TIMEOUT_MS);
  try {
    return await fetch(url, { ...init, signal: controller.signal, cache: 'no-store', credentials: 'same-origin' });
  } catch (err) {
    if (err.name === 'AbortError') throw new Error(`no answer from ${new URL(url, location.href).pathname} within ${HTTP_TIMEOUT_MS / 1000} s`);
    throw new Error(`network error: ${err.message}`);
  } finally {
    clearTimeout(timer);
  }
}

async function ensureOk(res) {
  if (res.ok) return res;
  let body = '';
  try { body = await res.text(); } catch { /* body unreadable: status alone */ }
  throw new HttpError(res.status, res.statusText, body);
}

function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** Reads `a=ice-ufrag` / `a=ice-pwd` from an SDP (session or first media level). */
function iceCredentials(sdp) {
  const ufrag = /^a=ice-ufrag:(.+)$/m.exec(sdp);
  const pwd = /^a=ice-pwd:(.+)$/m.exec(sdp);
  return ufrag && pwd ? { ufrag: ufrag[1].trim(), pwd: pwd[1].trim() } : null;
}

/** Builds an RFC 8840 trickle-ice-sdpfrag for candidates gathered after the offer was sent. */
function sdpFragment(sdp, candidates, endOfCandidates) {
  const creds = iceCredentials(sdp);
  if (!creds) return null;
  const media = [];
  const re = /^m=(\S+) .*$/gm;
  let m;
  while ((m = re.exec(sdp)) !== null) {
    const section = sdp.slice(m.index).split(/\r?\n(?=m=)/)[0];
    const mid = /^a=mid:(.+)$/m.exec(section);
    if (mid) media.push({ kind: m[1], mid: mid[1].trim() });
  }
  if (media.length === 0) return null;
  const bundle = /^a=group:BUNDLE .*$/m.exec(sdp);
  const lines = [];
  if (bundle) lines.push(bundle[0].trim());
  // With max-bundle every candidate belongs to the first (bundle-tag) section.
  const byMid = new Map();
  for (const c of candidates) {
    const mid = c.sdpMid ?? media[0].mid;
    if (!byMid.has(mid)) byMid.set(mid, []);
    byMid.get(mid).push(c.candidate);
  }
  const targets = endOfCandidates && byMid.size === 0 ? new Map([[media[0].mid, []]]) : byMid;
  for (const [mid, list] of targets) {
    const kind = (media.find((x) => x.mid === mid) || media[0]).kind;
    lines.push(`m=${kind} 9 UDP/TLS/RTP/SAVPF 0`, `a=mid:${mid}`, `a=ice-ufrag:${creds.ufrag}`, `a=ice-pwd:${creds.pwd}`);
    for (const cand of list) lines.push(cand.startsWith('a=') ? cand : `a=${cand}`);
    if (endOfCandidates) lines.push('a=end-of-candidates');
  }
  return lines.join('\r\n') + '\r\n';
}

/**
 * One WHIP (publish) or WHEP (play) session.
 *
 * Events: `state` (see `state`), `track` (detail: { track, streams }), `notice` (detail: message
 * for non-fatal problems such as a refused trickle PATCH).
 */
export class Session extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.endpoint WHIP/WHEP endpoint URL, absolute or relative to the page.
   * @param {'whip'|'whep'} opts.kind
   * @param {MediaStream} [opts.stream] tracks to publish (WHIP only).
   * @param {string} [opts.token] sent as `Authorization: Bearer <token>`.
   * @param {RTCIceServer[]} [opts.iceServers] used in addition to servers the endpoint advertises.
   * @param {boolean} [opts.trickle] send the offer without waiting for ICE gathering.
   * @param {boolean} [opts.relayOnly] gather relay candidates only (`iceTransportPolicy:
   *   'relay'`): media goes through the TURN server the endpoint advertised.
   */
  constructor({ endpoint, kind, stream = null, token = '', iceServers = [], trickle = false, simulcast = false, relayOnly = false }) {
    super();
    if (kind !== 'whip' && kind !== 'whep') throw new TypeError(`unknown session kind ${kind}`);
    if (kind === 'whip' && !stream) throw new TypeError('a WHIP session needs a MediaStream');
    this.endpoint = new URL(endpoint, document.baseURI).href;
    this.kind = kind;
    this.stream = stream;
    this.token = token;
    this.extraIceServers = iceServers;
    this.trickle = trickle;
    this.simulcast = simulcast;
    this.relayOnly = relayOnly;
    /** WHEP server-sent events: whether the room has a publisher, how many watch (or null). */
    this.live = null;
    this.viewerCount = null;
    this.events = null;
    /** HTTP statuses of the trickle PATCH requests sent so far. */
    this.patchStatuses = [];
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** URL of the session resource (from `Location`), once created. */
    this.resource = null;
    /** Status of the DELETE sent by `stop()`, or null if none was sent. */
    this.deleteStatus = null;
    this.state = 'new';
    this.etag = null;
    this.pending = [];
    this.gatheringDone = false;
    this.endSent = false;
    this.offerSdp = '';
    this.patchChain = Promise.resolve();
  }

  headers(extra) {
    const h = { ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  setState(state, detail) {
    if (this.state === 'closed' && state !== 'closed') return;
    this.state = state;
    this.stateDetail = detail || '';
    this.dispatchEvent(new Event('state'));
  }

  notice(message) {
    this.dispatchEvent(new CustomEvent('notice', { detail: message }));
  }

  async discoverIceServers() {
    try {
      const res = await request(this.endpoint, { method: 'OPTIONS', headers: this.headers() });
      return res.ok ? parseIceServerLinks(res.headers.get('Link')) : [];
    } catch {
      return []; // OPTIONS is optional for the server; the POST still decides.
    }
  }

  async start() {
    if (this.state !== 'new') throw new Error('a session can only be started once');
    this.setState('connecting', 'preparing offer');
    try {
      const advertised = await this.discoverIceServers();
      if (this.state === 'closed') return; // stopped while asking for ICE servers
      const pc = new RTCPeerConnection({
        iceServers: [...advertised, ...this.extraIceServers],
        bundlePolicy: 'max-bundle',
        rtcpMuxPolicy: 'require',
        iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
      });
      this.pc = pc;
      if (this.kind === 'whip') {
        const audio = this.stream.getAudioTracks()[0];
        const video = this.stream.getVideoTracks()[0];
        if (!audio && !video) throw new Error('the stream has no audio or video track');
        if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [this.stream] });
        if (video) {
          const init = { direction: 'sendonly', streams: [this.stream] };
          // Simulcast: three layers, lowest first; the server sends each viewer the best one
          // that is flowing and switches on keyframes.
          if (this.simulcast) init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({ ...l }));
          pc.addTransceiver(video, init);
        }
      } else {
        pc.addTransceiver('audio', { direction: 'recvonly' });
        pc.addTransceiver('video', { direction: 'recvonly' });
      }
      pc.addEventListener('track', (e) => {
        this.dispatchEvent(new CustomEvent('track', { detail: { track: e.track, streams: e.streams } }));
      });
      pc.addEventListener('connectionstatechange', () => this.onConnectionState());
      pc.addEventListener('icecandidate', (e) => this.onCandidate(e.candidate));

      await pc.setLocalDescription(await pc.createOffer());
      if (!this.trickle) await waitForGathering(pc, GATHER_TIMEOUT_MS);
      if (this.state === 'closed') return;
      const offer = pc.localDescription.sdp;
      this.offerSdp = offer;
      // Gathering finished before the POST: the offer is complete, nothing will be trickled.
      this.endSent = this.gatheringDone || pc.iceGatheringState === 'complete';

      this.setState('connecting', `sending offer to ${new URL(this.endpoint).pathname}`);
      const res = await ensureOk(await request(this.endpoint, {
        method: 'POST',
        headers: this.headers({ 'Content-Type': 'application/sdp', Accept: 'application/sdp' }),
        body: offer,
      }));
      const location = res.headers.get('Location');
      if (!location) throw new Error(`HTTP ${res.status}: the server sent no Location header`);
      this.resource = new URL(location, res.url).href;
      this.etag = res.headers.get('ETag');
      const sse = findLink(res.headers.get('Link'), SSE_REL);
      const answer = await res.text();
      if (!/^v=0/.test(answer)) throw new Error(`HTTP ${res.status}: the answer is not SDP`);
      if (this.state === 'closed') {
        await this.sendDelete(false);
        return;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.setState('connecting', 'establishing ICE and DTLS');
      this.flushCandidates();
      this.onConnectionState();
      if (sse && this.kind === 'whep') void this.followEvents(new URL(sse, res.url).href);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await this.teardown(true);
      this.setState('failed', message);
      throw err;
    }
  }

  onConnectionState() {
    const pc = this.pc;
    if (!pc || this.state === 'closed' || this.state === 'new') return;
    switch (pc.connectionState) {
      case 'connected': this.setState('connected'); break;
      case 'disconnected': this.setState('connecting', 'connection interrupted, waiting for it to recover'); break;
      case 'failed':
        this.setState('failed', 'ICE/DTLS connection failed');
        void this.teardown(false); // release the server-side session now rather than at its timeout
        break;
      case 'closed': this.setState('closed'); break;
      default: break;
    }
  }

  onCandidate(candidate) {
    if (!candidate) {
      this.gatheringDone = true;
    } else if (candidate.candidate) {
      this.pending.push({ candidate: candidate.candidate, sdpMid: candidate.sdpMid });
    }
    this.flushCandidates();
  }

  /** Sends candidates gathered after the POST, if the server announced trickle support. */
  flushCandidates() {
    if (!this.resource) return; // not posted yet: the offer carries what was gathered so far
    if (!this.etag || !this.pc) {
      this.pending = [];
      return;
    }
    const sent = this.offerSdp;
    const fresh = this.pending.filter((c) => !sent.includes(c.candidate));
    this.pending = [];
    const end = this.gatheringDone && !this.endSent;
    if (fresh.length === 0 && !end) return;
    if (end) this.endSent = true;
    const frag = sdpFragment(sent, fresh, end);
    if (!frag) return;
    this.patchChain = this.patchChain.then(async () => {
      if (!this.resource || this.state === 'closed') return;
      try {
        const res = await request(this.resource, {
          method: 'PATCH',
          headers: this.headers({ 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': this.etag }),
          body: frag,
        });
        this.patchStatuses.push(res.status);
        if (res.status === 405 || res.status === 501) {
          this.etag = null; // the server does not take trickled candidates; stop trying
        } else {
          await ensureOk(res);
          this.etag = res.headers.get('ETag') || this.etag;
        }
      } catch (err) {
        this.notice(`trickle ICE: ${err.message}`);
      }
    });
  }

  async sendDelete(keepalive) {
    const url = this.resource;
    this.resource = null;
    if (!url) return;
    try {
      const res = await request(url, { method: 'DELETE', headers: this.headers(), keepalive });
      this.deleteStatus = res.status;
      // 404 means the server already ended the session: nothing left to release.
      if (res.status !== 404) await ensureOk(res);
    } catch (err) {
      this.notice(`could not end the session on the server: ${err.message}`);
    }
  }

  /**
   * WHEP server-sent events: subscribe, then follow the stream. Sets `live` (the room has a
   * publisher) and `viewerCount`, and dispatches `live` events with both.
   */
  async followEvents(url) {
    try {
      const res = await ensureOk(await request(url, {
        method: 'POST',
        headers: this.headers({ 'Content-Type': 'application/json' }),
        body: JSON.stringify(['active', 'inactive', 'viewercount']),
      }));
      const location = res.headers.get('Location');
      if (!location || this.state === 'closed') return;
      const source = new EventSource(new URL(location, res.url).href);
      this.events = source;
      const update = () => this.dispatchEvent(new CustomEvent('live', {
        detail: { live: this.live, viewerCount: this.viewerCount },
      }));
      source.addEventListener('active', () => { this.live = true; update(); });
      source.addEventListener('inactive', () => { this.live = false; update(); });
      source.addEventListener('viewercount', (e) => {
        this.viewerCount = JSON.parse(e.data).viewercount;
        update();
      });
    } catch (err) {
      this.notice(`server-sent events unavailable: ${err.message}`);
    }
  }

  async teardown(keepalive) {
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
    if (this.events) this.events.close();
    this.events = null;
    await this.sendDelete(keepalive);
  }

  /** Ends the session: DELETE the resource, close the connection. Safe to call more than once. */
  async stop() {
    if (this.state === 'closed') return;
    this.setState('closed');
    await this.teardown(false);
  }

  /** For `pagehide`: fire-and-forget DELETE that survives the page being unloaded. */
  abandon() {
    if (this.state === 'closed') return;
    this.setState('closed');
    void this.teardown(true);
  }
}
