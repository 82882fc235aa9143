#!/usr/bin/env python3
"""Writes the Clarifai dataset-version export fixture the tests read.

The archive is built with the official clarifai-grpc package's own generated protobuf classes
(clarifai_grpc.grpc.api.resources_pb2), so its bytes are what Clarifai's code writes: a zip
with a `mimetype` entry reading `application/x.clarifai-data+protobuf` and `{split}/..._n{count}`
entries, each a serialized `InputBatch` (the layout clarifai-python's DatasetExportReader
reads). Run once and commit the output:

    python3 -m venv /tmp/cg && /tmp/cg/bin/pip install clarifai-grpc==12.6.0 pillow
    /tmp/cg/bin/python scripts/make-clarifai-fixture.py indexer/tests/fixtures/clarifai

Writes DIR/dataset-export.zip and DIR/images/ (the local copies of the inputs the archive only
links to by hosted URL).
"""
import io
import os
import sys
import zipfile

from clarifai_grpc.grpc.api import resources_pb2 as r
from google.protobuf import struct_pb2, timestamp_pb2
from PIL import Image

out = sys.argv[1] if len(sys.argv) > 1 else "indexer/tests/fixtures/clarifai"
os.makedirs(os.path.join(out, "images", "street"), exist_ok=True)


def png(w, h, colour):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def stamp(seconds):
    t = timestamp_pb2.Timestamp()
    t.seconds = seconds
    return t


def hosted(suffix):
    return r.HostedURL(prefix="https://data.clarifai.com", suffix=suffix, sizes=["orig", "small"])


def box(top, left, bottom, right):
    return r.RegionInfo(
        bounding_box=r.BoundingBox(top_row=top, left_col=left, bottom_row=bottom, right_col=right)
    )


def concept(name, value):
    return r.Concept(id=name, name=name, value=value)


meta = struct_pb2.Struct()
meta.update({"filename": "harbour.png", "camera": "pier-2"})

# 1. Image bytes carried in the archive, a box, a positive and a negative concept, metadata.
boat = r.Input(
    id="in-boat",
    data=r.Data(
        image=r.Image(base64=png(64, 48, (20, 60, 200)), image_info=r.ImageInfo(width=64, height=48, format="PNG")),
        concepts=[concept("boat", 1.0), concept("person", 0.0)],
        regions=[
            r.Region(id="reg-boat", region_info=box(0.25, 0.125, 0.75, 0.625),
                     data=r.Data(concepts=[concept("boat", 1.0)])),
        ],
        metadata=meta,
    ),
    created_at=stamp(1_600_000_000),
    modified_at=stamp(1_700_000_000),
    dataset_ids=["harbour-set"],
)

# 2. Hosted URL only; the local copy is images/in-face.jpg (matched by input id). A polygon.
face = r.Input(
    id="in-face",
    data=r.Data(
        image=r.Image(hosted=hosted("abc123.jpg"), image_info=r.ImageInfo(width=40, height=30)),
        regions=[
            r.Region(id="reg-face", region_info=r.RegionInfo(polygon=r.Polygon(points=[
                r.Point(row=0.1, col=0.25), r.Point(row=0.5, col=0.75), r.Point(row=0.3, col=0.5),
            ])), data=r.Data(concepts=[concept("face", 1.0)])),
        ],
    ),
    created_at=stamp(1_650_000_000),
)
Image.new("RGB", (40, 30), (200, 180, 150)).save(os.path.join(out, "images", "in-face.jpg"), "JPEG")

def mask(w, h, painted):
    """A segmentation mask as Clarifai carries it: a PNG in Image.base64, here greyscale, 255
    where painted (`painted`: a rectangle x0, y0, x1, y1, ends excluded, or None)."""
    img = Image.new("L", (w, h), 0)
    if painted:
        img.paste(255, painted)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return r.RegionInfo(mask=r.Mask(image=r.Image(base64=buf.getvalue())))


# 3. Hosted URL only; matched by the file name in its metadata (street/car-01.png). Two
# segmentation masks at half the image's resolution: one painting columns 2-9 and rows 4-7 of
# 16x16 (the box 4,8 16x8 in the 32x32 image), one painting nothing.
car_meta = struct_pb2.Struct()
car_meta.update({"filename": "street/car-01.png"})
car = r.Input(
    id="in-car",
    data=r.Data(
        image=r.Image(hosted=hosted("def456.png")),
        concepts=[concept("car", 0.93)],
        regions=[
            r.Region(id="reg-car", region_info=mask(16, 16, (2, 4, 10, 8)),
                     data=r.Data(concepts=[concept("car", 1.0)])),
            r.Region(id="reg-plate", region_info=mask(16, 16, None),
                     data=r.Data(concepts=[concept("plate", 1.0)])),
        ],
        metadata=car_meta,
    ),
)
Image.new("RGB", (32, 32), (90, 90, 90)).save(os.path.join(out, "images", "street", "car-01.png"), "PNG")

# 4. Hosted URL only, no local copy: reported, never downloaded.
gone = r.Input(
    id="in-gone",
    data=r.Data(image=r.Image(hosted=hosted("ghi789.jpg")), concepts=[concept("dog", 1.0)]),
)

batches = {
    "train/0001_n2": [boat, face],
    "train/0002_n1": [car],
    "valid/0001_n1": [gone],
}
with zipfile.ZipFile(os.path.join(out, "dataset-export.zip"), "w") as z:
    z.writestr(zipfile.ZipInfo("mimetype"), b"application/x.clarifai-data+protobuf")
    for name, inputs in batches.items():
        z.writestr(zipfile.ZipInfo(name), r.InputBatch(inputs=inputs).SerializeToString())
print("wrote", out)
