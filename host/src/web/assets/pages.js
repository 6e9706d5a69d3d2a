// Page wiring for the embedded Switchboard pages (index, publish, play).
// Query parameters: ?room=<name>&token=<bearer token>&autostart=1&trickle=1 (send the offer at
// once and trickle ICE candidates with PATCH instead of waiting for gathering to finish)
// &simulcast=1 (publish: send three simulcast layers; also a checkbox on the page)
// &relay=1 (gather TURN relay candidates only: for networks that allow nothing else, or to
// check a TURN server; needs a TURN server the endpoint advertises).
// The active RTCPeerConnection is exposed as `window.pc`, the session as `window.session`.

import { Session } from './whip-whep.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const page = document.body.dataset.page;

function endpointFor(kind, room) {
  return new URL(`${kind}/${encodeURIComponent(room)}`, document.baseURI).href;
}

function setStatus(text, state) {
  const el = $('status');
  el.textContent = text;
  el.dataset.state = state;
}

function describe(session) {
  switch (session.state) {
    case 'connecting': return [`Connecting… ${session.stateDetail}`, 'busy'];
    case 'connected': return [page === 'publish' ? 'Live: publishing' : 'Live: playing', 'ok'];
    case 'failed': return [`Error: ${session.stateDetail}`, 'error'];
    case 'closed': return ['Stopped', 'idle'];
    default: return ['Idle', 'idle'];
  }
}

function initIndex() {
  for (const el of document.querySelectorAll('[data-endpoint]')) {
    el.textContent = endpointFor(el.dataset.endpoint, '{room}').replace('%7Broom%7D', '{room}');
  }
}

function initSessionPage(kind) {
  const form = $('controls');
  const startBtn = $('start');
  const stopBtn = $('stop');
  const video = $('video');
  form.room.value = params.get('room') || form.room.value;
  form.token.value = params.get('token') || '';
  if (form.simulcast) form.simulcast.checked = params.get('simulcast') === '1';

  let session = null;
  let localStream = null;

  const releaseMedia = () => {
    if (localStream) for (const t of localStream.getTracks()) t.stop();
    localStream = null;
    video.srcObject = null;
  };

  const setRunning = (running) => {
    startBtn.disabled = running;
    stopBtn.disabled = !running;
    form.room.disabled = running;
    form.token.disabled = running;
    if (form.simulcast) form.simulcast.disabled = running;
  };

  async function captureMedia() {
    const wanted = { audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } };
    try {
      return await navigator.mediaDevices.getUserMedia(wanted);
    } catch (err) {
      if (err.name !== 'NotFoundError' && err.name !== 'OverconstrainedError') throw err;
      // No camera or no microphone: publish whatever exists.
      for (const only of [{ video: wanted.video }, { audio: true }]) {
        try { return await navigator.mediaDevices.getUserMedia(only); } catch { /* try the next */ }
      }
      throw err;
    }
  }

  async function start() {
    const room = form.room.value.trim();
    if (!room) {
      setStatus('Enter a room name', 'error');
      form.room.focus();
      return;
    }
    setRunning(true);
    try {
      let stream = null;
      if (kind === 'whip') {
        setStatus('Requesting camera and microphone…', 'busy');
        if (!navigator.mediaDevices?.getUserMedia) {
          throw new Error('this page needs a secure context (https or localhost) for camera access');
        }
        localStream = await captureMedia();
        stream = localStream;
        video.srcObject = localStream;
      } else {
        const remote = new MediaStream();
        video.srcObject = remote;
      }
      session = new Session({
        endpoint: endpointFor(kind, room),
        kind,
        stream,
        token: form.token.value.trim(),
        trickle: params.get('trickle') === '1',
        simulcast: kind === 'whip' && Boolean(form.simulcast?.checked),
        relayOnly: params.get('relay') === '1',
      });
      window.session = session;
      session.addEventListener('state', () => {
        window.pc = session.pc;
        const [text, state] = describe(session);
        setStatus(text, state);
        if (session.state === 'failed') {
          setRunning(false);
          releaseMedia();
        }
      });
      session.addEventListener('notice', (e) => console.warn(`[switchboard] ${e.detail}`));
      session.addEventListener('live', (e) => {
        const el = $('live');
        if (!el) return;
        const { live, viewerCount } = e.detail;
        const watching = viewerCount === null ? '' : ` · ${viewerCount} watching`;
        el.textContent = (live ? 'Publisher live' : 'Waiting for the publisher') + watching;
        el.dataset.live = live ? 'yes' : 'no';
        el.hidden = false;
      });
      session.addEventListener('track', (e) => {
        if (kind !== 'whep') return;
        const remote = video.srcObject instanceof MediaStream ? video.srcObject : new MediaStream();
        remote.addTrack(e.detail.track);
        video.srcObject = remote;
        video.play().catch(() => { /* autoplay policy: the controls let the user start it */ });
      });
      await session.start();
      window.pc = session.pc;
    } catch (err) {
      if (session && session.state === 'closed') return; // stopped by the user meanwhile
      const message = err instanceof Error ? err.message : String(err);
      setStatus(`Error: ${message}`, 'error');
      setRunning(false);
      releaseMedia();
    }
  }

  async function stop() {
    stopBtn.disabled = true;
    const current = session;
    if (current) await current.stop();
    releaseMedia();
    setRunning(false);
    setStatus(current && current.deleteStatus !== null ? `Stopped (session ended: HTTP ${current.deleteStatus})` : 'Stopped', 'idle');
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void start();
  });
  stopBtn.addEventListener('click', () => void stop());
  window.addEventListener('pagehide', () => {
    if (session) session.abandon();
    releaseMedia();
  });

  if (params.get('autostart') === '1') void start();
}

if (page === 'publish') initSessionPage('whip');
else if (page === 'play') initSessionPage('whep');
else initIndex();
