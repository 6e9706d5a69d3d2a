#!/usr/bin/env python3
"""Real encoded media for the recording tests, and an independent reader for what they wrote.

    media_tool.py encode <out> <seconds> [--video vp8|vp9]
        Encodes a moving test picture (libvpx, 640x360, 30 fps, a keyframe every second) and a
        440 Hz tone (libopus, 48 kHz stereo, 20 ms packets) with PyAV's FFmpeg, and writes
        every packet as a record: kind (0 video, 1 audio), keyframe flag, pts in the RTP clock
        (90 kHz video, 48 kHz audio) as u64, length as u32, then the packet (little-endian).

    media_tool.py probe <file>...
        Opens each file with FFmpeg's demuxers and decoders and prints one JSON object per
        file: its streams (codec, duration in seconds, packets, frames decoded, decode errors).
"""
import json
import math
import struct
import sys
from fractions import Fraction

import av


def encode(out_path, seconds, video_codec):
    width, height, fps = 640, 360, 30
    codec_name = {"vp8": "libvpx", "vp9": "libvpx-vp9"}[video_codec]
    video = av.CodecContext.create(codec_name, "w")
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = Fraction(1, 90000)
    video.framerate = Fraction(fps, 1)
    video.bit_rate = 800_000
    video.gop_size = fps
    # Deterministic output: libvpx's realtime mode adapts to the time it takes (so where its
    # keyframes fall, and whether it drops frames, varies run to run); "good" on one thread
    # with a keyframe exactly every `fps` frames does not.
    video.options = {
        "deadline": "good",
        "cpu-used": "5",
        "lag-in-frames": "0",
        "threads": "1",
        "keyint_min": str(fps),
    }
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "stereo", "s16"
    audio.time_base = Fraction(1, 48000)
    audio.bit_rate = 64000
    records = []

    def take(kind, packets):
        for p in packets:
            records.append((kind, 1 if p.is_keyframe else 0, p.pts, bytes(p)))

    for i in range(int(seconds * fps)):
        frame = av.VideoFrame(width, height, "yuv420p")
        for n, plane in enumerate(frame.planes):
            shade = (i * 4 + n * 50) % 256
            row = bytes((x + i * 3 + shade) % 256 for x in range(plane.line_size))
            plane.update(row * (plane.buffer_size // plane.line_size))
        frame.pts = i * 90000 // fps
        frame.time_base = video.time_base
        take(0, video.encode(frame))
    take(0, video.encode(None))
    samples = 960
    for i in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        pcm = bytearray()
        for s in range(samples):
            v = int(8000 * math.sin(2 * math.pi * 440 * (i * samples + s) / 48000))
            pcm += struct.pack("<hh", v, v)
        frame.planes[0].update(bytes(pcm))
        frame.sample_rate = 48000
        frame.pts = i * samples
        frame.time_base = audio.time_base
        take(1, audio.encode(frame))
    take(1, audio.encode(None))
    with open(out_path, "wb") as f:
        for kind, key, pts, data in records:
            f.write(struct.pack("<BBQI", kind, key, max(pts or 0, 0), len(data)))
            f.write(data)


def probe(path):
    result = {"file": path, "streams": []}
    try:
        container = av.open(path)
    except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
        result["error"] = str(e)
        return result
    for stream in container.streams:
        result["streams"].append({"index": stream.index, "codec": stream.codec_context.name,
                                  "packets": 0, "frames": 0, "errors": 0, "first": None, "last": None})
    for packet in container.demux():
        info = result["streams"][packet.stream.index]
        if packet.size == 0:
            continue
        info["packets"] += 1
        if packet.pts is not None:
            t = float(packet.pts * packet.time_base)
            info["first"] = t if info["first"] is None else min(info["first"], t)
            end = t + float((packet.duration or 0) * packet.time_base)
            info["last"] = end if info["last"] is None else max(info["last"], end)
        try:
            info["frames"] += len(packet.decode())
        except av.error.FFmpegError:
            info["errors"] += 1
    for info in result["streams"]:
        info["duration"] = (info["last"] or 0) - (info["first"] or 0)
    return result


if __name__ == "__main__":
    if sys.argv[1] == "encode":
        codec = sys.argv[5] if len(sys.argv) > 5 else "vp8"
        encode(sys.argv[2], float(sys.argv[3]), codec)
    elif sys.argv[1] == "probe":
        for path in sys.argv[2:]:
            print(json.dumps(probe(path)))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
