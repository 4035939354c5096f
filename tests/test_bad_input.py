"""Bad input through the real CLI: one ``compress: error:`` line, exit code 2, nothing written half-way.

Every case of :data:`CASES` is an argv (``{w}`` = the shared fixture folder, ``{out}`` = a path the
command would write to) and a fragment of the expected message. The odd-but-valid images (gray, RGBA,
16-bit, palette, CMYK, EXIF-rotated) are converted and restored, or refused with a clear message.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.checkpoint import save_checkpoint
from compress.cli import main
from compress.data.images import load_image
from compress.nets import build_model
from compress.recipe.expand import load_recipe
from compress.train import init_identity_

H, W = 40, 48

RECIPE = """\
name: bad
student: {{arch: arcnn, checkpoint: {ckpt}}}
data: {{train: "folder:{w}/imgs/rgb", eval: ["folder:{w}/imgs/rgb"], qualities: [10], fallback: null}}
stages:
  - {{type: finetune, steps: 1, batch_size: 1, patch_size: 16}}
"""

# recipe name -> (text replaced, replacement) applied to RECIPE with the good checkpoint
RECIPE_EDITS: dict[str, tuple[str, str]] = {
    "malformed": ("stages:\n", "stages: [\n"),
    "unknown_key": ("steps: 1,", "stpes: 1,"),
    "wrong_type": ("steps: 1,", "steps: many,"),
    "out_of_range": ("qualities: [10]", "qualities: [0]"),
    "unknown_model": ("arch: arcnn", "arch: arcnm"),
    "unknown_dataset": ('eval: ["folder:{w}/imgs/rgb"]', "eval: [live2]"),
    "unknown_protocol": ("fallback: null}", "fallback: null, protocol: idcn}"),
    "missing_ckpt": ("ckpt/arcnn.safetensors", "ckpt/nowhere.safetensors"),
    "corrupt_ckpt": ("ckpt/arcnn.safetensors", "ckpt/corrupt.safetensors"),
    "truncated_ckpt": ("ckpt/arcnn.safetensors", "ckpt/truncated.safetensors"),
    "pickle_ckpt": ("ckpt/arcnn.safetensors", "ckpt/evil.pth"),
    "other_arch_ckpt": ("ckpt/arcnn.safetensors", "ckpt/fast.safetensors"),
    "other_channels_ckpt": ("ckpt/arcnn.safetensors", "ckpt/gray.safetensors"),
    "registered_set_no_root": ('eval: ["folder:{w}/imgs/rgb"]', "eval: [live1]"),
    "empty_set": ('eval: ["folder:{w}/imgs/rgb"]', 'eval: ["folder:{w}/imgs/empty"]'),
    "alias_bomb": ("stages:\n", "description: &a [*a]\nstages:\n"),
    "deep": ("stages:\n", "description: " + "[" * 40 + "]" * 40 + "\nstages:\n"),
    "huge_sweep": ("stages:\n", "sweep: {axes: {seed: [" + ", ".join(map(str, range(40))) + "], "
                   "stages.0.steps: [" + ", ".join(map(str, range(1, 41))) + "]}}\nstages:\n"),
    "train_recipe": ("name: bad\n", "kind: train\nname: bad\n"),
}

TRAIN = ["train", "--arch", "arcnn", "--outputs-dir", "{out}", "--steps", "1", "--batch-size", "1", "--patch-size",
         "16", "--threads", "1", "--val-dataset", "", "--no-progress"]
INFER = ["infer", "--weights", "{w}/ckpt/arcnn.safetensors", "--image", "{w}/imgs/rgb", "--outputs-dir", "{out}",
         "--threads", "1"]
EVAL = ["evaluate", "--model", "arcnn", "--weights", "{w}/ckpt/arcnn.safetensors", "--dataset", "folder:{w}/imgs/rgb",
        "--quality", "10", "--protocol", "idcn-rgb", "--no-progress", "--per-image", "{out}/rows.csv"]


def _with(base: list[str], **flags: str) -> list[str]:
    """``base`` with ``--flag value`` pairs replaced (or appended)."""
    out = list(base)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def _run(name: str) -> list[str]:
    return ["run", f"{{w}}/recipes/{name}.yaml", "--results", "{out}", "--threads", "1", "--no-progress"]


CASES: list[tuple[str, list[str], str]] = [
    # recipes: validated completely before anything runs
    ("recipe-malformed-yaml", _run("malformed"), "malformed YAML"),
    ("recipe-unknown-key", _run("unknown_key"), "stages.0.stpes: unknown key"),
    ("recipe-wrong-type", _run("wrong_type"), "stages.0.steps: Input should be a valid integer"),
    ("recipe-out-of-range", _run("out_of_range"), "data.qualities.0: Input should be greater than or equal to 1"),
    ("recipe-unknown-model", _run("unknown_model"), "unknown model 'arcnm'"),
    ("recipe-unknown-dataset", _run("unknown_dataset"), "unknown dataset 'live2'"),
    ("recipe-unknown-protocol", _run("unknown_protocol"), "unknown protocol 'idcn'"),
    ("recipe-missing-checkpoint", _run("missing_ckpt"), "checkpoint file not found"),
    ("recipe-corrupt-checkpoint", _run("corrupt_ckpt"), "corrupt or not a safetensors file"),
    ("recipe-truncated-checkpoint", _run("truncated_ckpt"), "corrupt or not a safetensors file"),
    ("recipe-pickle-checkpoint", _run("pickle_ckpt"), "refused: this file needs pickle"),
    ("recipe-other-architecture", _run("other_arch_ckpt"), "architecture 'fast_arcnn', not 'arcnn'"),
    ("recipe-other-channels", _run("other_channels_ckpt"), "1-channel model; data.color needs 3"),
    ("recipe-root-without-files", [*_run("registered_set_no_root"), "--data-root", "{w}/emptyroot"],
     "dataset folder of 'live1' not found"),
    ("recipe-missing-root", [*_run("registered_set_no_root"), "--data-root", "{w}/nowhere"], "does not exist"),
    ("recipe-empty-dataset", _run("empty_set"), "no images matching"),
    ("recipe-self-alias", _run("alias_bomb"), "an alias refers to itself"),
    ("recipe-too-deep", _run("deep"), "nested deeper than"),
    ("recipe-huge-sweep", _run("huge_sweep"), "1600 variants; at most 1000"),
    ("recipe-is-a-training-recipe", _run("train_recipe"), "a training recipe"),
    ("recipe-file-missing", _run("absent"), "file not found"),
    ("run-unknown-variant", [*_run("good"), "--only", "nope"], "unknown variant 'nope'"),
    # infer
    ("infer-missing-checkpoint", _with(INFER, weights="{w}/ckpt/nowhere.safetensors"), "checkpoint not found"),
    ("infer-corrupt-checkpoint", _with(INFER, weights="{w}/ckpt/corrupt.safetensors"), "corrupt or not a safetensors"),
    ("infer-empty-checkpoint", _with(INFER, weights="{w}/ckpt/empty.safetensors"), "corrupt or not a safetensors"),
    ("infer-pickle-checkpoint", _with(INFER, weights="{w}/ckpt/evil.pth", arch="arcnn"), "refused: this file needs"),
    ("infer-other-architecture", _with(INFER, arch="fast_arcnn"), "architecture 'arcnn', not 'fast_arcnn'"),
    ("infer-unknown-model", _with(INFER, arch="arcnm"), "unknown model 'arcnm'"),
    ("infer-other-channels-pth", _with(INFER, weights="{w}/ckpt/gray.pth", arch="arcnn"),
     "do not fit architecture 'arcnn' with 3 channel(s)"),
    ("infer-bad-metadata", _with(INFER, weights="{w}/ckpt/badmeta.safetensors"), "bad architecture metadata"),
    ("infer-truncated-image", _with(INFER, image="{w}/imgs/truncated/a.png"), "truncated image file"),
    ("infer-not-an-image", _with(INFER, image="{w}/imgs/notimage/a.png"), "cannot read image"),
    ("infer-empty-folder", _with(INFER, image="{w}/imgs/empty"), "no images"),
    ("infer-missing-image", _with(INFER, image="{w}/imgs/nowhere.png"), "no such file or folder"),
    ("infer-quality-out-of-range", _with(INFER, jpeg_quality="0"), "--jpeg-quality must be in 1..100"),
    ("infer-tile-too-small", _with(INFER, tile="8"), "--tile: tile 8 is too small"),
    # evaluate
    ("evaluate-unknown-model", _with(EVAL, model="arcnm"), "unknown model 'arcnm'"),
    ("evaluate-unknown-dataset", _with(EVAL, dataset="live2"), "unknown dataset 'live2'"),
    ("evaluate-unknown-protocol", _with(EVAL, protocol="idcn"), "unknown protocol 'idcn'"),
    ("evaluate-root-without-files", _with(EVAL, dataset="live1", data_root="{w}/emptyroot"),
     "dataset folder of 'live1' not found"),
    ("evaluate-missing-root", _with(EVAL, dataset="live1", data_root="{w}/nowhere"), "does not exist"),
    ("evaluate-empty-dataset", _with(EVAL, dataset="folder:{w}/imgs/empty"), "no images matching"),
    ("evaluate-truncated-image", _with(EVAL, dataset="folder:{w}/imgs/truncated"), "truncated image file"),
    ("evaluate-other-channels", _with(EVAL, weights="{w}/ckpt/gray.safetensors"), "takes 1 input channel(s)"),
    ("evaluate-other-architecture", _with(EVAL, model="fast_arcnn"), "architecture 'arcnn', not 'fast_arcnn'"),
    ("evaluate-corrupt-checkpoint", _with(EVAL, weights="{w}/ckpt/corrupt.safetensors"), "corrupt or not a"),
    ("evaluate-gray-under-rgb-protocol", _with(EVAL, dataset="folder:{w}/imgs/gray"),
     "gray/a.png: protocol 'idcn-rgb' needs RGB images, got a gray image"),
    ("evaluate-16bit-under-rgb-protocol", _with(EVAL, dataset="folder:{w}/imgs/16bit"), "got a gray image"),
    ("evaluate-quality-out-of-range", _with(EVAL, quality="101"), "JPEG quality must be in 1..100"),
    ("evaluate-quality-not-a-number", _with(EVAL, quality="ten"), "invalid int value: 'ten'"),
    # train
    ("train-image-smaller-than-patch", _with(TRAIN, images_dir="{w}/imgs/small", patch_size="24"),
     "every training image is smaller than the patch size 24"),
    ("train-empty-folder", _with(TRAIN, images_dir="{w}/imgs/empty"), "no images"),
    ("train-missing-folder", _with(TRAIN, images_dir="{w}/imgs/nowhere"), "image folder not found"),
    ("train-truncated-image", _with(TRAIN, images_dir="{w}/imgs/truncated"), "truncated image file"),
    ("train-patch-size", _with(TRAIN, images_dir="{w}/imgs/rgb", patch_size="0"), "patch_size must be in 8..512"),
    ("train-quality", _with(TRAIN, images_dir="{w}/imgs/rgb", jpeg_quality="0"), "JPEG quality must be in 1..100"),
    ("train-lr", _with(TRAIN, images_dir="{w}/imgs/rgb", lr="-1"), "lr must be in (0, 1]"),
    ("train-steps", _with(TRAIN, images_dir="{w}/imgs/rgb", steps="0"), "steps must be at least 1"),
    ("train-batch-size", _with(TRAIN, images_dir="{w}/imgs/rgb", batch_size="0"), "batch_size must be at least 1"),
    ("train-epochs", ["train", "--arch", "arcnn", "--images-dir", "{w}/imgs/rgb", "--outputs-dir", "{out}",
                      "--num-epochs", "0", "--threads", "1", "--val-dataset", ""], "--num-epochs must be at least 1"),
    ("train-unknown-model", _with(TRAIN, images_dir="{w}/imgs/rgb", arch="arcnm"), "unknown model 'arcnm'"),
    ("train-unknown-val-dataset", _with(TRAIN, images_dir="{w}/imgs/rgb", val_dataset="live2"),
     "unknown dataset 'live2'"),
    ("train-bad-recipe", ["train", "--recipe", "{w}/recipes/train_unknown_key.yaml", "--outputs-dir", "{out}"],
     "patch_sise: unknown key"),
    # hardware targets
    ("pareto-unknown-target", ["pareto", "{w}", "--target", "nope", "--out", "{out}"], "unknown target 'nope'"),
]


def _png(img: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _identity(channels: int) -> torch.nn.Module:
    """ARCNN that returns its input: restored output == converted input, so the test sees the conversion."""
    m = build_model("arcnn", channels)
    assert init_identity_(m)
    return m


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of every odd kind, good and bad checkpoints, recipes, data roots."""
    w = tmp_path_factory.mktemp("world")
    imgs = w / "imgs"
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((W, H), Image.Resampling.BICUBIC))
    _png(Image.fromarray(rgb), imgs / "rgb" / "a.png")
    _png(Image.fromarray(rgb).convert("L"), imgs / "gray" / "a.png")
    rgba = np.dstack([rgb, rng.integers(0, 256, (H, W), dtype=np.uint8)])
    _png(Image.fromarray(rgba, mode="RGBA"), imgs / "rgba" / "a.png")
    _png(Image.fromarray(rgb[..., 1].astype(np.uint16) * 257), imgs / "16bit" / "a.png")
    _png(Image.fromarray(rgb).convert("P"), imgs / "palette" / "a.png")
    _png(Image.fromarray(rgb).convert("CMYK"), imgs / "cmyk" / "a.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _png(Image.fromarray(rgb), imgs / "exif" / "a.jpg", exif=exif, quality=95)
    _png(Image.fromarray(rgb[:16, :16]), imgs / "small" / "a.png")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    (imgs / "truncated").mkdir()
    (imgs / "truncated" / "a.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (imgs / "notimage").mkdir()
    (imgs / "notimage" / "a.png").write_text("not an image\n")
    (imgs / "empty").mkdir()
    (w / "emptyroot").mkdir()

    ck = w / "ckpt"
    ck.mkdir()
    good = save_checkpoint(ck / "arcnn.safetensors", _identity(3), arch="arcnn", channels=3)
    save_checkpoint(ck / "gray.safetensors", _identity(1), arch="arcnn", channels=1)
    save_checkpoint(ck / "fast.safetensors", build_model("fast_arcnn"), arch="fast_arcnn", channels=3)
    save_checkpoint(ck / "badmeta.safetensors", build_model("arcnn"), arch="arcnn", channels=3,
                    arch_kwargs={"no_such_option": 1})
    torch.save(build_model("arcnn", 1).state_dict(), ck / "gray.pth")
    (ck / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    (ck / "empty.safetensors").write_bytes(b"")
    data = good.read_bytes()
    (ck / "truncated.safetensors").write_bytes(data[: len(data) // 2])

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save({"state_dict": Evil()}, ck / "evil.pth")

    rec = w / "recipes"
    rec.mkdir()
    base = RECIPE.format(w=w, ckpt=ck / "arcnn.safetensors")
    (rec / "good.yaml").write_text(base)
    assert load_recipe(rec / "good.yaml").variants  # every bad recipe below differs from a valid one by one edit
    for name, (old, new) in RECIPE_EDITS.items():
        old, new = old.replace("{w}", str(w)), new.replace("{w}", str(w))
        assert old in base, name
        (rec / f"{name}.yaml").write_text(base.replace(old, new, 1))
    train_text = f"name: t\narch: arcnn\npatch_sise: 16\ndata: {{train: 'folder:{w}'}}\n"
    (rec / "train_unknown_key.yaml").write_text(train_text)
    return w


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the real CLI in this process: (exit code, stdout, stderr); argparse's exits count too."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: usage, one error line, exit 2
        rc = int(exc.code or 0)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize(("argv", "expected"), [(a, e) for _, a, e in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    out = tmp_path / "out"
    rc, stdout, err = _cli([a.replace("{w}", str(world)).replace("{out}", str(out)) for a in argv], capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2, err
    assert "Traceback" not in err and "pwned" not in stdout
    assert len(errors) == 1, err
    assert expected in errors[0], errors[0]
    assert not out.exists(), f"written half-way: {sorted(p.name for p in out.rglob('*'))}"


# --- odd images: converted (or refused, above) ----------------------------------------------------------

KINDS = ["gray", "rgba", "16bit", "palette", "cmyk", "exif"]


def _image(world: Path, kind: str) -> Path:
    return next((world / "imgs" / kind).iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_infer_converts_odd_images(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    src = _image(world, kind)
    rc, _, err = _cli(["infer", "--weights", str(world / "ckpt" / "arcnn.safetensors"), "--image", str(src),
                       "--outputs-dir", str(tmp_path), "--threads", "1"], capsys)
    assert rc == 0, err
    restored = np.asarray(Image.open(tmp_path / "a_arcnn.png"))
    expected = load_image(src, "rgb")  # the identity model shows exactly what the converter fed it
    assert restored.shape == ((W, H, 3) if kind == "exif" else (H, W, 3))  # EXIF rotation applied
    assert int(np.abs(restored.astype(int) - expected.astype(int)).max()) <= 1
    if kind == "rgba":  # composited over white, not the raw colour under the alpha
        raw = np.asarray(Image.open(src))[..., :3]
        assert not np.array_equal(restored, raw)


def test_infer_one_channel_model_takes_a_colour_image(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _cli(["infer", "--weights", str(world / "ckpt" / "gray.safetensors"), "--image",
                       str(world / "imgs" / "rgb"), "--outputs-dir", str(tmp_path), "--threads", "1"], capsys)
    assert rc == 0, err
    assert np.asarray(Image.open(tmp_path / "a_arcnn.png")).shape == (H, W)


@pytest.mark.parametrize(
    ("kind", "protocol", "weights"),
    [("rgba", "idcn-rgb", "arcnn"), ("palette", "idcn-rgb", "arcnn"), ("cmyk", "idcn-rgb", "arcnn"),
     ("exif", "idcn-rgb", "arcnn"), ("gray", "arcnn-y", "gray"), ("16bit", "arcnn-y", "gray")],
)
def test_evaluate_folder_of_odd_images(
    world: Path, capsys: pytest.CaptureFixture[str], kind: str, protocol: str, weights: str
) -> None:
    rc, stdout, err = _cli(["evaluate", "--model", "arcnn", "--weights", str(world / "ckpt" / f"{weights}.safetensors"),
                            "--dataset", f"folder:{world / 'imgs' / kind}", "--quality", "10", "--protocol", protocol,
                            "--json", "--no-progress"], capsys)
    assert rc == 0, err
    (res,) = json.loads(stdout)
    assert res["n_images"] == 1
    assert res["psnr"] == pytest.approx(res["jpeg_psnr"], abs=0.05)  # identity model: output = JPEG input
    assert 15 < res["jpeg_psnr"] < 60
