"""A segmentation result as one MCP tool result, sized for an agent's context.

Budgets, all without flags (defaults in :class:`~.settings.ServerSettings`):

* the text content is :func:`segzero_tool.summary.summarize`: under 8,000 characters for any number
  of objects, never any base64;
* the whole tool result (text + structured content + inline picture + links) stays under
  ``max_result_bytes`` (512 KiB). Every object's box, points, score, area and mask URI always
  stay; inline masks (RLE or polygons) are added in object order while they fit, and those that
  do not are listed in ``masks_left_out`` with their URIs and the reason. An inline overlay that
  was asked for gets at most half of what is left after the objects (all of it when no masks are
  inline) and is re-encoded smaller to fit, or left out with a note.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import SegmentationOutput, result_uri

if TYPE_CHECKING:
    from PIL import Image

    from segzero_tool.result import SegmentationResult

_RAW_OUTPUT_CHARS = 4000
#: Bytes of JSON framing per content block and for the result envelope (generous).
_BLOCK_OVERHEAD = 200
#: An inline overlay smaller than this is not worth sending.
_MIN_OVERLAY_B64 = 12_000


@dataclass
class Encoded:
    """What the tool returns: structured output, text, optional inline picture, links to add."""

    output: SegmentationOutput
    text: str
    overlay: tuple[bytes, str] | None
    links: list[dict[str, str]]

    def wire_bytes(self) -> int:
        """About the bytes of the JSON-RPC result these parts make (what the budget bounds)."""
        n = len(json.dumps(self.output.model_dump(mode="json"), ensure_ascii=False).encode("utf-8"))
        n += len(json.dumps(self.text, ensure_ascii=False).encode("utf-8")) + 2 * _BLOCK_OVERHEAD
        if self.overlay is not None:
            n += 4 * ((len(self.overlay[0]) + 2) // 3) + _BLOCK_OVERHEAD
        n += sum(len(json.dumps(link)) + _BLOCK_OVERHEAD for link in self.links)
        return n


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # Level 1: about 3x faster than the default 6 for overlays, for ~20% larger files (measured by
    # benchmarks/mcp_load.py: the overlay PNG was most of the server's CPU per call).
    img.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def fit_image(img: Image.Image, max_b64_bytes: int, *, png: bytes | None = None) -> tuple[bytes, str]:
    """Encode ``img`` so that its base64 text is at most ``max_b64_bytes``: PNG if it fits, else JPEG at
    falling qualities, then smaller sizes (down to 32 px). Returns ``(bytes, mime_type)``."""
    from PIL import Image as _Image

    limit = max_b64_bytes * 3 // 4  # base64 grows the data by 4/3
    png = png if png is not None else encode_png(img)
    if len(png) <= limit:
        return png, "image/png"
    rgb = img.convert("RGB")
    data = b""
    while True:
        for quality in (85, 70, 55, 40):
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=quality, optimize=True)
            data = buf.getvalue()
            if len(data) <= limit:
                return data, "image/jpeg"
        if max(rgb.size) <= 32:
            return data, "image/jpeg"
        rgb = rgb.resize((max(1, int(rgb.width * 0.7)), max(1, int(rgb.height * 0.7))), _Image.BILINEAR)


def _json_len(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8"))


def encode_result(result: SegmentationResult, rid: str, *, mask_encoding: str, max_bytes: int,
                  picture: Image.Image | None = None, picture_png: bytes | None = None,
                  overlay_max_bytes: int = 800_000, stored: dict[str, Any] | None = None,
                  resource_links: bool = False, budget_hint: str | None = None, format_hint: str | None = None,
                  overlay_max_side: int = 1024) -> Encoded:
    """Build the tool result for ``result`` (stored under ``rid``) within ``max_bytes``.

    Args:
        result: the segmentation result (masks computed or not).
        rid: its id in the result store.
        mask_encoding: ``rle``, ``polygons`` or ``none``.
        max_bytes: budget of the whole tool result.
        picture: the overlay picture to inline (``None``: no inline picture).
        picture_png: its PNG, when already encoded.
        overlay_max_bytes: largest inline picture (base64 bytes), within the budget.
        stored: the stored ``result.to_dict("rle")`` to reuse for RLE masks.
        resource_links: add ``resource_link`` blocks too.
        budget_hint: how to raise the token budget, for the text (see :func:`summarize`).
        overlay_max_side: for the links' descriptions.
    """
    from segzero_tool.summary import TEXT_BUDGET, Links, summarize

    d = stored if (stored is not None and mask_encoding == "rle") else result.to_dict(mask_encoding)  # type: ignore[arg-type]
    masks: list[Any] = []
    objects: list[dict[str, Any]] = []
    for i, o in enumerate(d["objects"]):
        masks.append(o.get("rle") if mask_encoding == "rle" else o.get("polygons") if mask_encoding == "polygons"
                     else None)
        objects.append({
            "index": i, "box": o["box"], "points": o["points"], "score": o["score"], "area": o["area"],
            "label": o.get("label"), "issues": list(o.get("issues", [])), "rle": None, "polygons": None,
            "mask_uri": result_uri(rid, f"objects/{i}/mask.png"),
        })
    usable = result.parse_status.value in ("ok", "no_objects")
    fields: dict[str, Any] = dict(
        result_id=rid, query=result.query, prompt_format=result.prompt_format,
        parse_status=result.parse_status.value, parse_issues=list(result.parse_issues),
        reasoning=result.reasoning, raw_output=None if usable else result.raw_output[:_RAW_OUTPUT_CHARS],
        truncated=result.truncated, image_width=result.image_size[0], image_height=result.image_size[1],
        objects=objects, union_area=int(result.union_mask.sum()), mask_encoding=mask_encoding,
        timings_ms={k: round(v, 1) for k, v in result.timings.items()},
        mask_uris=[o["mask_uri"] for o in objects], union_mask_uri=result_uri(rid, "mask.png"),
        overlay_uri=result_uri(rid, "overlay.png"), result_uri=result_uri(rid, "result.json"),
        masks_left_out=[], masks_left_out_reason=None, notes=[], verification=d.get("verification"),
    )
    links = _links(fields, overlay_max_side) if resource_links else []
    text_reserve = TEXT_BUDGET * 2 + 2 * _BLOCK_OVERHEAD  # JSON escaping can at most double the text
    link_bytes = sum(_json_len(link) + _BLOCK_OVERHEAD for link in links)
    base = _json_len(fields) + text_reserve + link_bytes + _BLOCK_OVERHEAD
    notes: list[str] = []
    if base > max_bytes:  # only with a very small budget or a huge answer: shorten the free text first
        fields["raw_output"] = None
        fields["reasoning"] = fields["reasoning"][:1000]
        fields["parse_issues"] = fields["parse_issues"][:20]
        for o in objects:
            o["issues"] = o["issues"][:3]
        notes.append("The reasoning, raw output and issue lists were shortened to fit this server's result budget "
                     "(--max-result-bytes); the full result is in result.json.")
        base = _json_len(fields) + text_reserve + link_bytes + _BLOCK_OVERHEAD + 2 * len(notes[0])
    room = max_bytes - base
    wanted = [i for i, m in enumerate(masks) if m is not None]
    overlay: tuple[bytes, str] | None = None
    if picture is not None:
        share = room if not wanted else room // 2
        cap = min(overlay_max_bytes, share - _BLOCK_OVERHEAD)
        if cap >= _MIN_OVERLAY_B64:
            overlay = fit_image(picture, cap, png=picture_png)
            room -= 4 * ((len(overlay[0]) + 2) // 3) + _BLOCK_OVERHEAD
        else:
            notes.append(f"The inline overlay picture was left out to keep the result under {max_bytes:,} bytes; read "
                         f"it from {fields['overlay_uri']}.")
    left_out: list[int] = []
    for i in wanted:
        key = "rle" if mask_encoding == "rle" else "polygons"
        cost = _json_len(masks[i]) + len(key) + 8
        if cost <= room:
            objects[i][key] = masks[i]
            room -= cost
        else:
            left_out.append(i)
    reason = None
    if left_out:
        reason = (f"they did not fit in this server's result budget of {max_bytes:,} bytes (--max-result-bytes); "
                  "each is available as a full-resolution PNG at its mask_uri (resources/read), and all of them as "
                  "COCO RLE in result_uri")
        fields["masks_left_out"] = [{"index": i, "mask_uri": objects[i]["mask_uri"]} for i in left_out]
        fields["masks_left_out_reason"] = reason
    fields["notes"] = notes
    output = SegmentationOutput(**fields)
    link_set = Links(
        result_id=rid, object_mask=lambda i: result_uri(rid, f"objects/{i}/mask.png"),
        object_mask_template=result_uri(rid, "objects/{index}/mask.png"), union_mask=fields["union_mask_uri"],
        overlay=fields["overlay_uri"], result_json=fields["result_uri"],
    )
    text = summarize(result, links=link_set, omitted_masks=left_out,
                     omitted_reason=f"they did not fit in the result budget of {max_bytes:,} bytes." if left_out
                     else None, budget_hint=budget_hint, format_hint=format_hint, notes=notes)
    return Encoded(output, text, overlay, links)


def _links(fields: dict[str, Any], overlay_max_side: int) -> list[dict[str, str]]:
    out = [{"uri": fields["union_mask_uri"], "name": "union mask", "mimeType": "image/png",
            "description": "Full-resolution 0/255 PNG mask of all objects (original image size)."}]
    for o in fields["objects"]:
        out.append({"uri": o["mask_uri"], "name": f"object {o['index']} mask", "mimeType": "image/png",
                    "description": f"Full-resolution 0/255 PNG mask of object #{o['index']}."})
    out.append({"uri": fields["overlay_uri"], "name": "overlay", "mimeType": "image/png",
                "description": f"The image with masks, boxes and points drawn (longest side <= {overlay_max_side} px)."})
    out.append({"uri": fields["result_uri"], "name": "result.json", "mimeType": "application/json",
                "description": "The whole result as JSON, masks as COCO RLE."})
    return out


def image_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


__all__ = ["Encoded", "encode_result", "encode_png", "fit_image", "image_b64"]
