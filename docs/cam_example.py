"""Makes docs/cam-example.png, the README's ``zoo cam`` picture: scikit-image's sample photographs
(a cat and a cup) and realistic random weights (calibrated BatchNorm statistics), since
released weights cannot be fetched on the machine that made it. Run from the checkout:
``python docs/cam_example.py``; it prints the ``zoo cam`` command it ran."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import skimage.data
from PIL import Image

from zoo.worker import run_job

MODEL = "res2net50_26w_4s"
OUT = Path(__file__).with_name("cam-example.png")

with tempfile.TemporaryDirectory(prefix="zoo-cam-example-") as tmp:
    d = Path(tmp)
    weights = d / "random-calibrated.safetensors"
    run_job("torch", "calibrate", [{"model": MODEL, "out": str(weights), "size": 224}], d)
    images = []
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skimage.data, name)()).save(d / f"{name}.png")
        images += ["--image", f"{name}.png"]
    command = ["zoo", "cam", MODEL, "--weights", weights.name, *images, "-o", "cam-example.png"]
    print(shlex.join(command))
    subprocess.run([sys.executable, "-m", "zoo.cli", *command[1:]], cwd=d, check=True)
    OUT.write_bytes((d / "cam-example.png").read_bytes())
