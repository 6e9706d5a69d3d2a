//! Media taps: non-WebRTC consumers of a room's media (the recorder) fed like a viewer.
//!
//! A tap receives exactly what viewers receive — the selected stream of each kind, with
//! continuous sequence numbers and timestamps, in the publisher's payload types — through its
//! own bounded queue. The forwarding path only ever *offers* a packet to the queue: a tap that
//! falls behind loses its own packets (counted in [`MediaTap::dropped`]) and never delays the
//! publisher or any viewer. Nothing here knows what the consumer does with the packets.

use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// One packet a tap received, and which kind it is.
#[derive(Debug, Clone)]
pub struct TapPacket {
    pub kind: RtpCodecKind,
    pub packet: rtp::Packet,
}

/// The hub's end of a tap: where the forwarding path offers packets.
pub struct TapSink {
    kind: RtpCodecKind,
    queue: mpsc::Sender<TapPacket>,
    dropped: Arc<AtomicU64>,
}

impl TapSink {
    /// Offer a burst without waiting; what does not fit is dropped and counted.
    #[inline]
    pub(super) fn offer(&self, packets: &[rtp::Packet]) {
        for packet in packets {
            let item = TapPacket {
                kind: self.kind,
                packet: packet.clone(),
            };
            if self.queue.try_send(item).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a tap attaches to: a media kind's hub (`forward::TrackHub`).
pub trait Tapped: Send + Sync {
    fn add_tap(&self, tap: Arc<TapSink>);
    fn remove_tap(&self, tap: &Arc<TapSink>);
    /// The publisher's codecs of what is forwarded (payload type -> codec).
    fn source_codecs(&self) -> Arc<Vec<RTCRtpCodecParameters>>;
}

/// The consumer's end of a tap on a room's audio and video. Dropping it detaches it.
pub struct MediaTap {
    packets: mpsc::Receiver<TapPacket>,
    dropped: Arc<AtomicU64>,
    sinks: Vec<(Arc<dyn Tapped>, Arc<TapSink>)>,
}

impl MediaTap {
    /// Attach a tap with room for `capacity` packets to the given hubs.
    pub fn attach(hubs: [(RtpCodecKind, Arc<dyn Tapped>); 2], capacity: usize) -> MediaTap {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut sinks = Vec::with_capacity(hubs.len());
        for (kind, hub) in hubs {
            let sink = Arc::new(TapSink {
                kind,
                queue: tx.clone(),
                dropped: dropped.clone(),
            });
            hub.add_tap(sink.clone());
            sinks.push((hub, sink));
        }
        MediaTap {
            packets: rx,
            dropped,
            sinks,
        }
    }

    /// The next packet, waiting for one. `None` never happens while the tap is attached.
    pub async fn recv(&mut self) -> Option<TapPacket> {
        self.packets.recv().await
    }

    /// A packet if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<TapPacket> {
        self.packets.try_recv().ok()
    }

    /// Packets this tap lost because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The publisher's codecs for `kind` (payload type -> codec of the tapped packets).
    pub fn codecs(&self, kind: RtpCodecKind) -> Vec<RTCRtpCodecParameters> {
        self.sinks
            .iter()
            .find(|(_, s)| s.kind == kind)
            .map(|(hub, _)| hub.source_codecs().to_vec())
            .unwrap_or_default()
    }
}

impl Drop for MediaTap {
    fn drop(&mut self) {
        for (hub, sink) in &self.sinks {
            hub.remove_tap(sink);
        }
    }
}
