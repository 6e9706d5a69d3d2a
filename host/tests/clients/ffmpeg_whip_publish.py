#!/usr/bin/env python3
"""Publish a synthetic live stream to a WHIP endpoint with FFmpeg's own `whip` muxer.

FFmpeg comes from PyAV (`pip install av`), whose wheels bundle FFmpeg 8 with the muxer, so
this is the same code path as `ffmpeg ... -f whip URL`: H.264 (libx264, constrained
baseline, no B-frames) and Opus, paced in real time. Used by host/tests/ffmpeg_whip.rs and
usable by hand:

    python3 ffmpeg_whip_publish.py --url http://127.0.0.1:8080/whip/demo \
        --cert cert.pem --key key.pem --seconds 30

Pass an EC certificate (--cert/--key): PyAV's FFmpeg is built with GnuTLS, and the
certificate that build generates by itself is refused by every DTLS peer we tried.

Progress goes to stderr; the last line of stdout is a JSON summary. Exit status: 0 when the
whole duration was sent, 2 on any error (one line on stderr saying what failed).
"""

import argparse
import json
import math
import sys
import time
from array import array
from fractions import Fraction

WIDTH, HEIGHT = 320, 240
SAMPLE_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms of Opus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="WHIP endpoint, e.g. http://host:8080/whip/room")
    parser.add_argument("--cert", help="PEM certificate for DTLS (EC recommended)")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--token", help="Bearer token (the muxer's `authorization` option)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to publish")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--no-audio", action="store_true", help="video only")
    args = parser.parse_args()

    try:
        import av
    except ImportError:
        return fail("PyAV is not installed: run `python3 -m pip install av`")
    if "whip" not in av.formats_available:
        return fail(f"PyAV {av.__version__}'s FFmpeg has no `whip` muxer (needs FFmpeg 7.1+)")

    options = {"handshake_timeout": "10000"}
    if args.cert and args.key:
        options.update(cert_file=args.cert, key_file=args.key)
    if args.token:
        options["authorization"] = args.token
    log(f"PyAV {av.__version__} (libavformat {fmt_version(av.library_versions['libavformat'])}); "
        f"publishing to {args.url}")

    try:
        container = av.open(args.url, mode="w", format="whip", options=options)
    except Exception as e:  # noqa: BLE001 - report any FFmpeg error as one line
        return fail(f"cannot open the whip muxer: {e}")

    try:
        video = container.add_stream("libx264", rate=args.fps)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.codec_context.time_base = Fraction(1, args.fps)
        video.codec_context.gop_size = args.fps  # a keyframe every second
        video.codec_context.max_b_frames = 0  # the muxer refuses B-frames
        video.codec_context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
        }
        audio = None
        if not args.no_audio:
            audio = container.add_stream("libopus", rate=SAMPLE_RATE)
            audio.codec_context.layout = "stereo"
            audio.codec_context.format = "s16"
            audio.codec_context.time_base = Fraction(1, SAMPLE_RATE)
        sent = stream(container, video, audio, args.fps, args.seconds)
    except KeyboardInterrupt:
        return fail("interrupted")
    except Exception as e:  # noqa: BLE001
        return fail(f"publishing failed: {type(e).__name__}: {e}")
    finally:
        try:
            container.close()
        except Exception as e:  # noqa: BLE001
            log(f"closing the muxer: {e}")
    print(json.dumps(sent), flush=True)
    return 0


def stream(container, video, audio, fps: int, seconds: float) -> dict:
    """Encode and mux in real time; returns counts of what was handed to the muxer."""
    import av

    sent = {"video_frames": 0, "video_packets": 0, "audio_frames": 0, "audio_packets": 0}
    ramp = bytes(x * 255 // WIDTH for x in range(WIDTH))
    tone = array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE))
                       for i in range(SAMPLE_RATE)))
    stereo = array("h", (s for sample in tone for s in (sample, sample)))
    start = time.monotonic()
    next_video, next_audio, next_log = 0.0, 0.0, 1.0
    frame_index, audio_samples = 0, 0
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        if now >= next_video:
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            shift = (frame_index * 4) % WIDTH
            row = ramp[shift:] + ramp[:shift]
            fill_plane(frame.planes[0], row, HEIGHT)
            for plane in frame.planes[1:]:
                fill_plane(plane, bytes([128]) * (WIDTH // 2), HEIGHT // 2)
            frame.pts = frame_index
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                before = time.monotonic()
                container.mux(packet)
                sent["video_packets"] += 1
                if sent["video_packets"] == 1:
                    # The first packet waits for the WHIP POST, ICE, DTLS and SRTP set-up;
                    # start the clock after it rather than send the frames missed as a burst.
                    start += time.monotonic() - before
                    log("whip: connected (ICE, DTLS and SRTP done); first video packet sent")
            sent["video_frames"] += 1
            frame_index += 1
            next_video = frame_index / fps
        if audio is not None and now >= next_audio:
            offset = (audio_samples % SAMPLE_RATE) * 2
            chunk = stereo[offset:offset + AUDIO_FRAME * 2]
            if len(chunk) < AUDIO_FRAME * 2:
                chunk += stereo[:AUDIO_FRAME * 2 - len(chunk)]
            frame = av.AudioFrame(format="s16", layout="stereo", samples=AUDIO_FRAME)
            frame.planes[0].update(chunk.tobytes())
            frame.sample_rate = SAMPLE_RATE
            frame.pts = audio_samples
            frame.time_base = Fraction(1, SAMPLE_RATE)
            for packet in audio.encode(frame):
                container.mux(packet)
                sent["audio_packets"] += 1
            sent["audio_frames"] += 1
            audio_samples += AUDIO_FRAME
            next_audio = audio_samples / SAMPLE_RATE
        if now >= next_log:
            log(f"{now:.0f}s: {sent}")
            next_log += 1.0
        wake = min(next_video, next_audio if audio is not None else next_video, seconds)
        time.sleep(max(0.0, wake - (time.monotonic() - start)))
    return sent


def fill_plane(plane, row: bytes, height: int) -> None:
    """Write `row` into every line of `plane`, honouring its line size (padding)."""
    padded = row + bytes(plane.line_size - len(row))
    plane.update(padded * height)


def fmt_version(v) -> str:
    return ".".join(str(x) for x in v)


def log(message: str) -> None:
    print(f"ffmpeg-whip: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> int:
    log(f"error: {message}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
