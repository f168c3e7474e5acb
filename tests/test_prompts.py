"""The prompt strings are pinned byte for byte: the released checkpoints were trained on them."""

import pytest

from segzero_tool.errors import QueryError
from segzero_tool.prompts import (
    EVAL_STRIP_CHARS,
    PromptFormat,
    build_prompt,
    normalize_question,
    validate_query,
)

VR_EXPECTED = (
    'Please find "what can i have if i\'m thirsty?" with bboxs and points.Compare the difference between '
    "object(s) and find the most closely matched object(s).Output the thinking process in <think> </think> "
    "and final answer in <answer> </answer> tags.Output the bbox(es) and point(s) inside the interested "
    'object(s) in JSON format.i.e., <think> thinking process here </think><answer>[{"bbox_2d": '
    '[10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>'
)

SZ_EXPECTED = (
    "Please find 'the unusal object in the image' with bbox and points.Compare the difference between objects "
    "and find the most closely matched one.Output the thinking process in <think> </think> and final answer in "
    "<answer> </answer> tags.Output the one bbox and points of two largest inscribed circles inside the "
    "interested object in JSON format.i.e., <think> thinking process here </think><answer>{'bbox': "
    "[10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>"
)


def test_visionreasoner_prompt_exact():
    assert build_prompt("What can I have if I'm thirsty?") == VR_EXPECTED
    assert build_prompt("What can I have if I'm thirsty?", "visionreasoner") == VR_EXPECTED


def test_segzero_prompt_exact():
    assert build_prompt("the unusal object in the image.", PromptFormat.SEGZERO) == SZ_EXPECTED


def test_grounding_prompt_pinned():
    p = build_prompt("The Red Cup.", "grounding")
    assert p == (
        'Locate every object in the image that matches "the red cup". Output the thinking process in <think> '
        "</think> and final answer in <answer> </answer> tags. The answer is a JSON list with one entry per "
        'object: its bounding box as "bbox_2d": [x1, y1, x2, y2] and one point inside the object as '
        '"point_2d": [x, y], in absolute pixel coordinates of the image. i.e., <think> thinking process here '
        '</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], '
        '"point_2d": [302,410]}]</answer>'
    )


@pytest.mark.parametrize(
    ("raw", "chars", "expected"),
    [
        ("The Cup.", ".", "the cup"),  # training / inference: strip dots only
        ("The Cup?", ".", "the cup?"),  # question mark kept at training time
        ("The Cup?", EVAL_STRIP_CHARS, "the cup"),  # evaluation scripts strip .\"?!
        ('"Quoted!"', EVAL_STRIP_CHARS, "quoted"),
        ("  x. ", ".", "  x. "),  # strip() without whitespace: the period survives
        ("...dots...", ".", "dots"),
        ("İ", ".", "i̇"),  # 'İ'.lower() is two code points, as in Python
    ],
)
def test_question_normalisation(raw, chars, expected):
    assert normalize_question(raw, chars) == expected


def test_query_with_template_placeholders_is_kept_verbatim():
    p = build_prompt("find {Answer} and {Question}")
    assert 'Please find "find {answer} and {question}" with bboxs' in p


def test_strip_chars_override():
    assert build_prompt("Cup?", strip_chars=EVAL_STRIP_CHARS).startswith('Please find "cup" with')


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_query_rejected(bad):
    with pytest.raises(QueryError, match="empty"):
        validate_query(bad)


def test_long_query_rejected():
    with pytest.raises(QueryError, match="limit"):
        validate_query("x" * 5000)
    assert validate_query("x" * 5000, max_chars=6000)


def test_non_string_query_rejected():
    with pytest.raises(QueryError):
        validate_query(None)


def test_prompt_format_parse():
    assert PromptFormat.parse("VisionReasoner") is PromptFormat.VISIONREASONER
    assert PromptFormat.parse("seg-zero") is PromptFormat.SEGZERO
    with pytest.raises(ValueError, match="choose one of"):
        PromptFormat.parse("llava")
