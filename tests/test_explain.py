"""Explanations: Grad-CAM finds the corner that decides the class; the linear and pixel maps match brute force."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from corner_data import SIZE, corner_images, trained_cnn
from logoapp import explain as X
from logoapp import models as M
from logoapp import store
from logoapp.ideal import PixelSimilarity, class_means
from logoapp.predict import Predictor


def quadrant_mass(h: np.ndarray) -> float:
    """Share of the heatmap in the top-left quadrant."""
    n = h.shape[0] // 2
    return float(h[:n, :n].sum() / h.sum())


def net_meta(arch: str, size: int, data_size: int, channels: int = 3, n: int = 3) -> dict:
    return {"arch": arch, "vocab": [f"c{k}" for k in range(n)], "size": size, "data_size": data_size,
            "channels": channels}


def random_net(arch: str, size: int = 12, data_size: int = 12, channels: int = 3, n: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    model, _ = M.build(arch, channels, n, data_size, size, pretrained=False)
    with torch.no_grad():  # batch-norm statistics other than the initial ones
        model.train()(torch.randint(0, 256, (8, data_size, data_size, channels), dtype=torch.uint8))
    return model.eval(), net_meta(arch, size, data_size, channels, n)


def noise(size: int, channels: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, channels), dtype=np.uint8)


def test_gradcam_finds_the_corner_that_decides_the_class(capsys):
    ds, model, meta = trained_cnn()
    va = ds.idx("valid")
    masses, right = [], 0
    for i in va:
        e = X.explain(model, meta, ds.images[i])
        assert e.kind == "Grad-CAM" and e.heatmap.shape == (SIZE, SIZE) and e.heatmap.dtype == np.float32
        assert e.heatmap.min() >= 0 and e.heatmap.max() == pytest.approx(1)
        assert e.overlay.shape == (SIZE, SIZE, 3) and e.overlay.dtype == np.uint8
        assert e.label == max(e.probs, key=e.probs.get) and e.raw.shape == (4, 4)
        masses.append(quadrant_mass(e.heatmap))
        right += e.label == ds.vocab[ds.labels[i]]
    with capsys.disabled():
        print(f"\nGrad-CAM mass in the deciding quadrant over {len(va)} validation images: mean {np.mean(masses):.2f}, "
              f"min {np.min(masses):.2f} (a uniform map would give 0.25); {right}/{len(va)} answered right")
    assert right / len(va) >= 0.9
    assert np.mean(masses) >= 0.6 and np.median(masses) >= 0.6


def test_gradcam_explains_any_class_by_name_or_index():
    ds, model, meta = trained_cnn()
    x = ds.images[ds.idx("valid")[0]]
    by_name, by_index = X.gradcam(model, meta, x, "red"), X.gradcam(model, meta, x, 1)
    assert by_name.label == by_index.label == "red" and by_name.target == 1
    assert np.array_equal(by_name.heatmap, by_index.heatmap)
    other = X.gradcam(model, meta, x, "blue")
    assert other.label == "blue" and not np.allclose(other.raw, by_name.raw)
    with pytest.raises(ValueError, match="no class 'green'"):
        X.explain(model, meta, x, "green")
    with pytest.raises(ValueError, match="out of range"):
        X.explain(model, meta, x, 2)


@pytest.mark.parametrize("arch", ["cnn", "resnet18"])
def test_gradcam_matches_a_reference_and_leaves_the_model_alone(arch):
    """The same maths written out on the model's two halves: features of the last conv block, then the rest."""
    model, meta = random_net(arch, size=32, data_size=40)
    x = noise(40)
    before = copy.deepcopy(model.state_dict())
    with torch.inference_mode():  # a caller's inference mode must not stop the gradients Grad-CAM needs
        e = X.gradcam(model, meta, x, target=2)
    z = model.prep(torch.from_numpy(x[None]))
    if arch == "cnn":
        head, tail = model.body[:5], model.body[5:]
    else:
        head, tail = model.body[0], model.body[1]
    a = head(z).detach().requires_grad_()
    (g,) = torch.autograd.grad(tail(a)[0, 2], a)
    ref = (g.mean((2, 3), keepdim=True) * a).sum(1)[0]
    assert np.allclose(e.raw, ref.detach().numpy(), atol=1e-5)
    assert e.heatmap.shape == (40, 40)
    layer = X.last_conv_block(model)
    assert not layer._forward_hooks and not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_linear_map_is_each_pixels_share_of_the_score():
    """Brute force: the drop in the class score when each pixel's normalised value is set to zero, pixel by pixel."""
    model, meta = random_net("linear", size=10, data_size=10, channels=4)
    x = noise(10, 4)
    e = X.explain(model, meta, x, target=1)
    assert e.kind == "weights x input"
    with torch.inference_mode():
        z = model.prep(torch.from_numpy(x[None]))
        score = model.body(z)[0, 1]
        ref = np.zeros((10, 10), np.float32)
        for r in range(10):
            for c in range(10):
                zz = z.clone()
                zz[0, :, r, c] = 0
                ref[r, c] = score - model.body(zz)[0, 1]
    assert np.allclose(e.raw, ref, atol=1e-4)
    pos = np.maximum(ref, 0)
    assert np.allclose(e.heatmap, pos / pos.max(), atol=1e-4)


def test_linear_map_at_another_model_size_comes_back_at_the_images_size():
    model, meta = random_net("linear", size=8, data_size=12)
    e = X.explain(model, meta, noise(12))
    assert e.raw.shape == (8, 8) and e.heatmap.shape == (12, 12) and e.overlay.shape == (12, 12, 3)


def test_mlp_map_is_gradient_times_input():
    """Reference: central finite differences of the class score in every normalised input value, in float64."""
    model, meta = random_net("mlp", size=6, data_size=6)
    x = noise(6)
    e = X.explain(model, meta, x, target=0)
    assert e.kind == "gradient x input"
    m64 = copy.deepcopy(model).double()
    with torch.inference_mode():
        z = model.prep(torch.from_numpy(x[None])).double()
        flat, eps = z.flatten(), 1e-6
        grad = torch.zeros_like(flat)
        for j in range(len(flat)):
            up, down = flat.clone(), flat.clone()
            up[j] += eps
            down[j] -= eps
            grad[j] = (m64.body(up.view_as(z))[0, 0] - m64.body(down.view_as(z))[0, 0]) / (2 * eps)
    ref = (grad.view_as(z) * z)[0].sum(0).numpy()
    assert np.allclose(e.raw, ref, atol=1e-4)


@pytest.mark.parametrize("kind", ["l1", "rmse"])
def test_pixel_map_against_loops(kind):
    """Per pixel, by plain loops: how much closer the image is to the explained class's ideal than to the runner-up's;
    summed over the image that is exactly the gap between the two distances."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(30) % 3
    means = class_means(imgs, labels, 3)
    model = PixelSimilarity(means, kind)
    meta = net_meta("pixel", 8, 8)
    x = imgs[4]
    e = X.explain(model, meta, x)
    xf = x.astype(np.float64) / 255
    m = means.permute(0, 2, 3, 1).double().numpy()
    d = [np.abs(xf - m[k]).mean() if kind == "l1" else np.sqrt(((xf - m[k]) ** 2).mean()) for k in range(3)]
    t = int(np.argmin(d))
    r = min((k for k in range(3) if k != t), key=lambda k: d[k])
    assert e.target == t and e.extra["runner_up"] == f"c{r}"
    ref = np.zeros((8, 8))
    for i in range(8):
        for j in range(8):
            for c in range(3):
                f = abs if kind == "l1" else (lambda v: v * v)
                ref[i, j] += f(xf[i, j, c] - m[r][i, j, c]) - f(xf[i, j, c] - m[t][i, j, c])
    assert np.allclose(e.raw, ref, atol=1e-5)
    if kind == "l1":
        assert ref.sum() / (8 * 8 * 3) == pytest.approx(d[r] - d[t], abs=1e-6)
    else:
        assert ref.sum() / (8 * 8 * 3) == pytest.approx(d[r] ** 2 - d[t] ** 2, abs=1e-6)
    assert e.extra["diff_target"].shape == (8, 8) and e.heatmap.max() == pytest.approx(1)
    forced = X.explain(model, meta, x, target=r)  # another class: compared with the class the model chose
    assert forced.extra["runner_up"] == f"c{t}" and np.allclose(forced.raw, -ref, atol=1e-5)


def test_explain_loads_images_as_prediction_does(trained, tmp_path):
    """A path and the array prediction prepares give one explanation; the overlay can go over any size of picture."""
    folder, data = trained
    model, meta = store.load(folder)
    path = sorted(data.glob("*/*.png"))[0]
    by_path = X.explain(model, meta, path)
    arr = Predictor.load(folder).prepare(path)
    by_array = X.explain(model, meta, arr)
    assert by_path.kind == "weights x input" and np.array_equal(by_path.heatmap, by_array.heatmap)
    assert np.array_equal(by_path.image, arr)
    big = np.asarray(Image.open(path).convert("RGB").resize((100, 60)))
    assert X.overlay(big, by_path.heatmap).shape == (60, 100, 3)
    with pytest.raises(ValueError, match="no explanation method"):
        X.explain(model, {**meta, "arch": "svm"}, arr)


def test_a_zero_map_stays_zero():
    """A class with no positive evidence anywhere gives an all-zero heatmap, not NaNs."""
    model, meta = random_net("linear", size=6, data_size=6)
    with torch.no_grad():
        model.body[-1].weight.zero_()
    e = X.explain(model, meta, noise(6))
    assert np.all(e.heatmap == 0) and np.isfinite(e.heatmap).all()


def test_corner_images_put_the_class_colour_in_the_corner():
    x, y = corner_images(4, 0)
    assert x.shape == (4, SIZE, SIZE, 3) and list(y) == [0, 1, 0, 1]
