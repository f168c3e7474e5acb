"""Registry names, presets, backend resolution by name or import path, settings precedence."""

import subprocess
import sys

import pytest

from segzero_tool.backends import import_object, resolve_reasoner_class, resolve_segmenter_class
from segzero_tool.errors import BackendError, UnknownModelError
from segzero_tool.prompts import PromptFormat
from segzero_tool.registry import MODELS, PRESETS, get_preset, resolve_model
from segzero_tool.settings import PipelineSettings, SettingsError


def test_registry_contents():
    assert MODELS["visionreasoner-7b"].hub_id == "Ricky06662/VisionReasoner-7B"
    assert MODELS["visionreasoner-7b"].prompt_format is PromptFormat.VISIONREASONER
    assert MODELS["seg-zero-7b"].prompt_format is PromptFormat.SEGZERO
    assert MODELS["seg-zero-7b-best-on-reasonseg-test"].hub_id == "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest"
    assert MODELS["qwen2.5-vl-3b-instruct"].prompt_format is PromptFormat.GROUNDING
    assert MODELS["qwen2.5-vl-7b-instruct"].hub_id == "Qwen/Qwen2.5-VL-7B-Instruct"
    for n in ("sam2-hiera-large", "sam2.1-hiera-tiny", "sam2.1-hiera-small", "sam2.1-hiera-base-plus",
              "sam2.1-hiera-large"):
        assert MODELS[n].kind == "segmenter" and MODELS[n].hub_id.startswith("facebook/")
    assert (PRESETS["default"].reasoner, PRESETS["default"].segmenter) == ("visionreasoner-7b", "sam2.1-hiera-large")
    assert (PRESETS["light"].reasoner, PRESETS["light"].segmenter) == ("qwen3-vl-2b-instruct", "sam2.1-hiera-tiny")


def test_resolve_names_folders_and_hub_ids(tmp_path):
    assert resolve_model("VisionReasoner-7B", "reasoner").hub_id == "Ricky06662/VisionReasoner-7B"
    local = resolve_model(str(tmp_path), "reasoner")
    assert local.hub_id == str(tmp_path) and not local.registered
    assert resolve_model("someorg/some-model", "segmenter").hub_id == "someorg/some-model"


@pytest.mark.parametrize("bad", ["visionreasoner-8b", "./missing/folder", "nonsense", ""])
def test_unknown_models(bad):
    with pytest.raises(UnknownModelError, match="segzero models"):
        resolve_model(bad, "reasoner")


def test_unknown_model_suggests():
    with pytest.raises(UnknownModelError, match="Did you mean visionreasoner-7b"):
        resolve_model("visionreasoner-8b", "reasoner")


def test_kind_mismatch():
    with pytest.raises(UnknownModelError, match="is a segmenter"):
        resolve_model("sam2.1-hiera-large", "reasoner")


def test_preset_errors():
    assert get_preset("LIGHT").name == "light"
    with pytest.raises(UnknownModelError, match="choose one of"):
        get_preset("huge")


def test_backend_resolution():
    assert resolve_reasoner_class("transformers").__name__ == "TransformersReasoner"
    assert resolve_segmenter_class("transformers").__name__ == "TransformersSam2Segmenter"
    assert resolve_segmenter_class("sam2").__name__ == "MetaSam2Segmenter"
    assert resolve_reasoner_class("scripted:ScriptedReasoner").__name__ == "ScriptedReasoner"
    with pytest.raises(BackendError, match="choose one of"):
        resolve_reasoner_class("tensorrt")
    with pytest.raises(BackendError, match="cannot import"):
        resolve_reasoner_class("no_such_pkg.mod:Cls")
    with pytest.raises(BackendError, match="no attribute"):
        resolve_reasoner_class("scripted:Nope")
    with pytest.raises(BackendError, match="not a subclass"):
        resolve_reasoner_class("scripted:BoxSegmenter")
    assert import_object("json:dumps") is __import__("json").dumps


def test_settings_precedence(tmp_path):
    cfg = tmp_path / "segzero.toml"
    cfg.write_text('[segzero]\nreasoner = "from-file"\ndevice = "cpu"\nmax_objects = 7\n')
    s = PipelineSettings.resolve(config=cfg, environ={"SEGZERO_DEVICE": "cuda", "SEGZERO_MAX_OBJECTS": "9"},
                                 overrides={"max_objects": 3})
    assert (s.reasoner, s.device, s.max_objects) == ("from-file", "cuda", 3)
    j = tmp_path / "s.json"
    j.write_text('{"segmenter_backend": "sam2"}')
    assert PipelineSettings.from_file(j).segmenter_backend == "sam2"


def test_settings_errors(tmp_path):
    with pytest.raises(SettingsError, match="unknown setting"):
        PipelineSettings().merged({"colour": "red"}, "test")
    with pytest.raises(SettingsError, match="integer"):
        PipelineSettings.from_env({"SEGZERO_MAX_OBJECTS": "many"})
    with pytest.raises(SettingsError, match="does not exist"):
        PipelineSettings.from_file(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(SettingsError, match="could not be parsed"):
        PipelineSettings.from_file(bad)


def test_import_is_light():
    code = (
        "import sys, segzero_tool, segzero_tool.pipeline, segzero_tool.cli, segzero_tool.settings;"
        "import segzero_tool.backends;"
        "heavy=[m for m in ('torch','transformers','torchvision','cv2','pycocotools') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by `import segzero_tool`: {out.stdout}"
