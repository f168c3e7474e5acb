"""image_key remembers the hash of read-only images (decoded images, result images), and only of those."""

from __future__ import annotations

import gc
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scripted import BoxSegmenter

from segzero_tool.images import load_image
from segzero_tool.segmenters import base
from segzero_tool.segmenters.base import image_key
from segzero_tool.steer import refine_object, segment_by_prompts


@pytest.fixture
def hashes(monkeypatch):
    """Count the content hashes computed (blake2b objects made)."""
    calls = []
    real = hashlib.blake2b

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(hashlib, "blake2b", counting)
    return calls


def _png(seed: int = 0, size=(40, 30)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_decoded_images_are_read_only_and_hashed_once(tmp_path: Path, hashes):
    path = tmp_path / "a.png"
    path.write_bytes(_png())
    for source in (path, str(path), _png(), Image.open(io.BytesIO(_png()))):
        arr = load_image(source).array
        assert not arr.flags.writeable
        hashes.clear()
        first = image_key(arr)
        assert image_key(arr) == first and len(hashes) == 1
        # the remembered key is the content hash: an equal writable copy hashes to the same key
        assert image_key(arr.copy()) == first


def test_a_callers_array_is_left_writable_and_hashed_every_call(hashes):
    arr = np.zeros((30, 40, 3), dtype=np.uint8)
    assert load_image(arr).array.flags.writeable and arr.flags.writeable
    k0 = image_key(arr)
    arr[0, 0, 0] = 1
    k1 = image_key(arr)
    assert k0 != k1 and len(hashes) == 2


def test_a_read_only_view_of_a_writable_array_is_not_remembered(hashes):
    owner = np.zeros((30, 40, 3), dtype=np.uint8)
    view = owner[:]
    view.flags.writeable = False
    k0 = image_key(view)
    owner[5, 5] = 7  # changes what the view shows
    assert image_key(view) != k0 and len(hashes) == 2


def test_a_new_array_at_a_reused_address_is_hashed_afresh():
    seen: dict[int, str] = {}
    for seed in range(50):  # freed arrays' ids are soon reused; each must get its own content's key
        arr = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
        arr.flags.writeable = False
        key = image_key(arr)
        assert key == image_key(arr.copy())
        seen[id(arr)] = key
        del arr
        gc.collect()
    assert len(set(seen.values())) == len(seen)
    # the memo does not keep dead arrays
    assert all(ref() is not None for ref, _ in base._KEYS.values())


class KeyingSegmenter(BoxSegmenter):
    """Keys its (pretend) embedding cache by content, as the SAM2 backends do on every call."""

    def segment(self, image, prompts):
        self.keys = [*getattr(self, "keys", []), image_key(image)]
        return super().segment(image, prompts)


def test_refine_and_prompts_on_a_result_hash_its_image_once(hashes):
    seg = KeyingSegmenter()
    result = segment_by_prompts(seg, _png(), [{"box": [2, 2, 20, 20]}])
    assert not result.image.flags.writeable and len(hashes) == 1
    refined = refine_object(seg, result, 0, add_points=[[5, 5]])
    again = segment_by_prompts(seg, refined, [{"box": [1, 1, 9, 9]}])
    refine_object(seg, again, 0, remove_points=[[1, 1]])
    assert len(hashes) == 1 and len(set(seg.keys)) == 1 and len(seg.keys) == 4
