"""Near-duplicate detection on uint8 images: fingerprints and the pairs of copies among them.

Copies. Exact: the same cached pixels. Near: each image is seen over black, over white and without alpha (a logo
matches copies flattened or saved without alpha); per view a 63-bit pHash (DCT of a 32 px grey thumbnail; Zauner
2010), a 4x4 colour thumbnail, a 16 px grey one (coarse), the gradients of a 48 px one (fine; inner: opaque parts
only), distances 1 - cosine. Of each image's NEIGHBOURS nearest (coarse), a copy is within HAMMING_MAX and
COLOUR_MAX, and within FINE_MAX or INNER_MAX (a much smaller one compared at its own size), or within CROP_SHARE of
the data's typical nearest distance (slight crops: where pictures lie far apart, as photos do, not crest renders).
Measured on 3,000 crests (benchmarks/audit.py): resized JPEG or recoloured copies within 0.005 fine, alpha-dropped
ones within 0.005 inner (0.008 at a third of the size); distinct crests 0.016 fine (0.04 but 0.1%), 0.009 inner."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .images import _premultiply, resize

NEIGHBOURS = 10       # candidates per image: more than any realistic copy count, few enough to check cheaply
HAMMING_MAX = 10      # of 63 pHash bits: copies of crests within 4, unrelated pictures ~31 apart
FINE_MAX = 0.015      # 1 - cosine of 48 px gradient maps; measured margins in the module docstring
INNER_MAX = 0.008     # the same inside the opaque area, opaque image vs transparent: alpha-dropped copies <= 0.005
COLOUR_MAX = 40.0     # worst cell of 4x4 colour thumbnails (0-255): slight recolouring <= 27, red for green 100+
SHRUNK = 0.8          # a copy this much smaller (side) is compared with the original shrunk to its size
COARSE_GATE = 0.06    # fine is checked on pairs this close in coarse only (copies <= 0.045: small, alpha dropped)
CROP_SHARE = 0.05     # a cropped copy must be 20x closer than images usually are to their nearest neighbour
CROP_MAX = 0.02       # ... and never further than this coarse distance
LUMA = torch.tensor([0.299, 0.587, 0.114])
POPCOUNT = np.array([i.bit_count() for i in range(256)], np.uint8)


def _shrink(g: torch.Tensor, s: int) -> torch.Tensor:
    return F.interpolate(g, size=(s, s), mode="bilinear", antialias=True, align_corners=False)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows centred and scaled to length 1: cosine similarity becomes a dot product."""
    return F.normalize(x.flatten(1) - x.flatten(1).mean(1, keepdim=True), dim=1, eps=1e-6)


def _edges(t: torch.Tensor, f) -> torch.Tensor:
    """f of horizontally and of vertically neighbouring pixels, flattened side by side."""
    return torch.cat([f(t[:, :, 1:], t[:, :, :-1]).flatten(1), f(t[:, 1:], t[:, :-1]).flatten(1)], 1)


def _dct(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (n, n)."""
    m = torch.cos(torch.pi * (2 * torch.arange(n)[None] + 1) * torch.arange(n)[:, None] / (2 * n)) * (2 / n) ** 0.5
    return torch.cat([m[:1] / 2 ** 0.5, m[1:]]).float()


def _views(x: np.ndarray, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, H, W, C) -> views (n, V, 3, size, size): over black, over white, colour alone; alpha (n, 1, ...)."""
    # shrunk on the uint8 grid (torch's SIMD kernel, 10x cheaper than float), premultiplied (images._premultiply: exact
    # and fast) so that shrinking and compositing commute (no dark fringe from the colour of transparent pixels)
    def down(a):
        return _shrink(torch.from_numpy(a).permute(0, 3, 1, 2), size).float()
    if x.shape[-1] != 4:
        return down(x)[:, None], torch.full((len(x), 1, size, size), 255.0)
    p, pm = down(x), down(_premultiply(x))
    return torch.stack([pm[:, :3], pm[:, :3] + 255 - pm[:, 3:], p[:, :3]], 1), pm[:, 3:]


@torch.inference_mode()
def fingerprints(images: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray | torch.Tensor]:
    """Per image and view: pHash 'bits', unit 'coarse' and 'fine' vectors, 'colour' 4x4; 'inner': fine's opaque part."""
    dct, out = _dct(32), {"bits": [], "coarse": [], "fine": [], "colour": [], "inner": []}
    for i in range(0, len(images), chunk):
        c, alpha = _views(images[i:i + chunk])
        n, nv = c.shape[:2]
        out["colour"].append(_shrink(c.flatten(0, 1), 4).reshape(n, nv, -1))
        v = torch.einsum("nvchw,c->nvhw", c, LUMA)
        d = (dct @ _shrink(v, 32) @ dct.T)[..., :8, :8].flatten(2)[..., 1:]  # 63 low frequencies, DC left out
        out["bits"].append(np.packbits((d > d.median(2, keepdim=True).values).numpy(), axis=2))
        out["coarse"].append(_unit(_shrink(v, 16).flatten(0, 1)).reshape(n, nv, -1))
        out["fine"].append(_unit(_edges(_shrink(v, 48).flatten(0, 1), torch.sub)).reshape(n, nv, -1).half())  # edges
        out["inner"].append(_edges((_shrink(alpha, 48)[:, 0] >= 254).float(), torch.mul).bool())  # both pixels opaque
    return {k: np.concatenate(v) if k == "bits" else torch.cat(v) for k, v in out.items()}


@torch.inference_mode()
def _neighbours(coarse: torch.Tensor, k: int, block: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k nearest other rows by coarse distance (1 - best cosine over views): (n, k) distances, indices."""
    n, k, sims = len(coarse), min(k, len(coarse) - 1), []
    for i in range(0, n, block):
        sim = torch.stack([coarse[i:i + block, v] @ coarse[:, v].T for v in range(coarse.shape[1])]).amax(0)
        sim[torch.arange(len(sim)), torch.arange(i, i + len(sim))] = -2  # not itself
        sims.append(sim.topk(k, 1))
    return 1 - torch.cat([s.values for s in sims]), torch.cat([s.indices for s in sims])


def _closeness(fa: dict, fb: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pHash, fine and inner distances of row-aligned fingerprints, each in its best view."""
    ga, gb, m = fa["fine"].float(), fb["fine"].float(), fa["inner"] & fb["inner"]
    ia, ib = ga[:, -1] * m, gb[:, -1] * m  # colour alone inside both opaque areas: no alpha-dropped copy's rim
    inner = 1 - (ia * ib).sum(1) / (ia.norm(dim=1) * ib.norm(dim=1)).clamp(min=1e-9)
    return POPCOUNT[fa["bits"] ^ fb["bits"]].sum(-1).min(1), (1 - (ga * gb).sum(-1).amax(1)).numpy(), inner.numpy()


def _shrunk(images: np.ndarray, big, small, sides: np.ndarray) -> dict:
    """Fingerprints of images[big], each shrunk to the side of its images[small] and back: the detail a copy keeps."""
    return fingerprints(np.stack([resize(resize(images[i], max(8, round(sides[j]))), images.shape[1])
                                  for i, j in zip(big, small)]))


def near_pairs(fp: dict, images: np.ndarray, sides: np.ndarray, neighbours: int = NEIGHBOURS) -> list:
    """(i, j, pHash distance) of near copies among images (fingerprints fp; sides: each file's own sqrt(w * h))."""
    if (n := len(fp["bits"])) < 2:
        return []
    dist, idx = _neighbours(fp["coarse"], neighbours)
    crop_tol = min(CROP_MAX, CROP_SHARE * float(dist[:, 0].median()))
    i, j = np.repeat(np.arange(n), idx.shape[1]), idx.flatten().numpy()
    pair, first = np.unique(np.sort(np.stack([i, j], 1), 1), axis=0, return_index=True)  # each pair once
    a, b, coarse = pair[:, 0], pair[:, 1], dist.flatten().numpy()[first]
    colour = (fp["colour"][a] - fp["colour"][b]).abs().unflatten(2, (3, 16)).mean(2).amax(2).amin(1).numpy()
    gate = (colour <= COLOUR_MAX) & (coarse <= COARSE_GATE)  # not another colour scheme; close enough to check
    ham = POPCOUNT[fp["bits"][a] ^ fp["bits"][b]].sum(-1).min(1)
    fine, inner, rows = np.ones(len(a), np.float32), np.ones(len(a), np.float32), lambda k: {f: fp[f][k] for f in fp}
    close = np.flatnonzero(gate & (ham <= HAMMING_MAX))
    for s in range(0, len(close), 2048):  # in blocks: the fine vectors are large
        c = close[s:s + 2048]
        _, fine[c], inner[c] = _closeness(rows(a[c]), rows(b[c]))
    lo, hi = np.minimum(sides[a], sides[b]), np.maximum(sides[a], sides[b])
    low = np.flatnonzero(gate & (lo < SHRUNK * hi) & (lo < images.shape[1]))  # one much smaller than the other
    for s in range(0, len(low), 256):
        c = low[s:s + 256]
        big, small = np.where(sides[a[c]] > sides[b[c]], a[c], b[c]), np.where(sides[a[c]] > sides[b[c]], b[c], a[c])
        h2, f2, i2 = _closeness(_shrunk(images, big, small, sides), rows(small))
        ham[c], fine[c], inner[c] = np.minimum(ham[c], h2), np.minimum(fine[c], f2), np.minimum(inner[c], i2)
    flat = fp["inner"].all(1).numpy()  # opaque all over: inner compares an alpha-dropped copy with its original
    inner[flat[a] == flat[b]] = 1.0
    ok = (ham <= HAMMING_MAX) & gate & ((fine <= FINE_MAX) | (inner <= INNER_MAX) | (coarse <= crop_tol))
    return [(int(x), int(y), int(h)) for x, y, h in zip(a[ok], b[ok], ham[ok])]


def union(n: int, pairs) -> list[int]:
    """Union-find: each item's group root (the group's smallest index)."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = x = parent[parent[x]]  # path halving
        return x
    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]
