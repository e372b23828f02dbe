"""The broadcast's muxing: the composed picture (H.264 as the compositor encodes it) and the mix
(PCM, encoded to AAC once) into fragmented MP4 files that FFmpeg reads back (PyAV's demuxer and
decoders): picture from the first keyframe on, the tone in the sound, audio-only rooms, a file cut
short still playable, and a target that fails (a missing folder, a full disk: /dev/full) ends on
its own with a reason that never holds its URL, while the other target goes on."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

from gateway.transcode.broadcast import AUDIO_FRAME, AUDIO_RATE, Broadcast, parameter_sets
from gateway.transcode.video import VIDEO_CLOCK, EncodedVideoFrame, is_keyframe, open_encoder

EPOCH = 1000.0  # (time.monotonic of the picture's RTP time 0)
SIZE = (320, 180)


def picture(seconds: float, fps: int = 30) -> list[EncodedVideoFrame]:
    """testsrc2 as the compositor encodes it: x264, an IDR with SPS and PPS every second."""
    encoder = open_encoder("H264", *SIZE, 400_000, fps, gop_size=fps, threads=1, x264={"x264-params": "repeat-headers=1"})
    source = av.open(f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={fps}", format="lavfi")
    frames = []
    for n, frame in enumerate(source.decode(video=0)):
        if n >= seconds * fps:
            break
        frame = frame.reformat(format="yuv420p")
        frame.pict_type = av.video.frame.PictureType.NONE  # (lavfi marks every frame I)
        frame.pts, frame.time_base = n * VIDEO_CLOCK // fps, fractions.Fraction(1, VIDEO_CLOCK)
        for packet in encoder.encode(frame):
            data = bytes(packet)
            frames.append(EncodedVideoFrame("H264", data, int(packet.pts), is_keyframe("H264", data)))
    source.close()
    return frames


def tone(tick: int, hz: float = 440.0) -> np.ndarray:
    t = (np.arange(AUDIO_FRAME) + tick * AUDIO_FRAME) / AUDIO_RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def play(broadcast: Broadcast, frames: list[EncodedVideoFrame], seconds: float, before_each_second=None) -> None:  # type: ignore[no-untyped-def]
    """The picture and 440 Hz in the mix, interleaved in time as the compositor and mixer make them."""
    ticks = int(seconds * 50)
    video = iter(frames)
    pending = next(video, None)
    for tick in range(ticks):
        at = EPOCH + tick * 0.02
        if before_each_second is not None and tick % 50 == 0:
            before_each_second(tick // 50)
        while pending is not None and EPOCH + pending.timestamp / VIDEO_CLOCK <= at:
            broadcast.video(pending)
            pending = next(video, None)
        broadcast.audio(tone(tick), at)


def read(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        streams = {s.type: s for s in container.streams}
        info: dict[str, object] = {"streams": sorted(streams), "duration": (container.duration or 0) / 1e6}
        if "video" in streams:
            v = streams["video"].codec_context
            info["video"] = (v.name, v.width, v.height)
        if "audio" in streams:
            info["audio"] = streams["audio"].codec_context.name
        pictures = broken = 0
        samples = []
        for packet in container.demux(*container.streams):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:  # (the torn last packet of a file cut short)
                broken += 1
                continue
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    pictures += 1
                else:
                    samples.append(frame.to_ndarray().reshape(-1))
        info["pictures"], info["broken"] = pictures, broken
        sound = np.concatenate(samples) if samples else np.zeros(1)
        spectrum = np.abs(np.fft.rfft(sound[: AUDIO_RATE]))
        info["peak_hz"] = float(np.argmax(spectrum[1:]) + 1) * AUDIO_RATE / min(len(sound), AUDIO_RATE)
        return info


def test_parameter_sets_are_taken_from_a_keyframe_only() -> None:
    key, delta = picture(0.1)[:2]
    sets = parameter_sets(key.data)
    assert sets is not None and sets.startswith(b"\x00\x00\x00\x01\x67") and b"\x00\x00\x00\x01\x68" in sets
    assert not delta.keyframe and parameter_sets(delta.data) is None
    assert parameter_sets(b"\x00\x00\x01\x67\x42") is None  # an SPS without a PPS
    assert parameter_sets(b"garbage") is None


def test_a_recording_holds_the_picture_from_its_first_keyframe_and_the_mix(tmp_path: Path) -> None:
    asked = []
    broadcast = Broadcast(EPOCH, on_keyframe_wanted=lambda: asked.append(1))
    frames = picture(3)
    started: list[float | None] = []

    def at_each_second(second: int) -> None:
        if second == 0:
            return
        if second == 1 and not broadcast.targets():  # (tick 50: just before the keyframe of second 1)
            started.append(broadcast.add_target("recording", str(tmp_path / "r.mp4"), "mp4").started_at)

    play(broadcast, frames, 3, at_each_second)
    assert asked == [1] and started == [None]  # (asked for a keyframe; none written before it)
    (state,) = broadcast.targets()
    assert state.started_at == EPOCH + 1.0  # the keyframe of second 1
    done = broadcast.remove_target("recording")
    assert done is not None and done.ended is None and done.bytes_written > 0
    info = read(tmp_path / "r.mp4")
    assert info["streams"] == ["audio", "video"] and info["broken"] == 0
    assert info["video"] == ("h264", *SIZE) and info["audio"] == "aac"
    assert 1.8 <= float(info["duration"]) <= 2.2  # (seconds 1 to 3)  # type: ignore[arg-type]
    assert int(info["pictures"]) >= 55  # type: ignore[call-overload]
    assert abs(float(info["peak_hz"]) - 440) < 5  # type: ignore[arg-type]


def test_an_audio_only_room_is_recorded_audio_only(tmp_path: Path) -> None:
    broadcast = Broadcast(EPOCH, video=False)
    broadcast.add_target("recording", str(tmp_path / "a.mp4"), "mp4")
    play(broadcast, [], 2)
    broadcast.close()
    info = read(tmp_path / "a.mp4")
    assert info["streams"] == ["audio"] and 1.8 <= float(info["duration"]) <= 2.1  # type: ignore[arg-type]
    assert abs(float(info["peak_hz"]) - 440) < 5  # type: ignore[arg-type]


def test_a_recording_cut_short_is_still_playable(tmp_path: Path) -> None:
    broadcast = Broadcast(EPOCH)
    broadcast.add_target("recording", str(tmp_path / "r.mp4"), "mp4")
    play(broadcast, picture(3), 3)
    broadcast.close()
    whole = (tmp_path / "r.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 7 // 10])  # (a crash, a full disk: no end written)
    info = read(cut)
    assert info["streams"] == ["audio", "video"] and int(info["pictures"]) >= 30  # type: ignore[call-overload]
    assert int(info["broken"]) <= 1  # type: ignore[call-overload]  # (at most the packet the cut tore)


def test_a_target_that_fails_ends_alone_and_says_why_without_its_url(tmp_path: Path) -> None:
    ended: list[tuple[str, str]] = []
    broadcast = Broadcast(EPOCH, on_ended=lambda name, why: ended.append((name, why)))
    secret = tmp_path / "stream-key-0123456789"
    broadcast.add_target("missing", str(secret / "r.mp4"), "mp4")  # its folder does not exist
    broadcast.add_target("full", "/dev/full", "mp4")  # every write: no space left on device
    good = broadcast.add_target("good", str(tmp_path / "good.mp4"), "mp4")
    play(broadcast, picture(3), 3)
    names = [name for name, _ in ended]
    assert sorted(names) == ["full", "missing"]
    reasons = dict(ended)
    assert reasons["full"] == "No space left on device"
    assert "No such file" in reasons["missing"]
    assert all("stream-key" not in why and "/dev/full" not in why for why in reasons.values())
    assert [t.name for t in broadcast.targets()] == ["good"]
    broadcast.close()
    assert good.ended is None
    info = read(tmp_path / "good.mp4")
    assert info["streams"] == ["audio", "video"] and float(info["duration"]) > 2.5  # type: ignore[arg-type]


def test_the_mixers_tap_records_the_room_as_it_sounds(tmp_path: Path) -> None:
    """The two parts together: a phone's 500 Hz through the mixer's full-mix tap into a recording."""
    from gateway.transcode.audio import AudioCodec, AudioFormat, make_encoder
    from gateway.transcode.mixer import Mixer

    mixer = Mixer(jitter_min_ms=20)
    mixer.add("phone", AudioCodec.PCMA, AudioFormat(AudioCodec.PCMA), lambda frame: None)
    broadcast = Broadcast(EPOCH, video=False)
    mixer.add_tap("broadcast", lambda tick, pcm: broadcast.audio(pcm, EPOCH + tick * 0.02))
    broadcast.add_target("recording", str(tmp_path / "room.mp4"), "mp4")
    encoder = make_encoder(AudioFormat(AudioCodec.PCMA))
    for i in range(100):
        mixer.push("phone", i, encoder.encode(tone(i, 500.0)), None, i * 0.02)
        mixer.tick()
    broadcast.close()
    info = read(tmp_path / "room.mp4")
    assert info["streams"] == ["audio"] and 1.8 <= float(info["duration"]) <= 2.1  # type: ignore[arg-type]
    assert abs(float(info["peak_hz"]) - 500) < 5  # type: ignore[arg-type]


def test_a_second_recording_after_the_first_starts_afresh(tmp_path: Path) -> None:
    broadcast = Broadcast(EPOCH, video=False)
    ticks = iter(range(1000))

    def sound(seconds: float) -> None:
        for _ in range(int(seconds * 50)):
            tick = next(ticks)
            broadcast.audio(tone(tick), EPOCH + tick * 0.02)

    broadcast.add_target("first", str(tmp_path / "1.mp4"), "mp4")
    sound(1)
    broadcast.remove_target("first")
    sound(0.5)  # nobody records
    second = broadcast.add_target("second", str(tmp_path / "2.mp4"), "mp4")
    sound(1)
    broadcast.close()
    assert second.started_at is not None and second.started_at >= EPOCH + 1.45  # (less the AAC priming)
    for name in ("1.mp4", "2.mp4"):
        info = read(tmp_path / name)
        assert info["streams"] == ["audio"] and 0.8 <= float(info["duration"]) <= 1.1, info  # type: ignore[arg-type]
        assert abs(float(info["peak_hz"]) - 440) < 5  # type: ignore[arg-type]


def test_a_recording_is_on_disk_as_it_is_made_audio_only_too(tmp_path: Path) -> None:
    """A crash or a full disk costs at most the last second: fragments of a second at most are
    written as they are made, with or without a picture (without one there are no keyframes)."""
    for video, name in ((False, "audio.mp4"), (True, "video.mp4")):
        broadcast = Broadcast(EPOCH, video=video)
        broadcast.add_target("recording", str(tmp_path / name), "mp4")
        play(broadcast, picture(3) if video else [], 3)
        info = read(tmp_path / name)  # (the file as it is, still being written)
        assert float(info["duration"]) >= 1.9 and abs(float(info["peak_hz"]) - 440) < 5, info  # type: ignore[arg-type]
        if video:
            assert int(info["pictures"]) >= 55  # type: ignore[call-overload]
        broadcast.close()
