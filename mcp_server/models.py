"""What the ``segment_by_reasoning`` tool takes and returns, described for the language model that calls it.

The descriptions here are what an MCP client shows its model: the tool description, one
description per parameter (``Annotated[..., Field(description=...)]``) and the output schema of
:class:`SegmentationOutput` (the tool's ``outputSchema``; the result's ``structuredContent``).

Coordinates everywhere are pixels of the ORIGINAL image, origin at the top-left corner, x to the
right, y down; boxes are ``[x1, y1, x2, y2]`` with both corners inclusive; points are ``[x, y]``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

TOOL_NAME = "segment_by_reasoning"
URI_SCHEME = "segzero"

TOOL_DESCRIPTION = """\
Find and segment the objects in an image that answer a question or instruction that needs reasoning, \
and return a box, point(s), a score and a pixel-accurate mask for each object.

Good at: requests that name an object only indirectly and need understanding of the scene, e.g. \
"what can I drink here?", "the tool I would use to tighten a screw", "the food that is not healthy", \
"where should I sit?", "the person who is about to catch the ball"; plain references also work \
("the red mug on the left"). Several objects can answer one query ("all the fruit"): each is \
returned separately. A vision-language reasoner thinks about the query (its reasoning text is \
returned), writes boxes and points, and SAM2 turns them into masks.

Not for: reading text (OCR), counting very many tiny things, or questions whose answer is not a \
visible object; if nothing matches, the result has no objects and parse_status says why.

Coordinates: pixels of the ORIGINAL image (not resized), origin at the top-left, x to the right, \
y down. Boxes are [x1, y1, x2, y2] with both corners inclusive; points are [x, y].

Returns (structuredContent, schema in outputSchema): reasoning, parse_status ("ok", "no_objects", \
or "no_answer" / "invalid_json" / "invalid_objects" when the model's answer could not be used, with \
parse_issues explaining and raw_output carrying its text), image_width / image_height, objects \
(index, box, points, score = SAM2's predicted IoU, area in pixels, and the mask as COCO RLE or \
polygons as requested), union_area, timings_ms and result_id. The text content is a short summary.

Masks: RLE is COCO run-length encoding, {"size": [height, width], "counts": "<compressed string>"}, \
column-major (Fortran order), decodable with pycocotools.mask.decode. Polygons are flat lists \
[x0, y0, x1, y1, ...] of outer contours in pixel coordinates. Results are kept small (the text is a \
summary of a few thousand characters at most); when inline masks would make a result too large, \
masks_left_out lists the objects whose masks are only available by URI. Full-resolution 0/255 PNG \
masks are also available as MCP resources (their URIs are in the text and the structured content; \
read them with resources/read): \
segzero://results/{result_id}/mask.png (union of all objects), \
segzero://results/{result_id}/objects/{index}/mask.png, segzero://results/{result_id}/overlay.png \
(a picture with masks, boxes and points drawn) and segzero://results/{result_id}/result.json \
(everything, RLE masks included). Results are kept for a limited number of recent calls. Set \
mask_encoding="none" when only boxes are needed (smallest result); set include_overlay=true to also \
get a small picture of the result inline (costs context tokens).

Images: a local file path (only inside the folders the server allows), an http(s) URL (only if the \
server enables URL fetching), a data: URL or a bare base64 string of the image file, or a \
segzero:// resource URI of an earlier result. One call takes seconds on a GPU and longer on a CPU; \
when the server is busy it answers "busy" and the call can simply be retried a few seconds later.\
"""

PromptFormatName = Literal["visionreasoner", "segzero", "grounding", "qwen3vl"]
MaskEncodingName = Literal["rle", "polygons", "none"]
ParseStatusName = Literal["ok", "no_objects", "no_answer", "invalid_json", "invalid_objects"]

# --- tool parameters (module-level so that the SDKs can resolve the tool's annotations) ---------

ImageArg = Annotated[str, Field(
    min_length=1,
    description=(
        "The image. One of: a local file path (absolute, or relative to the server's working directory; "
        "only files inside the folders the server allows can be read, e.g. '/home/me/photos/kitchen.jpg'); "
        "an http:// or https:// URL (only when the server was started with URL fetching enabled; private and "
        "loopback addresses are refused); a data: URL such as 'data:image/png;base64,iVBORw0KGgo...'; a bare "
        "base64 string of the image file's bytes; or a segzero://results/{result_id}/... resource URI of an "
        "earlier result. PNG, JPEG, WebP, BMP, TIFF and GIF (first frame) are accepted."
    ),
)]
QueryArg = Annotated[str, Field(
    min_length=1,
    description=(
        "What to find, in natural language: a question or an instruction, e.g. \"What can I have if I'm "
        "thirsty?\", 'the tool to tighten a screw', 'the dog on the right', 'all the fruit'. Write the request "
        "as the user meant it; it does not need to name the object. At most 2000 characters."
    ),
)]
PromptFormatArg = Annotated[PromptFormatName | None, Field(
    description=(
        "Answer grammar to ask the reasoner for. Leave unset (null): the server uses the one its model was "
        "trained for. 'visionreasoner' (multi-object VisionReasoner), 'segzero' (single-object Seg-Zero), "
        "'grounding' (plain Qwen2.5-VL instruct models), 'qwen3vl' (Qwen3-VL instruct models, 0-1000 grid)."
    ),
)]
MaxObjectsArg = Annotated[int | None, Field(
    ge=1, le=100,
    description=(
        "Keep at most this many objects (1 to 100; the first ones the model wrote are kept). Default: the "
        "server's limit (50); a larger value is capped at the server's limit. Use 1 when exactly one object is "
        "wanted."
    ),
)]
MaskEncodingArg = Annotated[MaskEncodingName, Field(
    description=(
        "How each object's mask is returned in the structured result: 'rle' (default; COCO run-length "
        "encoding {size: [height, width], counts: string}, column-major, compact and exact), 'polygons' (flat "
        "[x0, y0, x1, y1, ...] outer contours, easy to draw or reason about, approximate) or 'none' (boxes, "
        "points, scores and areas only; the smallest result). Full-resolution PNG masks stay available as "
        "resources in every case."
    ),
)]
IncludeOverlayArg = Annotated[bool, Field(
    description=(
        "Also return a picture of the result inline (the image with masks in colour, boxes and points drawn), "
        "scaled to at most 1024 px and compressed to stay well under 1 MB. Useful to show a user or to check "
        "the answer visually; costs context tokens. The same picture is always available as the resource "
        "segzero://results/{result_id}/overlay.png."
    ),
)]

VerifyArg = Annotated[bool, Field(
    description=(
        "Run the self-check loop: after the masks, the verifier model looks at a numbered picture of them with the "
        "query and keeps the objects that answer it, drops the others, or asks for one retry with a hint. Slower "
        "(one more model call per round); off by default. What it did is in `verification` and parse_issues."
    ),
)]
VerifyRoundsArg = Annotated[int, Field(
    ge=1, le=5,
    description="At most this many verifier calls when verify is true (1 to 5; default 2 = one retry allowed).",
)]


# --- the steering tools (the calling agent proposes, our segmenter draws the masks) -----------------

PROMPTS_TOOL = "segment_by_prompts"
REFINE_TOOL = "refine_object"
INSPECT_TOOL = "inspect_result"
SELECT_TOOL = "select_objects"

_COORDS = ("Coordinates are pixels of the ORIGINAL image (not resized), origin at the top-left, x to the right, "
           "y down; boxes [x1, y1, x2, y2] with both corners inclusive, points [x, y].")
_SAME_RESULT = ("Returns a new result with a new result_id, in the same form as segment_by_reasoning (structured "
                "content, text summary, masks as RLE / polygons / resources, optional inline overlay).")
_LIVE = ("Results stay usable by id for a limited time and count (the server's live-result limits); an expired "
         "id gives an error saying what to send instead.")

PROMPTS_DESCRIPTION = f"""Segment objects that YOU locate: give a box and/or points per object and get a pixel-accurate SAM2 mask, score and area for each. Use it when you can see where the objects are (you do the reasoning, the server draws the masks), then check the masks with inspect_result, fix one with refine_object, and keep the good ones with select_objects.

image: the image (same forms as segment_by_reasoning: local path inside the allowed folders, data: URL or base64, an http(s) URL when enabled, or a segzero:// resource URI), OR result_id of an earlier result to reuse its image (faster: the image embedding is cached). Send exactly one of them.

objects: a list like [{{"box": [x1, y1, x2, y2], "label": "cup"}}, {{"points": [[x, y]], "negative_points": [[x, y]]}}]. Each object needs a box or at least one positive point; negative_points mark what is NOT the object; label is optional text kept in the result. Boxes and points slightly outside the image are clamped (reported in the object's issues). {_COORDS}

{_SAME_RESULT} Each object keeps its box, points and label. {_LIVE}"""

REFINE_DESCRIPTION = f"""Fix one object's mask: recompute object `index` of result `result_id` with extra clicks. add_points [[x, y], ...] are pixels that belong to the object (the mask should grow there); remove_points [[x, y], ...] are pixels that do not (the mask should shrink there); box [x1, y1, x2, y2] replaces the object's box and starts over from it. The previous mask is fed back to SAM2, as in its interactive refinement. Send at least one of them. {_COORDS}

{_SAME_RESULT} The old result is left unchanged (its id and resources still work), so you can compare both with inspect_result. {_LIVE}"""

INSPECT_DESCRIPTION = f"""Look at a result to check its masks: returns one picture of the image with every object's mask outlined and lightly filled in its own colour and its index written on a label of the same colour, plus a text listing each index with its box, score and area. indices (optional) shows only those objects; crops=true adds one zoomed tile per object around its box with the mask outline (use it for small objects or to check edges). The picture fits the server's inline picture budget. {_LIVE}"""

SELECT_DESCRIPTION = f"""Keep only some objects of a result: indices [i, j, ...] (in the order you want them; [] keeps none). {_SAME_RESULT} Use it for the final answer, so that what you hand on holds only the right objects. {_LIVE}"""

_POINT_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_POINTS_SCHEMA = {"type": "array", "items": _POINT_SCHEMA}
_BOX_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}

OptionalImageArg = Annotated[str | None, Field(
    description=(
        "The image, in any form segment_by_reasoning accepts (local path inside the allowed folders, data: URL, "
        "bare base64, http(s) URL when enabled, segzero:// resource URI). Leave it out when you send result_id."
    ),
)]
BaseResultIdArg = Annotated[str | None, Field(
    description="Instead of image: the result_id of an earlier result whose image to reuse (its embedding is cached).",
)]
ResultIdArg = Annotated[str, Field(description="The result_id of an earlier result (from any of this server's tools).")]
ObjectsArg = Annotated[list[Any], Field(
    description=(
        "The objects to segment, e.g. [{\"box\": [10, 20, 200, 240], \"label\": \"cup\"}, {\"points\": [[320, 110]], "
        "\"negative_points\": [[300, 150]]}]. Keys: box [x1, y1, x2, y2], points [[x, y], ...] (on the object), "
        "negative_points [[x, y], ...] (not on it), label (text). Each object needs a box or a positive point. "
        "Original-image pixels."
    ),
    json_schema_extra={"items": {"type": "object", "additionalProperties": False, "properties": {
        "box": _BOX_SCHEMA, "points": _POINTS_SCHEMA, "negative_points": _POINTS_SCHEMA,
        "label": {"type": "string"}}}},
)]
IndexArg = Annotated[int, Field(description="The object's index in the result's objects (0-based, as numbered by "
                                            "inspect_result).")]
AddPointsArg = Annotated[list[Any] | None, Field(
    description="Pixels [[x, y], ...] that belong to the object: the mask should cover them.",
    json_schema_extra={"anyOf": [_POINTS_SCHEMA, {"type": "null"}]},
)]
RemovePointsArg = Annotated[list[Any] | None, Field(
    description="Pixels [[x, y], ...] that do not belong to the object: the mask should leave them out.",
    json_schema_extra={"anyOf": [_POINTS_SCHEMA, {"type": "null"}]},
)]
BoxArg = Annotated[list[Any] | None, Field(
    description="A new box [x1, y1, x2, y2] for the object (replaces its box; refinement starts over from it).",
    json_schema_extra={"anyOf": [_BOX_SCHEMA, {"type": "null"}]},
)]
InspectIndicesArg = Annotated[list[Any] | None, Field(
    description="Show only these objects (their numbers stay the result's indices); leave out for all.",
    json_schema_extra={"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]},
)]
SelectIndicesArg = Annotated[list[Any], Field(
    description="The indices of the objects to keep, in the order wanted, e.g. [2, 0]; [] keeps none.",
    json_schema_extra={"items": {"type": "integer"}},
)]
CropsArg = Annotated[bool, Field(description="Add one zoomed tile per object around its box with its mask outline.")]


class InspectionOutput(BaseModel):
    """The structured result of ``inspect_result`` (the picture itself is the image content)."""

    result_id: str = Field(description="The result inspected.")
    indices: list[int] = Field(description="The objects shown, by their index in the result (the numbers drawn).")
    crops: bool = Field(description="Whether crop tiles were drawn.")
    text: str = Field(description="Each shown object's number with its box, score and area, and notes on the picture.")
    mime_type: str = Field(description="image/png or image/jpeg.")
    width: int = Field(description="Width of the picture in pixels.")
    height: int = Field(description="Height of the picture in pixels.")
    picture_bytes: int = Field(description="Size of the encoded picture.")
    reduced: bool = Field(description="The picture was drawn smaller or as JPEG to fit the budget.")


# --- output ---------------------------------------------------------------------------------------


class CocoRle(BaseModel):
    """A COCO run-length-encoded mask (``pycocotools.mask.decode`` reads it)."""

    size: list[int] = Field(description="[height, width] of the mask = of the original image.")
    counts: str = Field(description="COCO compressed RLE string; runs alternate 0/1 starting with 0, column-major.")


class SegmentedObjectOut(BaseModel):
    """One object that answers the query."""

    index: int = Field(description="Position in `objects` (0-based); used in the object's mask resource URI.")
    box: list[int] | None = Field(
        description="[x1, y1, x2, y2] in original-image pixels, both corners inclusive; null for a point-only object.")
    points: list[list[int]] = Field(description="Positive points [[x, y], ...] given to SAM2, original-image pixels.")
    score: float | None = Field(description="SAM2's predicted IoU of the mask (0..1); null when masks were not computed.")
    area: int = Field(description="Mask area in pixels (0 without a mask).")
    label: str | None = Field(default=None, description="A label, when the model wrote one.")
    issues: list[str] = Field(default_factory=list,
                              description="What was repaired for this object (clamped box, dropped point, ...).")
    rle: CocoRle | None = Field(default=None, description="The mask as COCO RLE (mask_encoding='rle').")
    polygons: list[list[float]] | None = Field(
        default=None, description="The mask as flat [x0, y0, x1, y1, ...] contours (mask_encoding='polygons').")
    mask_uri: str = Field(description="Resource URI of this object's full-resolution 0/255 PNG mask.")


class LeftOutMask(BaseModel):
    """An object whose mask is not inline in this result."""

    index: int = Field(description="The object's index in `objects`.")
    mask_uri: str = Field(description="Resource URI of its full-resolution 0/255 PNG mask.")


class SegmentationOutput(BaseModel):
    """The structured result of ``segment_by_reasoning``."""

    result_id: str = Field(description="Id of this result; its resources are segzero://results/{result_id}/...")
    query: str = Field(description="The query, as given.")
    prompt_format: str = Field(description="The answer grammar that was used.")
    parse_status: ParseStatusName = Field(
        description="'ok' (objects found), 'no_objects' (the model answered that nothing matches), or 'no_answer' / "
                    "'invalid_json' / 'invalid_objects' (the model's answer could not be used; see parse_issues and "
                    "raw_output).")
    parse_issues: list[str] = Field(description="Everything repaired or dropped while reading the model's answer.")
    reasoning: str = Field(description="The reasoner's thinking (its <think> text); may be empty.")
    raw_output: str | None = Field(
        default=None, description="The reasoner's whole text, only when its answer could not be used (truncated).")
    truncated: bool = Field(description="The model's output was cut off by its token budget.")
    image_width: int = Field(description="Width of the original image in pixels.")
    image_height: int = Field(description="Height of the original image in pixels.")
    objects: list[SegmentedObjectOut] = Field(description="The objects found, in the order the model wrote them.")
    union_area: int = Field(description="Pixels covered by at least one object's mask.")
    mask_encoding: MaskEncodingName = Field(description="How masks are encoded in `objects`.")
    timings_ms: dict[str, float] = Field(description="Milliseconds per stage (load, reason, parse, segment, total, ...).")
    mask_uris: list[str] = Field(description="Resource URIs of the objects' PNG masks, in object order.")
    union_mask_uri: str = Field(description="Resource URI of the union mask PNG (all objects).")
    overlay_uri: str = Field(description="Resource URI of the overlay picture (PNG).")
    result_uri: str = Field(description="Resource URI of the full result as JSON (RLE masks included).")
    masks_left_out: list[LeftOutMask] = Field(
        default_factory=list,
        description="Objects whose inline mask (rle / polygons) was left out of this result to keep it within the "
                    "server's result size budget; read each from its mask_uri. Empty when every mask is inline.")
    masks_left_out_reason: str | None = Field(default=None, description="Why masks were left out, when they were.")
    notes: list[str] = Field(default_factory=list,
                             description="Anything else shortened or left out of this result, and where to find it.")
    verification: dict[str, Any] | None = Field(
        default=None, description="What the self-check loop did (verify=true): its rounds, the verifier's verdicts "
                                  "and text; null when it did not run.")


def result_uri(result_id: str, part: str) -> str:
    """``segzero://results/{result_id}/{part}``."""
    return f"{URI_SCHEME}://results/{result_id}/{part}"


__all__ = [
    "TOOL_NAME", "TOOL_DESCRIPTION", "URI_SCHEME", "CocoRle", "LeftOutMask", "SegmentedObjectOut", "SegmentationOutput",
    "ImageArg", "QueryArg", "PromptFormatArg", "MaxObjectsArg", "MaskEncodingArg", "IncludeOverlayArg",
    "result_uri", "VerifyArg", "VerifyRoundsArg", "PROMPTS_TOOL", "REFINE_TOOL", "INSPECT_TOOL", "SELECT_TOOL", "PROMPTS_DESCRIPTION",
    "REFINE_DESCRIPTION", "INSPECT_DESCRIPTION", "SELECT_DESCRIPTION", "InspectionOutput",
]
