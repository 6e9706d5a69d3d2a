//! Offer/answer: applying a client's SDP offer (the first, or an ICE restart) and producing
//! our complete answer; PATCH on a session resource (trickled candidates, ICE restart).

use super::candidates::{self, CandidatePolicy};
use super::error::SfuError;
use super::peer::PeerFactory;
use super::session::{Patched, Peer, Session};
use super::state::PeerStates;
use super::trickle;
use std::sync::atomic::Ordering;
use std::time::Duration;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCIceGatheringState, RTCSessionDescription};

/// How long we wait for our own ICE candidates before answering anyway.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Apply an offer string and produce our complete answer (with candidates).
pub async fn negotiate(
    peers: &PeerFactory,
    pc: &Peer,
    states: &PeerStates,
    offer: String,
) -> Result<String, SfuError> {
    let offer =
        RTCSessionDescription::offer(offer).map_err(|e| SfuError::BadOffer(e.to_string()))?;
    negotiate_desc(peers, pc, states, offer).await
}

async fn negotiate_desc(
    peers: &PeerFactory,
    pc: &Peer,
    states: &PeerStates,
    offer: RTCSessionDescription,
) -> Result<String, SfuError> {
    let pc = match pc {
        Peer::Stack(pc) => pc,
        Peer::Direct(conn) => return Ok(peers.advertise(&conn.negotiate(offer)?)),
    };
    let mut gathering = states.gathering.subscribe();
    gathering.mark_unchanged();
    pc.set_remote_description(offer)
        .await
        .map_err(|e| SfuError::BadOffer(e.to_string()))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| SfuError::BadOffer(e.to_string()))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| SfuError::WebRtc(e.to_string()))?;
    // Answer with every candidate we have (clients that never trickle need them), but never
    // wait longer than GATHER_TIMEOUT for a slow STUN server.
    let _ = tokio::time::timeout(
        GATHER_TIMEOUT,
        gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await;
    pc.local_description()
        .await
        .map(|d| peers.advertise(&d.sdp))
        .ok_or_else(|| SfuError::WebRtc("no local description".into()))
}

/// PATCH on a session resource: trickle candidates, or an ICE restart when the fragment
/// carries new credentials.
///
/// Candidates are capped and filtered (see [`candidates`](super::candidates)); an ICE restart
/// must name the current ETag (428 without, 412 when stale).
pub async fn patch(
    peers: &PeerFactory,
    policy: &CandidatePolicy,
    session: &Session,
    if_match: Option<&str>,
    body: &[u8],
) -> Result<Patched, SfuError> {
    if let Some(tag) = if_match
        && !session.etag_matches(tag)
    {
        return Err(SfuError::PreconditionFailed);
    }
    let frag = trickle::SdpFrag::parse(body).map_err(|e| SfuError::BadFragment(e.to_string()))?;
    candidates::check_request(frag.candidates.len())?;
    let _guard = session.patch_lock.lock().await;
    let remote = session.pc.remote_sdp().await.ok_or(SfuError::Closed)?;
    let current = trickle::ice_credentials(&remote);

    let restart = match (&frag.ufrag, &frag.pwd) {
        (Some(u), Some(p)) => current.as_ref().is_none_or(|(cu, cp)| cu != u || cp != p),
        _ => false,
    };
    let first_mid = first_mid(&remote);
    if restart && if_match.is_none() {
        return Err(SfuError::PreconditionRequired);
    }
    let allowed: Vec<_> = frag
        .candidates
        .into_iter()
        .filter(|(_, c)| {
            let ok = policy.allows(c);
            if !ok {
                tracing::debug!(session = %session.id, candidate = %c, "remote candidate dropped");
            }
            ok
        })
        .collect();
    let had = match restart {
        true => 0, // a restart starts a new ICE generation
        false => session.remote_candidates.load(Ordering::Relaxed),
    };
    candidates::check_session(had, allowed.len())?;

    let outcome = if restart {
        let (ufrag, pwd) = (
            frag.ufrag.as_deref().unwrap_or_default(),
            frag.pwd.as_deref().unwrap_or_default(),
        );
        let offer = RTCSessionDescription::offer(trickle::restart_offer(&remote, ufrag, pwd))
            .map_err(|e| SfuError::BadFragment(e.to_string()))?;
        let answer = negotiate_desc(peers, &session.pc, &session.states, offer).await?;
        // The restart's new fragment reaches this session on the single-port mux too.
        if let Some(mux) = &session.mux {
            mux.register_answer(&answer);
        }
        let etag = session.rotate_etag();
        session.remote_candidates.store(0, Ordering::Relaxed);
        tracing::info!(session = %session.id, "ICE restart");
        Patched::Restarted {
            fragment: trickle::answer_fragment(&answer),
            etag,
        }
    } else {
        Patched::Trickled
    };

    let ufrag = frag.ufrag.clone().or(current.map(|c| c.0));
    session
        .remote_candidates
        .fetch_add(allowed.len(), Ordering::Relaxed);
    for (mid, candidate) in allowed {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid: mid.or_else(|| first_mid.clone()),
            sdp_mline_index: None,
            username_fragment: ufrag.clone(),
            url: None,
        };
        if let Err(e) = session.pc.add_ice_candidate(init).await {
            return Err(SfuError::BadFragment(format!("candidate rejected: {e}")));
        }
    }
    Ok(outcome)
}

fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
}
