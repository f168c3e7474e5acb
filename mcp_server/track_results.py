"""The answer of ``track_by_reasoning`` (:mod:`.track_tool`): its structured content (:class:`TrackOutput`, the
tool's ``outputSchema``), its text and its resource links, bounded whatever the video's length: at most
:data:`MAX_LISTED_TRACKS` tracks and :data:`MAX_LISTED_FRAMES` frames of interest are listed, and the per-frame
masks stay in the run's resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .track_store import TrackRun, track_uri

#: Frames of interest (key frames, track events) listed in one answer, and resource links added.
MAX_LISTED_FRAMES = 30
MAX_LINKS = 12
#: Tracks described in one answer's structured content (all of them are in tracks.json).
MAX_LISTED_TRACKS = 100


class TrackInfo(BaseModel):
    track_id: int
    first_frame: int
    last_frame: int = Field(description="Last frame on which it was visible.")
    frames_present: int
    status: str = Field(description="'active' (visible on the last frame processed) or 'lost'.")
    lost_at: list[int] = Field(description="Frames on which it was lost (at most 20 listed).")
    last_box: list[int] | None = Field(description="Its last visible box [x1, y1, x2, y2], original pixels.")


class FrameOfInterest(BaseModel):
    frame: int
    key_frame: bool
    events: list[str] = Field(description="e.g. 'new #1', 'lost #2', 'found_again #2'.")
    uri: str


class TrackOutput(BaseModel):
    """The structured content of a ``track_by_reasoning`` answer."""

    run_id: str
    query: str
    video: str
    width: int | None
    height: int | None
    fps: float | None
    frames_done: int
    key_frames: list[int] = Field(description="Frames the reasoner looked at (at most 100 listed).")
    tracks: list[TrackInfo]
    tracks_left_out: int = Field(0, description="Tracks not listed here (all are in tracks_uri).")
    frames_of_interest: list[FrameOfInterest]
    frame_uri_template: str
    object_mask_uri_template: str
    tracks_uri: str
    overlay_uri: str | None
    timeline_uri: str = Field(description="A PNG of the run at a glance: one row per track over the frames, in its "
                                          "colour where it is visible; key frames ticked.")
    warnings: list[str]
    summary: str


def encode_run(run: TrackRun, result: Any, *, resource_links: bool = False) -> tuple[TrackOutput, str, list[dict]]:
    """``(structured output, text, resource links)`` of a finished run, bounded whatever the video's length."""
    rid = run.id
    info = result.info or {}
    tracks = [TrackInfo(track_id=t.track_id, first_frame=t.first_frame, last_frame=t.last_frame,
                        frames_present=t.frames_present, status=t.status, lost_at=list(t.lost_at)[:20],
                        last_box=list(t.last_box) if t.last_box else None) for t in result.tracks[:MAX_LISTED_TRACKS]]
    interest: list[FrameOfInterest] = []
    for index, key, events in _pick(run.events, MAX_LISTED_FRAMES):
        interest.append(FrameOfInterest(frame=index, key_frame=key, uri=track_uri(rid, f"frames/{index}"),
                                        events=[f"{e.get('kind')} #{e.get('track_id')}" for e in events]))
    overlay = track_uri(rid, "overlay.mp4") if (run.folder / "overlay.mp4").is_file() else None
    summary = result.summary()
    out = TrackOutput(
        run_id=rid, query=result.query, video=str(result.source), width=info.get("width"), height=info.get("height"),
        fps=info.get("fps"), frames_done=result.frames_done, key_frames=list(result.key_frames)[:100], tracks=tracks,
        tracks_left_out=max(0, len(result.tracks) - MAX_LISTED_TRACKS), frames_of_interest=interest,
        frame_uri_template=track_uri(rid, "frames/{index}"),
        object_mask_uri_template=track_uri(rid, "frames/{index}/objects/{track_id}/mask.png"),
        tracks_uri=track_uri(rid, "tracks.json"), overlay_uri=overlay, timeline_uri=track_uri(rid, "timeline.png"),
        warnings=list(result.warnings)[:10],
        summary=summary)
    lines = [f"run_id {rid}: {summary}"]
    if interest:
        shown = "; ".join(f"{f.frame}{' (key)' if f.key_frame else ''}{': ' + ', '.join(f.events) if f.events else ''}"
                          for f in interest[:15])
        lines.append(f"Frames of interest: {shown}" + (" ..." if len(interest) > 15 else ""))
    last = max(0, run.frames - 1)
    lines.append(f"Per-frame objects with RLE masks: {out.frame_uri_template} (index 0 to {last}); one mask as PNG: "
                 f"{out.object_mask_uri_template}; the whole run: {out.tracks_uri}; at a glance: {out.timeline_uri}"
                 + (f"; overlay video: {overlay}" if overlay else "") + ".")
    links: list[dict[str, str]] = []
    if resource_links:
        links.append({"uri": out.tracks_uri, "name": "tracks.json", "mimeType": "application/json",
                      "description": "The whole run: tracks with area over time, key frames, warnings."})
        links.append({"uri": out.timeline_uri, "name": "timeline", "mimeType": "image/png",
                      "description": "One row per track over the frames, coloured where it is visible."})
        if overlay:
            links.append({"uri": overlay, "name": "overlay video", "mimeType": "video/mp4",
                          "description": "The video with the masks drawn."})
        for f in interest[:MAX_LINKS - len(links)]:
            links.append({"uri": f.uri, "name": f"frame {f.frame}", "mimeType": "application/json",
                          "description": f"Objects and masks on frame {f.frame}."})
    return out, "\n".join(lines), links


def _pick(items: list[Any], n: int) -> list[Any]:
    """At most ``n`` of ``items``, spread evenly, the first and last kept."""
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


__all__ = ["MAX_LISTED_FRAMES", "MAX_LISTED_TRACKS", "FrameOfInterest", "TrackInfo", "TrackOutput", "encode_run"]
