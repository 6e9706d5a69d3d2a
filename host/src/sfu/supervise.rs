//! A session's life after set-up: registration, the supervisor that ends it (ICE failure,
//! connect timeout, credential expiry, a denied re-check, DELETE, shutdown), and teardown —
//! the only place a session's resources are released.

use super::context::Context;
use super::session::{EndReason, NewSession, Session};
use crate::auth::{Action, Denied};
use crate::events::EventData;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use webrtc::peer_connection::RTCPeerConnectionState;

/// A fresh session id (the last path segment of the session resource URL).
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Make the session visible (PATCH, DELETE, counts), announce it and start its supervisor.
/// Its room occupancy must already be committed.
pub fn register(ctx: &Arc<Context>, new: NewSession) -> Arc<Session> {
    let session = Arc::new(Session::new(new));
    ctx.registry.insert_session(session.clone());
    tracing::info!(
        session = %session.id, room = %session.room.name, action = %session.action,
        subject = %session.identity.subject, "session started"
    );
    let room = Some(session.room.name.as_str());
    if session.room.mark_started() {
        ctx.events.publish(room, EventData::RoomStarted {});
    }
    let (id, subject) = (session.id.clone(), session.identity.subject.clone());
    ctx.events.publish(
        room,
        match session.action {
            Action::Publish => EventData::PublishStarted {
                session: id,
                subject,
            },
            Action::Play => EventData::PlayStarted {
                session: id,
                subject,
            },
        },
    );
    tokio::spawn(supervise(ctx.clone(), session.clone()));
    session
}

/// Runs for the life of a session and is the only place it is torn down.
async fn supervise(ctx: Arc<Context>, session: Arc<Session>) {
    let mut connection = session.states.connection.subscribe();
    let mut ending = session.ending();
    let connect_deadline = tokio::time::sleep(ctx.connect_timeout);
    tokio::pin!(connect_deadline);
    let mut connected = false;
    let expiry = session.identity.expires_at.map(|at| {
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    });
    let expiry_sleep = tokio::time::sleep(expiry.unwrap_or(Duration::MAX / 4));
    tokio::pin!(expiry_sleep);
    let mut unavailable_since: Option<Instant> = None;
    let mut recheck = session.identity.recheck_every.map(|every| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });

    loop {
        tokio::select! {
            _ = ending.changed() => break,
            changed = connection.changed() => {
                if changed.is_err() { session.end(EndReason::PeerClosed); continue; }
                match *connection.borrow_and_update() {
                    RTCPeerConnectionState::Connected => {
                        connected = true;
                        let _ = session.connected_at.set(SystemTime::now());
                    }
                    RTCPeerConnectionState::Failed => session.end(
                        session.states.fault_reason().map_or(EndReason::IceFailed, EndReason::Fault),
                    ),
                    RTCPeerConnectionState::Closed => session.end(EndReason::PeerClosed),
                    _ => {}
                }
            }
            _ = &mut connect_deadline, if !connected => session.end(EndReason::ConnectTimeout),
            _ = &mut expiry_sleep, if expiry.is_some() => session.end(EndReason::Expired),
            _ = async { recheck.as_mut().expect("guarded").tick().await }, if recheck.is_some() => {
                let mut req = session.admit.clone();
                req.counts = session.room.counts();
                match ctx.gate.recheck(&req, &session.identity).await {
                    Ok(()) => unavailable_since = None,
                    // The check could not run (plugin failed, identity provider down): not a
                    // denial. The session stays for the grace period, then ends.
                    Err(Denied::Unavailable(why)) => {
                        let since = *unavailable_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= ctx.recheck_grace {
                            session.end(EndReason::Revoked(format!(
                                "re-check unavailable for {} s: {why}",
                                since.elapsed().as_secs()
                            )));
                        } else {
                            tracing::warn!(
                                session = %session.id, reason = %why,
                                grace_left_secs = (ctx.recheck_grace - since.elapsed()).as_secs(),
                                "re-check could not run; keeping the session for now"
                            );
                        }
                    }
                    Err(denied) => session.end(EndReason::Revoked(denied.to_string())),
                }
            }
        }
    }

    let reason = ending.borrow().clone().unwrap_or(EndReason::PeerClosed);
    teardown(&ctx, &session, reason).await;
}

async fn teardown(ctx: &Context, session: &Arc<Session>, reason: EndReason) {
    let room = &session.room;
    // Held until this session's events are out, so a concurrent teardown cannot announce
    // `room.finished` ahead of them.
    room.hold();
    match session.action {
        Action::Publish => room.clear_publisher(&session.id),
        Action::Play => room.viewer_left(),
    }
    session.pc.close().await;
    match &reason {
        EndReason::Expired | EndReason::Revoked(_) => tracing::warn!(
            session = %session.id, room = %room.name, action = %session.action,
            subject = %session.identity.subject, %reason, "session ended by policy"
        ),
        _ => tracing::info!(
            session = %session.id, room = %room.name, action = %session.action,
            %reason, "session ended"
        ),
    }
    let room_name = Some(room.name.as_str());
    let (id, subject, code) = (
        session.id.clone(),
        session.identity.subject.clone(),
        reason.code(),
    );
    ctx.events.publish(
        room_name,
        match session.action {
            Action::Publish => EventData::PublishEnded {
                session: id.clone(),
                subject: subject.clone(),
                reason: code,
            },
            Action::Play => EventData::PlayEnded {
                session: id.clone(),
                subject: subject.clone(),
                reason: code,
            },
        },
    );
    ctx.events.publish(
        room_name,
        EventData::SessionEnded {
            session: id,
            action: session.action,
            subject,
            reason: code,
            detail: reason.to_string(),
        },
    );
    // The room may be gone now; `room.finished` comes after its last session's events.
    room.release_hold();
    ctx.registry.release_room(room);
    // Last, so a session count of zero means every resource is released and every event out.
    ctx.registry.remove_session(&session.id);
}

/// After the policy changed (plugins reloaded): re-check every live session now. A session
/// the new policy denies ends; one it cannot decide on (plugin or upstream failing) is left to
/// its periodic re-check, if any.
pub async fn recheck_all(ctx: &Context) {
    use futures::StreamExt;
    let sessions = ctx.registry.sessions();
    let count = sessions.len();
    futures::stream::iter(sessions)
        .for_each_concurrent(RECHECK_ALL_CONCURRENCY, |session| async move {
            let mut req = session.admit.clone();
            req.counts = session.room.counts();
            match ctx.gate.recheck(&req, &session.identity).await {
                Ok(()) => {}
                Err(Denied::Unavailable(why)) => tracing::warn!(
                    session = %session.id, reason = %why,
                    "re-check after reload could not run; session kept"
                ),
                Err(denied) => session.end(EndReason::Revoked(format!(
                    "no longer admitted after the plugin reload: {denied}"
                ))),
            }
        })
        .await;
    tracing::info!(
        sessions = count,
        "live sessions re-checked after the plugin reload"
    );
}

/// Sessions re-checked at once after a reload (each call also holds a re-check permit).
const RECHECK_ALL_CONCURRENCY: usize = 32;
