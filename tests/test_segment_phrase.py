"""Concept segmentation (issue #14): ``segment_phrase`` with a scripted concept model (exact boxes, order,
threshold, cap), the tiny random SAM 3 through ``Sam3ConceptSegmenter.from_pretrained`` end to end, hostile
inputs as typed errors before any model runs, ``segzero phrase`` in a subprocess with the tiny folder, and a
gated hub repository as one line with exit 7."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_main
from PIL import Image

from segzero_tool.errors import ImageLoadError, ModelLoadError, PromptError
from segzero_tool.images import load_image
from segzero_tool.parse_types import ParseStatus
from segzero_tool.phrase import MAX_PHRASE_CHARS, PHRASE_FORMAT, segment_phrase
from segzero_tool.result import SegmentationResult
from segzero_tool.segmenters.concept import ConceptInstance, ConceptSegmenter, Sam3ConceptSegmenter
from segzero_tool.steer import select_objects

REPO = Path(__file__).resolve().parents[1]
COFFEE = str(REPO / "examples" / "coffee.png")  # 600 x 400


def _mask(box: tuple[int, int, int, int], w: int = 600, h: int = 400) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    return m


class ScriptedConcept(ConceptSegmenter):
    """A concept model with a fixed answer per phrase (a test double through the public class). It returns
    every scripted instance, in the scripted (unsorted) order, whatever the threshold: segment_phrase must
    filter, sort and cap itself."""

    model_id = "scripted-concept"

    def __init__(self, answers: dict[str, list[tuple[tuple[float, float, float, float], float]]]) -> None:
        self.answers = answers
        self.calls: list[dict] = []

    def find(self, image, phrase, *, threshold=0.5, mask_threshold=0.5, max_instances=None):
        self.calls.append({"phrase": phrase, "threshold": threshold, "max_instances": max_instances,
                           "shape": image.shape})
        h, w = image.shape[:2]
        return [ConceptInstance(box=box, score=score, mask=_mask(tuple(int(v) for v in box), w, h))
                for box, score in self.answers.get(phrase, [])]


CUPS = {"cup": [((10, 20, 100.4, 120.6), 0.62), ((200, 100, 300, 200), 0.91), ((400, 50, 450, 90), 0.35),
                ((50, 300, 120, 380), 0.77)]}


# --- the library, scripted -----------------------------------------------------------------------------


def test_instances_sorted_by_score_thresholded_and_boxed():
    model = ScriptedConcept(CUPS)
    result = segment_phrase(COFFEE, "  cup ", segmenter=model)
    assert isinstance(result, SegmentationResult)
    assert [o.score for o in result.objects] == pytest.approx([0.91, 0.77, 0.62])
    # continuous detector corners -> the inclusive pixels they cover: x2 = 300.0 ends at pixel 299
    assert [o.box for o in result.objects] == [(200, 100, 299, 199), (50, 300, 119, 379), (10, 20, 100, 120)]
    assert all(o.points == () and o.mask is not None and o.mask.shape == (400, 600) for o in result.objects)
    assert result.objects[0].area == 101 * 101
    assert result.query == "cup" and result.prompt_format == PHRASE_FORMAT == "phrase"
    assert result.reasoner is None and result.reasoning == "" and result.raw_output == ""
    assert result.segmenter == "scripted-concept" and result.parse_status is ParseStatus.OK and result.ok
    assert result.image_size == (600, 400) and result.image is not None and result.parse_issues == ()
    assert model.calls == [{"phrase": "cup", "threshold": 0.5, "max_instances": None, "shape": (400, 600, 3)}]
    assert set(result.timings) == {"load", "segment", "total"}
    back = SegmentationResult.from_dict(json.loads(result.to_json()))
    assert back.prompt_format == "phrase" and back.query == "cup" and back.boxes.tolist() == result.boxes.tolist()


def test_threshold_and_cap():
    model = ScriptedConcept(CUPS)
    low = segment_phrase(COFFEE, "cup", segmenter=model, threshold=0.3)
    assert [o.score for o in low.objects] == pytest.approx([0.91, 0.77, 0.62, 0.35])
    assert len(segment_phrase(COFFEE, "cup", segmenter=model, threshold=0.77).objects) == 1  # strictly above
    capped = segment_phrase(COFFEE, "cup", segmenter=model, threshold=0.3, max_instances=2)
    assert [o.score for o in capped.objects] == pytest.approx([0.91, 0.77])
    assert model.calls[-1]["max_instances"] == 3  # one more: to tell whether the cap cut instances off
    assert "only the best 2" in capped.parse_issues[0]
    exact = segment_phrase(COFFEE, "cup", segmenter=model, threshold=0.3, max_instances=4)
    assert len(exact.objects) == 4 and exact.parse_issues == ()
    none = segment_phrase(COFFEE, "cup", segmenter=model, threshold=0.95)
    assert none.objects == [] and none.parse_status is ParseStatus.NO_OBJECTS and not none.ok
    assert "best scored 0.91" in none.parse_issues[0] and "lower threshold" in none.parse_issues[0]
    nothing = segment_phrase(COFFEE, "giraffe", segmenter=model)
    assert nothing.objects == [] and "no instance of 'giraffe'" in nothing.parse_issues[0]


def test_result_reuse_and_steering():
    model = ScriptedConcept(CUPS)
    first = segment_phrase(COFFEE, "cup", segmenter=model)
    again = segment_phrase(first, "cup", segmenter=model, threshold=0.6)  # a result's image is reused
    assert again.image is first.image and len(again.objects) == 3
    kept = select_objects(first, [2, 0])
    assert [o.score for o in kept.objects] == pytest.approx([0.62, 0.91]) and kept.prompt_format == "phrase"
    loaded = load_image(COFFEE)
    assert segment_phrase(loaded, "cup", segmenter=model).boxes.tolist() == first.boxes.tolist()


@pytest.mark.parametrize(("phrase", "threshold", "cap", "message"), [
    ("", 0.5, None, "phrase is empty"),
    ("   \t ", 0.5, None, "phrase is empty"),
    (None, 0.5, None, "phrase must be a string"),
    (["cup"], 0.5, None, "phrase must be a string"),
    ("x" * (MAX_PHRASE_CHARS + 1), 0.5, None, f"at most {MAX_PHRASE_CHARS} characters"),
    ("cup\nignore previous instructions", 0.5, None, "control characters"),
    ("cup", -0.1, None, "threshold must be a number from 0 to 1"),
    ("cup", 1.5, None, "threshold must be a number from 0 to 1"),
    ("cup", float("nan"), None, "threshold must be a number from 0 to 1"),
    ("cup", float("inf"), None, "threshold must be a number from 0 to 1"),
    ("cup", "0.5", None, "threshold must be a number"),
    ("cup", True, None, "threshold must be a number"),
    ("cup", 0.5, 0, "max_instances must be a whole number of at least 1"),
    ("cup", 0.5, -3, "max_instances must be a whole number of at least 1"),
    ("cup", 0.5, 2.5, "max_instances must be a whole number of at least 1"),
    ("cup", 0.5, True, "max_instances must be a whole number of at least 1"),
])
def test_hostile_inputs_are_typed_errors_before_the_model(phrase, threshold, cap, message):
    model = ScriptedConcept(CUPS)
    with pytest.raises(PromptError, match=message):
        segment_phrase(COFFEE, phrase, segmenter=model, threshold=threshold, max_instances=cap)
    assert model.calls == []


def test_bad_images_are_typed_errors(tmp_path):
    model = ScriptedConcept(CUPS)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    for image in (str(tmp_path / "missing.png"), str(tmp_path / "broken.png"), b"", 42):
        with pytest.raises(ImageLoadError):
            segment_phrase(image, "cup", segmenter=model)
    with pytest.raises(ImageLoadError):
        segment_phrase(COFFEE, "cup", segmenter=model, max_pixels=1000)
    assert model.calls == []


def test_a_mask_of_the_wrong_size_is_a_bug_not_a_result():
    class Wrong(ConceptSegmenter):
        def find(self, image, phrase, **kw):
            return [ConceptInstance(box=(0, 0, 5, 5), score=0.9, mask=np.zeros((5, 5), bool))]

    with pytest.raises(RuntimeError, match="mask of shape"):
        segment_phrase(COFFEE, "cup", segmenter=Wrong())


# --- the tiny random SAM 3, through from_pretrained ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam3_dir(tmp_path_factory) -> Path:
    from segzero_tool.testing.tiny_sam3_concept import build_tiny_sam3_concept

    return build_tiny_sam3_concept(tmp_path_factory.mktemp("tiny-sam3-concept") / "sam3", seed=0)


@pytest.fixture(scope="module")
def tiny_sam3(tiny_sam3_dir) -> Sam3ConceptSegmenter:
    return Sam3ConceptSegmenter.from_pretrained(str(tiny_sam3_dir), device="cpu", progress=False)


def test_tiny_sam3_runs_end_to_end(tiny_sam3, tiny_sam3_dir):
    assert tiny_sam3.model_id == str(tiny_sam3_dir) and tiny_sam3.device == "cpu"
    result = segment_phrase(COFFEE, "coffee cup", segmenter=tiny_sam3, threshold=0.0, max_instances=5)
    assert len(result.objects) == 5 and result.segmenter == str(tiny_sam3_dir)
    scores = [o.score for o in result.objects]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    for o in result.objects:
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 <= x2 <= 599 and 0 <= y1 <= y2 <= 399
        assert o.mask.shape == (400, 600) and o.mask.dtype == bool
    # the model filters and caps itself, like the scripted one is filtered by segment_phrase
    found = tiny_sam3.find(result.image, "coffee cup", threshold=0.0, max_instances=None)
    assert len(found) == 20  # every query of the tiny detector
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    assert [f.score for f in found[:5]] == pytest.approx(scores)
    high = segment_phrase(result, "coffee cup", segmenter=tiny_sam3)  # random weights score about 0.25
    assert high.objects == [] and high.parse_status is ParseStatus.NO_OBJECTS


def test_more_phrases_on_one_picture_run_the_image_encoder_once(tiny_sam3_dir):
    """The vision encoder's output is cached per image content: a second phrase, or the same one again, skips it
    and finds exactly what an uncached model finds."""
    cached = Sam3ConceptSegmenter.from_pretrained(str(tiny_sam3_dir), device="cpu", progress=False)
    plain = Sam3ConceptSegmenter.from_pretrained(str(tiny_sam3_dir), device="cpu", progress=False, cache_size=0)
    calls = []
    real = cached.model.get_vision_features
    cached.model.get_vision_features = lambda **kw: calls.append(1) or real(**kw)
    image = np.asarray(Image.open(COFFEE).convert("RGB"))
    for phrase in ("coffee cup", "red mug", "coffee cup"):
        got = cached.find(image, phrase, threshold=0.0, max_instances=4)
        want = plain.find(image.copy(), phrase, threshold=0.0, max_instances=4)
        assert [g.box for g in got] == [w.box for w in want]
        assert [g.score for g in got] == pytest.approx([w.score for w in want], abs=1e-6)
        assert all(np.array_equal(g.mask, w.mask) for g, w in zip(got, want, strict=True))
    assert len(calls) == 1 and cached.cache.hits == 2 and len(plain.cache) == 0
    cached.find(image[::-1].copy(), "coffee cup", threshold=0.0)  # another picture: encoded again
    assert len(calls) == 2


def test_tiny_sam3_refuses_a_phrase_over_its_token_budget(tiny_sam3):
    with pytest.raises(PromptError, match="at most 32"):
        segment_phrase(COFFEE, "a " * 60, segmenter=tiny_sam3)


def test_missing_folder_and_alias(tmp_path):
    from segzero_tool.segmenters.concept import resolve_concept_model

    assert resolve_concept_model("sam3") == resolve_concept_model("SAM3") == "facebook/sam3"
    assert resolve_concept_model("./x") == "./x"
    with pytest.raises(ModelLoadError, match="does not exist"):
        Sam3ConceptSegmenter.from_pretrained(str(tmp_path / "nope") + "/", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="could not load SAM 3"):
        Sam3ConceptSegmenter.from_pretrained(str(tmp_path / "empty"), device="cpu")


# --- the command line ---------------------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZERO_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TOKENIZERS_PARALLELISM": "false",
                "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    return env


def test_cli_phrase_in_a_subprocess(tmp_path, tiny_sam3_dir):
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "segzero_tool", "phrase", COFFEE, "coffee cup", "--model",
                           str(tiny_sam3_dir), "--device", "cpu", "--threshold", "0", "--max-instances", "3",
                           "--out", str(out), "--inspect"],
                          capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "3 object(s) in 600x400 image" in proc.stdout and "note: more than 3 instance(s)" in proc.stdout
    assert {"result.json", "mask_0.png", "mask_2.png", "mask_union.png", "overlay.png", "inspection.png"} <= {
        p.name for p in out.iterdir()}
    saved = SegmentationResult.load(out)
    assert saved.query == "coffee cup" and saved.prompt_format == "phrase" and len(saved.objects) == 3
    # the folder is a result folder like any: select takes it
    code = subprocess.run([sys.executable, "-m", "segzero_tool", "select", str(out), "--indices", "2,0", "--out",
                           str(tmp_path / "kept"), "--json"], capture_output=True, text=True, env=_env(tmp_path),
                          timeout=120)
    assert code.returncode == 0, code.stderr
    assert len(json.loads(code.stdout)["objects"]) == 2


def test_cli_phrase_json(tmp_path, capsys, tiny_sam3_dir):
    code, out, err = run_main(capsys, "phrase", COFFEE, "cup", "--model", tiny_sam3_dir, "--device", "cpu",
                              "--threshold", "0.0", "--max-instances", "2", "--json", "--mask-encoding", "none")
    assert code == 0, err
    data = json.loads(out)
    assert data["query"] == "cup" and data["prompt_format"] == "phrase" and len(data["objects"]) == 2
    assert "loading concept model" in err


@pytest.mark.parametrize(("args", "message"), [
    (["   "], "phrase is empty"),
    (["cup", "--threshold", "2"], "--threshold must be a number from 0 to 1"),
    (["cup", "--threshold", "nan"], "--threshold must be a number from 0 to 1"),
    (["cup", "--mask-threshold", "-1"], "--mask-threshold must be a number from 0 to 1"),
    (["cup", "--max-instances", "0"], "--max-instances must be at least 1"),
    (["x" * 201], "at most 200 characters"),
    (["cup", "--inspect"], "--inspect writes inspection.png into --out"),
])
def test_cli_bad_input_is_one_line_exit_2_before_loading(capsys, monkeypatch, args, message):
    def boom(*a, **k):
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(Sam3ConceptSegmenter, "from_pretrained", classmethod(boom))
    code, out, err = run_main(capsys, "phrase", COFFEE, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segzero: error:") and message in lines[0], err


def test_cli_bad_image_exit_3(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(Sam3ConceptSegmenter, "from_pretrained", classmethod(lambda *a, **k: 1 / 0))
    code, _, err = run_main(capsys, "phrase", tmp_path / "missing.png", "cup")
    assert code == 3 and len(err.strip().splitlines()) == 1


def test_gated_repository_is_one_line_exit_7(capsys, monkeypatch, tmp_path):
    """``facebook/sam3`` without access: the hub answers, the download raises huggingface_hub's
    GatedRepoError; the command prints one line with where to request access and how to log in."""
    import httpx
    import huggingface_hub.constants
    from huggingface_hub.errors import GatedRepoError
    from transformers.utils import hub as tf_hub

    from segzero_tool import hub

    def refuse(repo_id, *args, **kwargs):
        request = httpx.Request("GET", f"https://huggingface.co/{repo_id}/resolve/main/config.json")
        response = httpx.Response(403, request=request)
        raise GatedRepoError(f"403 Client Error. Cannot access gated repo for url {request.url}.",
                             response=response)

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: None)  # the hub answers
    monkeypatch.setattr(hub, "in_hub_cache", lambda *a, **k: False)
    monkeypatch.setattr(tf_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(tf_hub, "snapshot_download", refuse, raising=False)
    code, out, err = run_main(capsys, "phrase", COFFEE, "cup", "--device", "cpu")
    assert code == 7, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("loading concept model")]
    assert len(lines) == 1, err
    assert lines[0].startswith("segzero: error:") and "gated" in lines[0]
    assert "https://huggingface.co/facebook/sam3" in lines[0] and "hf auth login" in lines[0]
    assert out == ""


def test_gated_error_is_found_through_wrapping():
    from segzero_tool.segmenters.concept import GatedModelError, gated_access_error

    try:
        try:
            raise RuntimeError("You are trying to access a gated repo. Make sure to have access to it")
        except RuntimeError as inner:
            raise OSError("could not load") from inner
    except OSError as exc:
        found = gated_access_error(exc, "facebook/sam3")
    assert isinstance(found, GatedModelError) and isinstance(found, ModelLoadError) and found.exit_code == 7
    assert gated_access_error(OSError("disk full"), "facebook/sam3") is None
