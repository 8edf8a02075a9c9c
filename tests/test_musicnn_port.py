"""The musicnn port: TF checkpoint reader (scripts/_tf_bundle.py, used by the weight conversion),
input pipeline and parity of the packaged weights with the original TF graph.

Parity tests need the reference file ../shared/data/reference/musicnn_reference.npz (next to the
checkout); they are skipped, saying why, without it.  The test on the original checkpoint needs
the musicnn==0.1.0 wheel installed (a conversion source only; the package does not use it).
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cultural_music.backbones import musicnn as mn
from cultural_music.backbones import packaged
from cultural_music.errors import ModelLoadError, ParameterError
from cultural_music.features.compute import musicnn_log_mel

from conftest import SHARED

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from _tf_bundle import _CRC_TABLE, crc32c, read_tf_checkpoint  # noqa: E402

# ../shared next to the checkout (CI, development), else the development machine's copy
REFERENCE = next((p for p in (SHARED / "reference" / "musicnn_reference.npz", Path("/work/shared/data/reference/musicnn_reference.npz"))
                  if p.exists()), SHARED / "reference" / "musicnn_reference.npz")
HAVE_MUSICNN = importlib.util.find_spec("musicnn") is not None
needs_tf_checkpoint = pytest.mark.skipif(
    not HAVE_MUSICNN,
    reason="original musicnn checkpoint not installed (pip install --no-deps musicnn==0.1.0)",
)
needs_reference = pytest.mark.skipif(
    not REFERENCE.exists(), reason=f"reference outputs not found at {REFERENCE}"
)
TOLERANCE = {"mean_pool": 1e-5, "max_pool": 1e-4, "penultimate": 1e-5, "taggram": 1e-5}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def models() -> dict[str, mn.MusicnnBackbone]:
    return {name: mn.load_musicnn(name) for name in mn.MODEL_NAMES}


# ------------------------------------------------------------------------------------------
# a tiny TF tensor-bundle writer, to test the reader without the musicnn wheel
# ------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body, prev = bytearray(), b""
    for key, value in entries:
        shared = 0
        while shared < min(len(key), len(prev)) and key[shared] == prev[shared]:
            shared += 1
        body += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        body += key[shared:] + value
        prev = key
    return bytes(body) + struct.pack("<II", 0, 1)  # one restart point at offset 0


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + struct.pack("<I", _mask(crc32c(block + b"\x00")))


def _write_bundle(prefix: Path, tensors: dict[str, np.ndarray], strings: tuple[str, ...] = ()) -> None:
    """float32 tensors, plus 0-d DT_STRING entries named ``strings`` (as TF2's object graph)."""
    data, entries = bytearray(), [(b"", b"\x08\x01")]  # BundleHeaderProto{num_shards: 1}
    for name in sorted([*tensors, *strings]):
        is_string = name in strings
        arr = np.zeros((), "<f4") if is_string else np.asarray(tensors[name], dtype="<f4")
        raw = b"\x05hello" if is_string else arr.tobytes()
        dim_msgs = [b"\x08" + _varint(size) for size in arr.shape]  # TensorShapeProto.Dim
        dims = b"".join(b"\x12" + _varint(len(d)) + d for d in dim_msgs)
        value = (b"\x08\x07" if is_string else b"\x08\x01") + b"\x12" + _varint(len(dims)) + dims
        value += b"\x20" + _varint(len(data)) + b"\x28" + _varint(len(raw))
        value += b"\x35" + struct.pack("<I", _mask(crc32c(raw)))
        entries.append((name.encode(), value))
        data += raw
    data_block = _block(entries)
    index_block = _block([(entries[-1][0], _varint(0) + _varint(len(data_block)))])
    table = _with_trailer(data_block)
    index_off = len(table)
    table += _with_trailer(index_block)
    handles = _varint(0) + _varint(0) + _varint(index_off) + _varint(len(index_block))
    table += handles.ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(table)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


@pytest.fixture()
def bundle(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors = {
        "conv2d/kernel": rng.standard_normal((7, 38, 1, 4)).astype(np.float32),
        "conv2d/bias": rng.standard_normal(4).astype(np.float32),
        "scalar": np.array(2.5, dtype=np.float32),
        "dense/kernel": rng.standard_normal((3000, 2)).astype(np.float32),  # > 4 KiB: fast CRC
    }
    _write_bundle(tmp_path / "model", tensors)
    return tmp_path / "model", tensors


# ------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------
def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    data = np.random.default_rng(1).integers(0, 256, 50_001, dtype=np.uint8).tobytes()
    slow = 0xFFFFFFFF
    table = [int(v) for v in _CRC_TABLE]
    for b in data:
        slow = table[(slow ^ b) & 0xFF] ^ (slow >> 8)
    assert crc32c(data) == slow ^ 0xFFFFFFFF  # chunked numpy path == byte-by-byte


def test_reader_round_trip(bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, tensors = bundle
    got = read_tf_checkpoint(prefix)
    assert set(got) == set(tensors)
    for name, arr in tensors.items():
        assert got[name].dtype == np.float32 and got[name].shape == arr.shape
        np.testing.assert_array_equal(got[name], arr)


def test_reader_missing_files(bundle: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nothing\.index"):
        read_tf_checkpoint(tmp_path / "nothing")
    prefix, _ = bundle
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.data-00000-of-00001"):
        read_tf_checkpoint(prefix)


@pytest.mark.parametrize("cut", [10, 60, 200])
def test_reader_truncated_index(bundle: tuple[Path, dict[str, np.ndarray]], cut: int) -> None:
    prefix, _ = bundle
    index = Path(f"{prefix}.index")
    index.write_bytes(index.read_bytes()[:-cut])
    with pytest.raises(ModelLoadError, match=r"model\.index"):
        read_tf_checkpoint(prefix)


def test_reader_edited_index_block(bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = bundle
    index = Path(f"{prefix}.index")
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError, match="checksum"):
        read_tf_checkpoint(prefix)


def test_reader_edited_or_truncated_data(bundle: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, tensors = bundle
    data_path = Path(f"{prefix}.data-00000-of-00001")
    original = data_path.read_bytes()
    edited = bytearray(original)
    edited[-100] ^= 0x10
    data_path.write_bytes(bytes(edited))
    with pytest.raises(ModelLoadError, match="checksum mismatch"):
        read_tf_checkpoint(prefix)
    assert set(read_tf_checkpoint(prefix, verify_crc=False)) == set(tensors)
    data_path.write_bytes(original[:-8])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_tf_checkpoint(prefix)


def _musicnn_checkpoint(name: str) -> Path:
    spec = importlib.util.find_spec("musicnn")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / name


def test_reader_skips_tf2_object_graph(tmp_path: Path) -> None:
    # TF2 checkpoints (YAMNet's) hold a DT_STRING bookkeeping entry; other strings are refused
    w = np.arange(3, dtype=np.float32)
    _write_bundle(tmp_path / "m", {"w": w}, strings=("_CHECKPOINTABLE_OBJECT_GRAPH",))
    got = read_tf_checkpoint(tmp_path / "m")
    assert set(got) == {"w"}
    np.testing.assert_array_equal(got["w"], w)
    _write_bundle(tmp_path / "s", {"w": w}, strings=("vocabulary",))
    with pytest.raises(ModelLoadError, match=r"s\.index: tensor 'vocabulary' has unsupported TensorFlow dtype 7"):
        read_tf_checkpoint(tmp_path / "s")


@needs_tf_checkpoint
def test_reader_on_musicnn_checkpoint(tmp_path: Path) -> None:
    folder = _musicnn_checkpoint("MSD_musicnn")
    tensors = read_tf_checkpoint(folder)
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert tensors["dense/kernel"].shape == (1506, 200)
    assert tensors["batch_normalization_9/moving_variance"].min() > 0
    # a truncated copy of the real index is rejected with the file name
    (tmp_path / "ck").mkdir()
    shutil.copy(folder / ".index", tmp_path / "ck" / ".index")
    index = tmp_path / "ck" / ".index"
    index.write_bytes(index.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match=r"\.index: corrupt checkpoint index"):
        read_tf_checkpoint(tmp_path / "ck")


# ------------------------------------------------------------------------------------------
# input pipeline
# ------------------------------------------------------------------------------------------
@needs_reference
def test_logmel_matches_reference(reference: dict[str, np.ndarray]) -> None:
    logmel = musicnn_log_mel(reference["waveform_16k"]).T
    assert logmel.dtype == np.float32 and logmel.shape == (1 + 48000 // mn.HOP, mn.N_MELS)
    np.testing.assert_allclose(logmel[: mn.PATCH_FRAMES], reference["logmel_input"], atol=1e-5)


def test_logmel_rejects_bad_input() -> None:
    with pytest.raises(ParameterError, match="'clips' parameter of musicnn_log_mel"):
        musicnn_log_mel(np.zeros((2, 1, 100), dtype=np.float32))
    with pytest.raises(ParameterError, match="samples >= 1"):
        musicnn_log_mel(np.zeros(0, dtype=np.float32))


def test_patches_shapes() -> None:
    logmel = np.arange(400 * 96, dtype=np.float32).reshape(400, 96)
    out = mn.patches(logmel)
    assert out.shape == (2, 187, 96) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], logmel[187:374])  # tail frames 374..399 dropped
    assert mn.patches(logmel, hop=93).shape == (3, 187, 96)  # starts 0, 93, 186
    assert mn.patches(logmel[:187]).shape == (1, 187, 96)
    assert mn.patches(logmel, n_frames=100, hop=50).shape == (7, 100, 96)


def test_patches_pad_short_input() -> None:
    short = np.random.default_rng(0).random((50, 96)).astype(np.float32)
    rep = mn.patches(short)
    assert rep.shape == (1, 187, 96)
    np.testing.assert_array_equal(rep[0, 50:100], short)
    zero = mn.patches(short, pad="zero")
    np.testing.assert_array_equal(zero[0, :50], short)
    assert not zero[0, 50:].any()
    with pytest.raises(ParameterError):
        mn.patches(short, hop=0)
    with pytest.raises(ParameterError):
        mn.patches(short[None])


@pytest.mark.parametrize("frames", [1, 50, 187, 188, 400, 1876])
def test_covering_patches_one_rule_for_numpy_and_torch(frames: int) -> None:
    x = np.random.default_rng(frames).random((2, frames, 96)).astype(np.float32)
    got = mn.covering_patches(x)
    p = -(-frames // 187)
    assert got.shape == (2 * p, 187, 96) and got.flags.c_contiguous and got.dtype == np.float32
    if frames <= 187:  # one repeat-padded patch, as musicnn's batching pads short inputs
        want = np.concatenate([mn.patches(clip) for clip in x])
    else:  # evenly spread windows, the first at frame 0 and the last ending at the last frame
        starts = np.round(np.linspace(0, frames - 187, p)).astype(int)
        want = np.stack([clip[s : s + 187] for clip in x for s in starts])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(mn.covering_patches(torch.from_numpy(x)).numpy(), want)
    index = torch.from_numpy(mn.covering_index(frames))
    np.testing.assert_array_equal(mn.covering_patches(torch.from_numpy(x), index).numpy(), want)


# ------------------------------------------------------------------------------------------
# network
# ------------------------------------------------------------------------------------------
def test_untrained_shapes_and_param_count() -> None:
    model = mn.MusicnnBackbone().eval()
    assert sum(p.numel() for p in model.parameters()) == 787_159
    with torch.no_grad():
        out = model(torch.zeros(2, 100, 96))  # other lengths than 187 work too
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "mean_pool": (2, 753), "max_pool": (2, 753), "penultimate": (2, 200),
        "logits": (2, 50), "taggram": (2, 50),
    }  # fmt: skip
    with pytest.raises(ParameterError):
        model(torch.zeros(1, 187, 64))


@needs_reference
@pytest.mark.parametrize("name", mn.MODEL_NAMES)
def test_parity_with_tensorflow(
    name: str, models: dict[str, mn.MusicnnBackbone], reference: dict[str, np.ndarray]
) -> None:
    model = models[name]
    assert not model.training and len(model.tags or ()) == 50
    x = torch.from_numpy(reference["logmel_input"])[None]
    with torch.no_grad():
        out = model(x)
    for key, atol in TOLERANCE.items():
        np.testing.assert_allclose(
            out[key][0].numpy(), reference[f"{name}/{key}"], rtol=0, atol=atol, err_msg=key
        )


@needs_reference
def test_embedding_and_batching(
    models: dict[str, mn.MusicnnBackbone], reference: dict[str, np.ndarray]
) -> None:
    model = models["MSD_musicnn"]
    one = torch.from_numpy(reference["logmel_input"])
    batch = torch.stack([one, one.flip(0), one * 0.5])
    with torch.no_grad():
        emb = model.embedding(batch)
        out = model(batch)
        single = model(one)  # a bare (frames, 96) patch is treated as batch 1
    assert emb.shape == (3, mn.EMBEDDING_DIM)
    torch.testing.assert_close(emb, torch.cat([out["mean_pool"], out["max_pool"]], dim=1))
    torch.testing.assert_close(single["taggram"][0], out["taggram"][0], atol=1e-5, rtol=0)


def test_loader_does_not_import_musicnn_or_tensorflow() -> None:
    mn.load_musicnn("MTT_musicnn")
    assert "musicnn" not in sys.modules and "tensorflow" not in sys.modules
    assert importlib.util.find_spec("cultural_music.backbones.tf_bundle") is None  # conversion-only code


def test_loader_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="MSD_vgg"):
        mn.load_musicnn("MSD_vgg")
    monkeypatch.setattr(packaged, "WEIGHTS_DIR", tmp_path)  # an install without the weights
    with pytest.raises(ModelLoadError, match=r"MSD_musicnn\.safetensors: cannot read .*reinstall cultural-music"):
        mn.load_musicnn()
