//! The recording writers against real encoders and FFmpeg's own demuxers and decoders (PyAV):
//! real VP8/VP9 and Opus packets (libvpx, libopus) are packetized into RTP as a publisher
//! would send them, with packets lost on the way, reassembled into frames and written as WebM,
//! IVF and Ogg. FFmpeg must open each file, find the right codecs and the published duration,
//! and decode every frame without an error; a file cut short (a crash mid-write) must still
//! open and decode up to where it was cut.

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::opus::OpusPayloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::codec::vp9::Vp9Payloader;
use rtc::rtp::packetizer::Payloader;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchboard::recording::frames::{Codec, Frame, FrameAssembler};
use switchboard::recording::ivf::IvfWriter;
use switchboard::recording::ogg::OggOpusWriter;
use switchboard::recording::webm::{Track, WebmTracks, WebmWriter, vp8_dimensions};

const SECONDS: f64 = 4.0;

fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/media_tool.py")
}

struct Record {
    video: bool,
    keyframe: bool,
    pts: u64,
    data: Bytes,
}

/// Real encoded media from PyAV's libvpx and libopus.
fn encode(dir: &Path, video: &str) -> Vec<Record> {
    let out = dir.join(format!("{video}.bin"));
    let status = Command::new("python3")
        .arg(tool())
        .args([
            "encode",
            out.to_str().unwrap(),
            &SECONDS.to_string(),
            "--video",
            video,
        ])
        .status()
        .expect("python3 runs (PyAV: cargo xtask setup installs it)");
    assert!(status.success(), "encoding failed");
    let bytes = std::fs::read(out).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let kind = bytes[at];
        let key = bytes[at + 1];
        let pts = u64::from_le_bytes(bytes[at + 2..at + 10].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 10..at + 14].try_into().unwrap()) as usize;
        let data = Bytes::copy_from_slice(&bytes[at + 14..at + 14 + len]);
        records.push(Record {
            video: kind == 0,
            keyframe: key == 1,
            pts,
            data,
        });
        at += 14 + len;
    }
    records
}

/// RTP packets of one track, as a publisher sends them: `mtu`-sized, sequence numbers from
/// near the wrap, timestamps offset at random.
fn packetize(
    records: &[&Record],
    payloader: &mut dyn Payloader,
    seq: u16,
    ts: u32,
) -> Vec<rtp::Packet> {
    let mut out = Vec::new();
    let mut seq = seq;
    for r in records {
        let payloads = payloader.payload(1100, &r.data).unwrap();
        let n = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let mut p = rtp::Packet::default();
            p.header.sequence_number = seq;
            p.header.timestamp = ts.wrapping_add(r.pts as u32);
            p.header.marker = i + 1 == n;
            p.payload = payload;
            out.push(p);
            seq = seq.wrapping_add(1);
        }
    }
    out
}

fn assemble(codec: Codec, packets: &[rtp::Packet]) -> Vec<Frame> {
    let mut a = FrameAssembler::new(codec);
    let mut frames = Vec::new();
    for p in packets {
        a.push(p, &mut frames);
    }
    frames
}

fn probe(files: &[&Path]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(tool())
        .arg("probe")
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stream<'a>(probe: &'a Value, codec: &str) -> &'a Value {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec"] == codec)
        .unwrap_or_else(|| panic!("no {codec} stream: {probe}"))
}

/// Frames of both tracks as a recording gets them, video losing one packet mid-way.
fn recorded(video_codec: Codec, video: &str, dir: &Path) -> (Vec<Frame>, Vec<Frame>) {
    let records = encode(dir, video);
    let vid: Vec<&Record> = records.iter().filter(|r| r.video).collect();
    let aud: Vec<&Record> = records.iter().filter(|r| !r.video).collect();
    assert!(vid[0].keyframe && vid.iter().filter(|r| r.keyframe).count() >= 3);
    let mut vp: Box<dyn Payloader> = match video_codec {
        Codec::Vp8 => Box::new(Vp8Payloader::default()),
        _ => Box::new(Vp9Payloader::default()),
    };
    let mut video_packets = packetize(&vid, vp.as_mut(), 65_000, 4_000_000_000);
    // One packet lost 1.5 s in: the frames up to the next keyframe (at 2 s) are not written.
    let lost = video_packets
        .iter()
        .position(|p| p.header.timestamp.wrapping_sub(4_000_000_000) >= 135_000)
        .unwrap();
    video_packets.remove(lost);
    let audio_packets = packetize(&aud, &mut OpusPayloader, 100, 7);
    let video_frames = assemble(video_codec, &video_packets);
    let audio_frames = assemble(Codec::Opus, &audio_packets);
    let expected_video = vid.len() - 15; // 1.5 s .. 2 s at 30 fps
    assert_eq!(
        video_frames.len(),
        expected_video,
        "the frames after the loss are dropped"
    );
    assert_eq!(audio_frames.len(), aud.len());
    (video_frames, audio_frames)
}

#[test]
fn webm_ivf_and_ogg_of_real_vp8_and_opus_open_and_decode_in_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let (video, audio) = recorded(Codec::Vp8, "vp8", dir.path());
    let (width, height) = vp8_dimensions(&video[0].data).expect("a VP8 keyframe first");
    assert_eq!((width, height), (640, 360));

    let webm_path = dir.path().join("rec.webm");
    let mut webm = WebmWriter::new(
        std::fs::File::create(&webm_path).unwrap(),
        WebmTracks {
            video: Some((Codec::Vp8, width, height)),
            audio: true,
        },
    )
    .unwrap();
    // Interleave by time, as the recorder does (milliseconds on one timeline).
    let mut all: Vec<(Track, &Frame, u64)> = video
        .iter()
        .map(|f| (Track::Video, f, f.ticks / 90))
        .chain(audio.iter().map(|f| (Track::Audio, f, f.ticks / 48)))
        .collect();
    all.sort_by_key(|(_, _, ms)| *ms);
    for (track, f, ms) in &all {
        webm.write(*track, &f.data, f.keyframe, *ms).unwrap();
    }
    webm.finish().unwrap();

    let ivf_path = dir.path().join("video.ivf");
    let mut ivf = IvfWriter::new(
        std::fs::File::create(&ivf_path).unwrap(),
        Codec::Vp8,
        width,
        height,
    )
    .unwrap();
    for f in &video {
        ivf.write(f).unwrap();
    }
    ivf.finish().unwrap();

    let ogg_path = dir.path().join("audio.ogg");
    let mut ogg = OggOpusWriter::new(std::fs::File::create(&ogg_path).unwrap(), 1).unwrap();
    for f in &audio {
        ogg.write(f).unwrap();
    }
    ogg.finish().unwrap();

    let probes = probe(&[&webm_path, &ivf_path, &ogg_path]);
    let within = |d: f64| (d - SECONDS).abs() <= SECONDS * 0.1;
    let webm_video = stream(&probes[0], "vp8");
    let webm_audio = stream(&probes[0], "opus");
    for (s, frames) in [(webm_video, video.len()), (webm_audio, audio.len())] {
        assert_eq!(s["packets"], frames, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
        assert!(within(s["duration"].as_f64().unwrap()), "{s}");
    }
    assert_eq!(
        webm_video["frames"],
        video.len(),
        "every video frame decodes"
    );
    let ivf_video = stream(&probes[1], "vp8");
    assert_eq!(ivf_video["frames"], video.len(), "{ivf_video}");
    assert!(
        within(ivf_video["duration"].as_f64().unwrap()),
        "{ivf_video}"
    );
    let ogg_audio = stream(&probes[2], "opus");
    assert_eq!(ogg_audio["errors"], 0, "{ogg_audio}");
    assert!(
        within(ogg_audio["duration"].as_f64().unwrap()),
        "{ogg_audio}"
    );

    // A crash mid-write: the file cut at an arbitrary byte still opens and decodes.
    let whole = std::fs::read(&webm_path).unwrap();
    let cut_path = dir.path().join("cut.webm");
    std::fs::write(&cut_path, &whole[..whole.len() * 2 / 3 + 17]).unwrap();
    let cut = &probe(&[&cut_path])[0];
    let cut_video = stream(cut, "vp8");
    assert!(
        cut_video["frames"].as_u64().unwrap() > video.len() as u64 / 2,
        "{cut}"
    );
    assert!(
        cut_video["errors"].as_u64().unwrap() <= 1,
        "only the cut frame: {cut}"
    );
}

#[test]
fn real_vp9_frames_survive_loss_into_ivf() {
    let dir = tempfile::tempdir().unwrap();
    let (video, _) = recorded(Codec::Vp9, "vp9", dir.path());
    let path = dir.path().join("video.ivf");
    let mut ivf =
        IvfWriter::new(std::fs::File::create(&path).unwrap(), Codec::Vp9, 640, 360).unwrap();
    for f in &video {
        ivf.write(f).unwrap();
    }
    ivf.finish().unwrap();
    let probes = probe(&[&path]);
    let s = stream(&probes[0], "vp9");
    assert_eq!(s["frames"], video.len(), "{s}");
    assert_eq!(s["errors"], 0, "{s}");
}
