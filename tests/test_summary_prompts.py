"""The agent's text about a result made from prompts: 'from N prompted objects', never "for the query ''"."""

from __future__ import annotations

import numpy as np
from scripted import BoxSegmenter

from segzero_tool.steer import segment_by_prompts, select_objects
from segzero_tool.summary import Links, from_prompts, summarize


def _result(query=""):
    img = np.zeros((60, 80, 3), np.uint8)
    return segment_by_prompts(BoxSegmenter(), img, [{"box": [1, 2, 30, 40]}, {"points": [[50, 20]]}], query=query)


def test_prompts_result_says_prompted_objects():
    r = _result()
    assert from_prompts(r)
    text = summarize(r, links=Links(result_id="r-1"))
    assert text.startswith("Found 2 object(s) from 2 prompted objects in the 80x60 image (result_id r-1).")
    assert "for the query" not in text
    assert "#0: box [1, 2, 30, 40]" in text


def test_prompts_result_with_a_query_names_it():
    text = summarize(_result("the cups"))
    assert "from 2 prompted objects (query 'the cups')" in text


def test_empty_prompts_result_says_what_to_do():
    text = summarize(select_objects(_result(), []))
    assert text.startswith("No object in this result from prompted objects in the 80x60 image")
    assert "for the query" not in text and "segment_by_prompts" in text and "concrete query" not in text
