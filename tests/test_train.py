"""Training: the brief's command line, exact resume, interrupts, non-finite losses, the input pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from compress.cli import main
from compress.data.patches import PatchBatches, PatchConfig
from compress.errors import TrainingError
from compress.nets import build_model
from compress.train import TrainConfig, Trainer, init_identity_


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish image: low-frequency colour fields plus a few edges, so JPEG leaves real artifacts."""
    small = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)).copy()
    img[h // 3 : h // 3 + 4] = 255
    img[:, w // 2 : w // 2 + 3] = 0
    return img


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(_smooth_image(rng, 72, 96)).save(d / f"im{i}.png")
    return d


def _cfg(image_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        arch="arcnn", images_dir=str(image_dir), outputs_dir=str(out), patch_size=32, batch_size=2, steps=6,
        warmup_steps=2, val_every=3, ckpt_every=3, threads=1, val_dataset=f"folder:{image_dir}", val_limit=2,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_brief_command_line_trains_and_infers(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    rc = main([
        "train", "--arch", "ARCNN", "--images_dir", str(image_dir), "--outputs_dir", str(out), "--jpeg_quality", "10",
        "--patch_size", "24", "--batch_size", "2", "--num_epochs", "2", "--lr", "5e-4", "--threads", "1",
        "--seed", "123", "--use_augmentation", "--use_fast_loader", "--val-dataset", f"folder:{image_dir}",
        "--val-limit", "1", "--no-progress",
    ])
    assert rc == 0
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 2  # 2 epochs x (3 images // batch 2)
    for f in ("best.safetensors", "last.safetensors", "log.csv", "curve.png", "config.json"):
        assert (out / f).is_file(), f
    cfg = json.loads((out / "config.json").read_text())
    from compress.train import resolve_precision

    assert cfg["precision"] == resolve_precision("auto") in ("fp32", "bf16")  # the default, resolved before the run
    rec = tmp_path / "recon"
    assert main(["infer", "--weights", str(out / "best.safetensors"), "--image", str(image_dir / "im0.png"),
                 "--outputs-dir", str(rec), "--jpeg-quality", "10"]) == 0
    restored = np.asarray(Image.open(rec / "im0_arcnn.png"))
    assert restored.shape == (72, 96, 3)
    assert (rec / "im0_jpeg_q10.png").is_file()


def test_resume_is_exact(image_dir: Path, tmp_path: Path) -> None:
    straight = Trainer(_cfg(image_dir, tmp_path / "a"), progress=False)
    straight.fit()
    first = Trainer(_cfg(image_dir, tmp_path / "b", steps=6), progress=False)
    # stop after 3 of the 6 steps (same schedule), as an interrupted run would
    first.batches = _limited(first.batches, 3)  # type: ignore[method-assign]
    first.fit()
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 3
    resumed = Trainer(_cfg(image_dir, tmp_path / "b"), progress=False)
    resumed.fit(resume=True)
    a = load_file(str(tmp_path / "a" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "last.safetensors"))
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _limited(fn, n):  # type: ignore[no-untyped-def]
    def gen(start: int):  # type: ignore[no-untyped-def]
        for i, batch in enumerate(fn(start)):
            if i >= n:
                return
            yield batch

    return gen


def test_resume_refuses_other_settings(image_dir: Path, tmp_path: Path) -> None:
    Trainer(_cfg(image_dir, tmp_path / "a", steps=3), progress=False).fit()
    with pytest.raises(Exception, match="other settings: lr"):
        Trainer(_cfg(image_dir, tmp_path / "a", steps=3, lr=0.5), progress=False).fit(resume=True)
    with pytest.raises(Exception, match="already holds a run"):
        Trainer(_cfg(image_dir, tmp_path / "a", steps=3), progress=False).fit()


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(image_dir: Path, tmp_path: Path) -> None:
    calls = {"n": 0}

    def loss_fn(model, x, y, out):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(out, y)
        return loss * float("nan") if calls["n"] > 4 else loss

    t = Trainer(_cfg(image_dir, tmp_path / "n", val_dataset=""), loss_fn=loss_fn, progress=False)
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step 4"):
        t.fit()
    kept = load_file(str(tmp_path / "n" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for v in kept.values())
    assert json.loads((tmp_path / "n" / "state.json").read_text())["step"] == 3


@pytest.mark.parametrize("name", ["arcnn", "arcnn_relu", "arcnn_y", "fast_arcnn", "fast_arcnn_relu"])
def test_identity_init_starts_at_the_input(name: str) -> None:
    m = build_model(name)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert init_identity_(m)
    assert m.state_dict().keys() == before.keys()  # the architecture and its state dict are unchanged
    c = 1 if name == "arcnn_y" else 3
    for h, w in ((40, 40), (49, 51), (24, 26)):  # Fast ARCNN: space-to-depth and back, odd sizes padded
        x = torch.rand(2, c, h, w)
        with torch.no_grad():
            assert torch.allclose(m(x), x, atol=1e-6)
    # training can leave the identity: the channels that do not carry the input are not all zero
    assert any(float(p.abs().sum()) > 0 for k, p in m.state_dict().items() if k.endswith("weight") and p.dim() == 4
               and p.shape[0] > 12)


def test_identity_init_of_the_stride_4_fast_arcnn() -> None:
    """The 4x4 space-to-depth needs 48 carried channels: (64, 48, 48, 64) carries them, the reference widths do not."""
    m = build_model("fast_arcnn", stride=4, features=(64, 48, 48, 64), mid_kernel=5)
    assert init_identity_(m)
    for h, w in ((40, 40), (49, 51), (26, 30)):  # padded to multiples of 4 and cropped back
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            assert torch.allclose(m(x), x, atol=1e-6)
    assert not init_identity_(build_model("fast_arcnn", stride=4))  # 32 < 3 x 4 x 4


def test_identity_init_refuses_what_it_cannot_make_the_identity() -> None:
    from torch import nn

    strided_no_deconv = nn.Sequential(nn.Conv2d(3, 64, 9, stride=2, padding=4), nn.PReLU(),
                                      nn.Conv2d(64, 3, 5, padding=2))
    too_narrow = nn.Sequential(nn.Conv2d(3, 8, 9, stride=2, padding=4), nn.PReLU(),  # 8 < 3 x 2 x 2 channels
                               nn.ConvTranspose2d(8, 3, 9, stride=2, padding=4, output_padding=1))
    for m in (strided_no_deconv, too_narrow):
        before = [p.clone() for p in m.parameters()]
        assert not init_identity_(m)
        assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))  # left untouched


def test_batches_are_a_function_of_seed_and_step(image_dir: Path) -> None:
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(image_dir.iterdir())]
    cfg = PatchConfig(patch_size=32, batch_size=4, qualities=(10, 20), color="rgb", augment=True, seed=7)
    a, b = PatchBatches(imgs, cfg), PatchBatches(imgs, cfg)
    x1, y1 = a[5]
    x2, y2 = b[5]
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(a[6][0], x1)
    assert x1.shape == (4, 3, 32, 32) and float(x1.min()) >= 0 and float(x1.max()) <= 1
    # the compressed input differs from the clean target: JPEG artifacts are there to remove
    assert float((x1 - y1).abs().mean()) > 1e-3
    loader = torch.utils.data.DataLoader(a, batch_size=None, sampler=range(5, 7), num_workers=1)
    xs = [x for x, _ in loader]
    assert torch.equal(xs[0], x1)


@pytest.mark.parametrize(("isa", "cuda", "want"), [
    ("avx512+vnni+bf16", False, "bf16"), ("avx512+vnni+amx", False, "bf16"), ("avx2", False, "fp32"),
    ("avx512+vnni", False, "fp32"), ("avx2", True, "bf16"),
])
def test_precision_auto_is_bf16_only_where_it_is_native(
    monkeypatch: pytest.MonkeyPatch, isa: str, cuda: bool, want: str, tmp_path: Path,
) -> None:
    import compress.deploy
    from compress.recipe.train_recipe import load_train_recipe, recipe_settings
    from compress.train import resolve_precision

    monkeypatch.setattr(compress.deploy, "cpu_isa", lambda flags=None: isa)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_precision("auto") == want
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"  # explicit settings stay
    recipe = tmp_path / "r.yaml"
    recipe.write_text("schema_version: 1\nkind: train\nname: r\narch: arcnn\nprecision: auto\n")
    assert recipe_settings(load_train_recipe(recipe))["precision"] == want  # what config.json will record


def test_init_from_starts_at_a_trained_checkpoint(image_dir: Path, tmp_path: Path) -> None:
    from compress.errors import CheckpointError

    first = Trainer(_cfg(image_dir, tmp_path / "a", steps=3), progress=False)
    first.fit()
    ckpt = tmp_path / "a" / "last.safetensors"
    warm = Trainer(_cfg(image_dir, tmp_path / "b", init_from=str(ckpt)), progress=False)
    assert warm.init_used == f"from {ckpt.as_posix()}"
    for k, v in first.model.state_dict().items():  # before its first step it is the checkpoint, not a fresh init
        assert torch.equal(warm.model.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="holds 'arcnn', this run trains 'fast_arcnn'"):
        Trainer(_cfg(image_dir, tmp_path / "c", arch="fast_arcnn", init_from=str(ckpt)), progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Trainer(_cfg(image_dir, tmp_path / "d", init_from=str(tmp_path / "missing.safetensors")), progress=False)


def test_resume_may_change_when_and_how_the_run_is_checked(image_dir: Path, tmp_path: Path) -> None:
    """Validation / checkpoint cadence and validation precision never change the weights: a resumed run
    may change them and still ends bit-identical to a straight run. A setting the stopped run did not know
    yet (an older checkpoint) is read at its default."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    straight = Trainer(_cfg(image_dir, tmp_path / "a"), progress=False)
    straight.fit()
    first = Trainer(_cfg(image_dir, tmp_path / "b"), progress=False)
    first.batches = _limited(first.batches, 3)  # type: ignore[method-assign]
    first.fit()
    last = tmp_path / "b" / "last.safetensors"
    with safe_open(str(last), framework="pt") as fh:
        meta = dict(fh.metadata())
    old = json.loads(meta["train_config"])
    del old["val_precision"]  # as written before the setting existed
    meta["train_config"] = json.dumps(old)
    save_file(load_file(str(last)), str(last), metadata=meta)
    from compress.train import Validator

    cfg = _cfg(image_dir, tmp_path / "b", val_every=2, ckpt_every=1, val_precision="bf16")
    resumed = Trainer(cfg, validator=Validator(cfg), progress=False)
    resumed.fit(resume=True)
    a = load_file(str(tmp_path / "a" / "last.safetensors"))
    b = load_file(str(last))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(Exception, match="other settings: lr"):
        Trainer(_cfg(image_dir, tmp_path / "b", lr=0.5, val_precision="bf16"), progress=False).fit(resume=True)


def test_bf16_validation_scores_near_fp32_and_leaves_the_model_alone(image_dir: Path) -> None:
    from compress.train import Validator

    model = build_model("arcnn")
    init_identity_(model)
    with torch.no_grad():  # a model that changes the image, so rounding shows
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    fp32 = Validator(_cfg(image_dir, image_dir.parent / "o"))(model)
    bf16 = Validator(_cfg(image_dir, image_dir.parent / "o", val_precision="bf16"))(model)
    assert math.isfinite(bf16) and bf16 != fp32 and abs(bf16 - fp32) < 0.5
    assert model.training and all(p.is_contiguous() for p in model.parameters())


def test_config_rejects_an_unknown_validation_precision(image_dir: Path, tmp_path: Path) -> None:
    from compress.errors import ConfigError

    with pytest.raises(ConfigError, match="val_precision"):
        _cfg(image_dir, tmp_path, val_precision="int8")


def test_weights_dtype_bf16_stores_best_in_bf16_and_resumes_from_fp32(image_dir: Path, tmp_path: Path) -> None:
    """``weights_dtype: bf16`` halves the shipped file: best.safetensors holds bf16 parameters (the trained
    fp32 weights rounded), last.safetensors stays fp32 so a resume is exact; loading casts back to fp32."""
    from compress.checkpoint import checkpoint_metadata, load_model

    run = Trainer(_cfg(image_dir, tmp_path / "r", weights_dtype="bf16", val_every=6), progress=False)
    run.fit()
    best = load_file(str(tmp_path / "r" / "best.safetensors"))
    last = load_file(str(tmp_path / "r" / "last.safetensors"))
    params = dict(run.model.named_parameters())
    assert params and all(best[k].dtype == torch.bfloat16 for k in params)
    assert all(last[k].dtype == torch.float32 for k in params)
    # best is the final step here (one validation): the fp32 weights rounded to bf16
    assert all(torch.equal(best[k], last[k].to(torch.bfloat16)) for k in params)
    meta = checkpoint_metadata(tmp_path / "r" / "best.safetensors")
    assert "bfloat16" in meta["stored_dtype"] and json.loads(meta["train_config"])["weights_dtype"] == "bf16"
    model, _ = load_model(tmp_path / "r" / "best.safetensors")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_save_checkpoint_param_dtype_keeps_buffers(tmp_path: Path) -> None:
    """Only parameters are cast: IDCN's stored buffers (the quantization tables) stay fp32."""
    from compress.checkpoint import save_checkpoint

    model = build_model("idcn_s")
    buffers = {k for k, _ in model.named_buffers()} & set(model.state_dict())  # the persistent ones
    assert buffers
    p = save_checkpoint(tmp_path / "m.safetensors", model, arch="idcn_s", channels=3, param_dtype=torch.bfloat16)
    t = load_file(str(p))
    assert all(t[k].dtype == torch.float32 for k in buffers if t[k].is_floating_point())
    assert all(t[k].dtype == torch.bfloat16 for k, _ in model.named_parameters())


def test_config_rejects_an_unknown_weights_dtype(image_dir: Path, tmp_path: Path) -> None:
    from compress.errors import ConfigError

    with pytest.raises(ConfigError, match="weights_dtype"):
        _cfg(image_dir, tmp_path, weights_dtype="fp16")
