#!/usr/bin/env python3
"""Writes the Label Studio brush-mask fixture the tests read.

The masks are encoded with Label Studio's own converter (label-studio-converter's
`brush.mask2rle`, the RLE of thi-ng's rle-pack that Label Studio's editor writes: the mask as
RGBA, 4 values per pixel), so the bytes are what Label Studio's code writes. Run once and
commit the output:

    python3 -m venv /tmp/ls && /tmp/ls/bin/pip install label-studio-converter==0.0.59
    /tmp/ls/bin/python scripts/make-labelstudio-brush-fixture.py indexer/tests/fixtures/labelstudio-brush

Writes DIR/tasks.json: one task on a 64 x 48 image with five brush results:
- `face`: a filled rectangle, rows 10-19, columns 5-24 (box x 5, y 10, w 20, h 10);
- `plate`: an L of two rectangles, rows 30-39 x columns 40-44 and rows 35-39 x columns 40-59
  (box x 40, y 30, w 20, h 10);
- `person`: one run of pixels in reading order from row 2, column 60 to row 4, column 3 (it
  wraps rows: box x 0, y 2, w 64, h 3);
- `car`: an empty mask (no pixel: it cannot be placed);
- `dog`: the `face` mask with a wrong original_height (47): its length is not the image's.
"""
import json
import os
import sys

import numpy as np
from label_studio_converter.brush import mask2rle

out = sys.argv[1] if len(sys.argv) > 1 else "indexer/tests/fixtures/labelstudio-brush"
os.makedirs(out, exist_ok=True)
W, H = 64, 48


def mask():
    return np.zeros((H, W), dtype=np.uint8)


face = mask()
face[10:20, 5:25] = 255
plate = mask()
plate[30:40, 40:45] = 255
plate[35:40, 40:60] = 255
person = mask()
flat = person.ravel()
flat[2 * W + 60 : 4 * W + 3 + 1] = 255
person = flat.reshape(H, W)
car = mask()


def result(rid, label, m, height=H):
    return {
        "id": rid,
        "type": "brushlabels",
        "from_name": "tag",
        "to_name": "image",
        "origin": "manual",
        "image_rotation": 0,
        "original_width": W,
        "original_height": height,
        "value": {"format": "rle", "rle": [int(v) for v in mask2rle(m)], "brushlabels": [label]},
    }


tasks = [
    {
        "id": 21,
        "data": {"image": "/data/upload/1/brush.png"},
        "annotations": [
            {
                "id": 1,
                "completed_by": 1,
                "was_cancelled": False,
                "updated_at": "2024-05-06T07:08:09.000000Z",
                "result": [
                    result("b1", "face", face),
                    result("b2", "plate", plate),
                    result("b3", "person", person),
                    result("b4", "car", car),
                    result("b5", "dog", face, height=H - 1),
                ],
            }
        ],
    }
]
with open(os.path.join(out, "tasks.json"), "w") as f:
    json.dump(tasks, f, indent=1)
    f.write("\n")
