//! The WHEP server-sent events extension: the answer links the event stream; a player
//! subscribing learns at once whether the room is live and how many watch, and then every
//! change, without polling; the stream ends with the viewer's session.

mod common;

use common::*;
use std::time::Duration;
use switchboard::client::{Publisher, Viewer};

/// Reads `event:`/`data:` pairs from a `text/event-stream` body.
struct Events {
    body: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                match event {
                    Some(event) => return Some((event, data)),
                    None => continue, // a keep-alive comment
                }
            }
            match tokio::time::timeout(T, self.body.chunk()).await.ok()? {
                Ok(Some(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_learn_live_state_and_viewer_count_without_polling() {
    let (server, base) = start("").await;
    let http = reqwest::Client::new();
    // A real offer, posted by hand to read the answer's headers.
    let source = Viewer::connect(&base, "elsewhere", &opts()).await.unwrap();
    let offer = source.pc.local_description().await.unwrap().sdp;
    let r = http
        .post(format!("{base}/whep/show"))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let link = r
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|l| l.contains("urn:ietf:params:whep:ext:core:server-sent-events"))
        .expect("the answer links the event stream");
    assert!(
        link.contains("events=\"active,inactive,viewercount\""),
        "{link}"
    );
    let sse_url = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let sse_url = if sse_url.starts_with("http") {
        sse_url
    } else {
        format!("{base}{sse_url}")
    };

    // Unknown events are refused; a list of known ones subscribes.
    let bad = http.post(&sse_url).body("[\"nope\"]").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let sub = http
        .post(&sse_url)
        .body("[\"active\",\"inactive\",\"viewercount\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(sub.status(), 201);
    let stream_url = sub.headers()["location"].to_str().unwrap().to_owned();
    let stream_url = if stream_url.starts_with("http") {
        stream_url
    } else {
        format!("{base}{stream_url}")
    };
    let r = http.get(&stream_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = Events {
        body: r,
        buffer: String::new(),
    };

    // At once: nobody publishes, one viewer (this one).
    assert_eq!(events.next().await, Some(("inactive".into(), "{}".into())));
    assert_eq!(
        events.next().await,
        Some(("viewercount".into(), "{\"viewercount\":1}".into()))
    );
    // A publisher arrives; another viewer joins; the publisher leaves.
    let publisher = Publisher::connect(&base, "show", &opts()).await.unwrap();
    assert_eq!(events.next().await, Some(("active".into(), "{}".into())));
    let second = Viewer::connect(&base, "show", &opts()).await.unwrap();
    assert_eq!(
        events.next().await,
        Some(("viewercount".into(), "{\"viewercount\":2}".into()))
    );
    assert_eq!(publisher.delete().await.unwrap(), 200);
    assert_eq!(events.next().await, Some(("inactive".into(), "{}".into())));
    // The viewer leaves: its stream ends.
    let resource = format!("{base}{location}");
    assert_eq!(http.delete(resource).send().await.unwrap().status(), 200);
    let end = tokio::time::timeout(Duration::from_secs(10), events.next()).await;
    assert_eq!(end.ok().flatten(), None, "the stream ends with the session");
    drop(second);
    server.shutdown().await;
}
