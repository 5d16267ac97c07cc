#!/usr/bin/env python3
"""PyTorch peer of bench_cuda (docs/PERF.md §7.1; bench/README.md).

The same models as our engine, written the way a strong PyTorch user would:
nn.LSTM on cuDNN; noisy top-k gating (one GEMM over W_g|W_noise, topk(k+1),
the paper's importance and load losses, PAPER.md §2); hierarchical gating
(Eq. 12-14); strictly balanced gating for the translation model (App. F);
sort-based dispatch (argsort, bincount, cumsum offsets); experts through
torch._grouped_mm with device-side offsets when it exists (else a loop);
a deterministic combine; bf16 autocast with fp32 master weights; fused Adam
with global-norm clipping at 1.0. Two variants: "eager", and "compiled" with
torch.compile on the MoE layers and the softmax loss (nn.LSTM stays eager:
dynamo breaks the graph on RNNs).

Modes
  python3 bench/torch_ref.py [--json FILE] [--configs G1,..] [--variants eager,compiled]
          [--precision bf16|fp32] [--steps N] [--warmup N] [--device cuda|cpu] [--tiny]
          [--ours FILE]            benchmark; prints the table bench_cuda prints
  python3 bench/torch_ref.py --device cpu --precision fp32 --variants eager [--threads N]
                                   the CPU configurations C1-C3 (bench/cpu_vs_torch.py runs this)
  python3 bench/torch_ref.py --check DIR
          correctness gate: reads the files of `bench_cuda --dump-check DIR`
          (weights, batch, our loss and gradient norms), runs one fp32 step of the
          same model on the same batch, and compares loss and per-parameter
          gradient norms (exit 1 beyond --tol).

The token stream is the integer generator of bench/cuda/bench_tokens.h, so both
programs train on identical batches. Timing: warm-up steps, then the median of
the timed steps, each bracketed by torch.cuda.synchronize(); components are
timed apart on the step's shapes, as bench_cuda does.
"""

import argparse
import gc
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Model-file container (src/io/ckpt.h, man/moe-files.5)
# ---------------------------------------------------------------------------

_CKPT_DTYPES = {1: (np.float32, 4), 2: (None, 2), 3: (np.int32, 4), 4: (np.int64, 8), 5: (np.uint8, 1)}


class MoeFile:
    """Reader of model.bin containers: header and index CRCs are verified on
    open, each tensor's CRC when it is read."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if len(d) < 256:
            raise ValueError(f"{path}: truncated ({len(d)} bytes)")
        magic = d[:8]
        if magic not in (b"MOEMODEL", b"MOESTATE"):
            raise ValueError(f"{path}: not a moe file (magic {magic!r})")
        version, hsize, hcrc = struct.unpack_from("<III", d, 8)
        if hsize < 256 or hsize > len(d):
            raise ValueError(f"{path}: header size {hsize}")
        crc = zlib.crc32(d[:16])
        crc = zlib.crc32(b"\0\0\0\0", crc)
        crc = zlib.crc32(d[20:hsize], crc)
        if crc != hcrc:
            raise ValueError(f"{path}: header CRC mismatch")
        if version != 1:
            raise ValueError(f"{path}: format version {version} (this reader knows 1)")
        endian, align = struct.unpack_from("<II", d, 20)
        if endian != 1:
            raise ValueError(f"{path}: big-endian data")
        fsize, data_off, idx_off, idx_size, nmeta, ntens = struct.unpack_from("<QQQQQQ", d, 32)
        (idx_crc,) = struct.unpack_from("<I", d, 80)
        if fsize != len(d) or idx_off + idx_size != fsize or data_off < hsize:
            raise ValueError(f"{path}: inconsistent header (file {len(d)} bytes, header says {fsize})")
        idx = d[idx_off:idx_off + idx_size]
        if zlib.crc32(idx) != idx_crc:
            raise ValueError(f"{path}: index CRC mismatch")
        p = 0
        self.meta = {}
        for _ in range(nmeta):
            typ, kl = idx[p], idx[p + 1]
            key = idx[p + 2:p + 2 + kl].decode()
            p += 2 + kl + 1
            (vl,) = struct.unpack_from("<Q", idx, p)
            p += 8
            val = idx[p:p + vl]
            p += vl
            if typ == 1:
                self.meta[key] = val[:-1].decode()
            elif typ == 2:
                self.meta[key] = struct.unpack("<q", val)[0]
            elif typ == 3:
                self.meta[key] = struct.unpack("<d", val)[0]
            else:
                self.meta[key] = bytes(val)
        self.tensors = {}
        for _ in range(ntens):
            dt, nd, nl = idx[p], idx[p + 1], idx[p + 2]
            name = idx[p + 3:p + 3 + nl].decode()
            p += 3 + nl + 1
            dims = struct.unpack_from("<4Q", idx, p)[:nd]
            off, nb, tcrc = struct.unpack_from("<QQI", idx, p + 32)
            p += 52
            if dt not in _CKPT_DTYPES or off % align or off + nb > idx_off:
                raise ValueError(f"{path}: tensor '{name}' has a bad table entry")
            self.tensors[name] = (dt, tuple(dims), off, nb, tcrc)

    def has(self, name):
        return name in self.tensors

    def tensor(self, name):
        dt, dims, off, nb, tcrc = self.tensors[name]
        raw = self.data[off:off + nb]
        if zlib.crc32(raw) != tcrc:
            raise ValueError(f"{self.path}: tensor '{name}': CRC mismatch")
        npdt = _CKPT_DTYPES[dt][0]
        if npdt is None:
            raise ValueError(f"{self.path}: tensor '{name}': bf16 is not read here")
        return np.frombuffer(raw, dtype=npdt).reshape(dims if dims else ())

    def param(self, name):
        """A parameter: one tensor, or the items of a stacked one stacked."""
        if name in self.tensors:
            return self.tensor(name)
        dot = name.rfind(".")
        items, i = [], 0
        while True:
            item = f"{name[:dot]}.{i:04d}{name[dot:]}"
            if item not in self.tensors:
                break
            items.append(self.tensor(item))
            i += 1
        if not items:
            raise KeyError(f"{self.path}: no parameter '{name}'")
        return np.stack(items)


# ---------------------------------------------------------------------------
# The token stream (bench/cuda/bench_tokens.h)
# ---------------------------------------------------------------------------

DATA_SEED = 1234
_M64 = (1 << 64) - 1


def _mix64_int(z):
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64_np(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def bench_tokens(seed, stream, V, n):
    K = 0
    while K < 63 and (1 << K) <= V:
        K += 1
    key = _mix64_int(_mix64_int(seed) ^ stream)
    with np.errstate(over="ignore"):
        r = _mix64_np(np.uint64(key) ^ np.arange(n, dtype=np.uint64))
        octv = (r >> np.uint64(32)) % np.uint64(K)
        span = (np.uint64(1) << octv) - np.uint64(1)
        return ((span + (r & span)) % np.uint64(V)).astype(np.int32)


# ---------------------------------------------------------------------------
# Configurations (bench/cuda/bench_config.c) and the FLOP model
# ---------------------------------------------------------------------------

def moe_cfg(experts, k, hidden, groups=0, gating="noisy-topk", w_imp=0.1, w_load=0.1):
    return dict(experts=experts, groups=groups, k=k, hidden=hidden, hidden_layers=1, gating=gating,
                w_importance=w_imp, w_load=w_load, w_threshold=1.0, noise_eps=0.01)


def configs(tiny):
    V = 2000 if tiny else 793471
    d = 64 if tiny else 512
    S = 256 if tiny else 8192
    T, B = (8, 16) if tiny else (64, 1024)

    def lm(cid, layers, moe=None, **kw):
        c = dict(id=cid, kind="lm", vocab=V, dim=d, rnn=d, proj=0, layers=layers, moe=moe, dropout=0.1,
                 residual=1, sampled=1, samples=S, chunk=0, T=T, B=B, micro=1)
        c.update(kw)
        return c

    out = [
        lm("G1", "lstm,lstm,lstm,lstm"),
        lm("G2", "lstm,moe,lstm", moe_cfg(16 if tiny else 256, 4, 2 * d)),
        lm("G3", "lstm,moe,lstm", moe_cfg(32 if tiny else 4096, 2, 2 * d, groups=4 if tiny else 16), dropout=0.2,
           micro=2 if tiny else 5),
        lm("G4", "lstm,moe,lstm", moe_cfg(16 if tiny else 256, 4, 2 * d), sampled=0, chunk=512 if tiny else 32768,
           B=8 if tiny else 256),
    ]
    sd = 64 if tiny else 512
    out.append(dict(id="G5", kind="s2s", vocab=1000 if tiny else 32000, dim=sd, rnn=128 if tiny else 2048, proj=sd,
                    enc_depth=3, dec_depth=2, enc_moe_after=2, dec_moe_after=1, enc_bidir=1, attention="separable",
                    att_dim=sd, moe=moe_cfg(8 if tiny else 32, 4, 4 * sd, gating="batchwise", w_imp=0.01, w_load=0.01),
                    dropout=0.4, residual=1, sampled=0, samples=0, chunk=1000 if tiny else 32000,
                    S=8 if tiny else 32, T=8 if tiny else 32, B=16 if tiny else 1024, micro=1))
    return out


def cpu_configs(tiny):
    """The CPU configurations of bench/cpu_vs_torch.py (issue 17): embedding -> LSTM -> MoE -> LSTM ->
    sampled softmax over 32k words, dropout 0.1, T = 64; C3 is C1 with 256 experts."""
    V = 2000 if tiny else 32000

    def lm(cid, d, E, h, S, B):
        if tiny:
            d, E, h, S, B = 32, min(E, 16), 64, 128, 8
        return dict(id=cid, kind="lm", vocab=V, dim=d, rnn=d, proj=0, layers="lstm,moe,lstm", moe=moe_cfg(E, 4, h),
                    dropout=0.1, residual=1, sampled=1, samples=S, chunk=0, T=16 if tiny else 64, B=B, micro=1)

    return [lm("C1", 256, 16, 512, 1024, 64), lm("C2", 512, 64, 1024, 4096, 128), lm("C3", 256, 256, 512, 1024, 64)]


def moe_macs(m, d):
    h, E = m["hidden"], m["experts"]
    expert = d * h + (m["hidden_layers"] - 1) * h * h + h * d
    if E == 1:
        return expert
    per = 2 if m["gating"] == "noisy-topk" else 1
    if not m["groups"]:
        return per * d * E + m["k"] * expert
    b = E // m["groups"]
    return per * d * m["groups"] + m["k"] * per * d * b + m["k"] * m["k"] * expert


def lstm_macs(inp, H, P):
    return 4 * H * (inp + (P if P else H)) + (H * P if P else 0)


def macs_per_token(c):
    """Forward multiply-adds per target token, as bench_macs_per_token."""
    d = c["dim"]
    if c["kind"] == "lm":
        m = 0
        for layer in c["layers"].split(","):
            m += lstm_macs(d, c["rnn"], c["proj"]) if layer == "lstm" else moe_macs(c["moe"], d)
        return m + d * ((c["samples"] + 1) if c["sampled"] else c["vocab"])
    H, P = c["rnn"], c["proj"]
    m = 0
    for l in range(c["enc_depth"]):
        m += 2 * lstm_macs(d, H if P else d // 2, d // 2 if P else 0) if (l == 0 and c["enc_bidir"]) \
            else lstm_macs(d, H, P)
    m += c["dec_depth"] * lstm_macs(2 * d, H, P)
    m += ((1 if c["enc_moe_after"] else 0) + (1 if c["dec_moe_after"] else 0)) * moe_macs(c["moe"], d)
    m += 2 * d * c["att_dim"]
    return m + c["S"] * (c["att_dim"] + d) + d * c["vocab"]


def tokens_micro(c):
    return c["T"] * c["B"]


def describe(c):
    if c["kind"] == "s2s":
        m = c["moe"]
        return (f"NMT: LSTM {c['rnn']}/{c['proj']} enc {c['enc_depth']} (bidir) dec {c['dec_depth']}, "
                f"MoE-{m['experts']} batchwise k={m['k']} h={m['hidden']}, full softmax {c['vocab']}, "
                f"{c['T']}x{c['B']} tokens")
    m = c["moe"]
    if m is None:
        body = f"{len(c['layers'].split(','))}xLSTM-{c['rnn']}"
    elif m["groups"]:
        body = (f"LSTM,MoE-{m['experts']}-h ({m['groups']}x{m['experts'] // m['groups']} k={m['k']}+{m['k']}, "
                f"h={m['hidden']}),LSTM")
    else:
        body = f"LSTM,MoE-{m['experts']} (k={m['k']}, h={m['hidden']}),LSTM"
    sm = f"sampled {c['samples']}" if c["sampled"] else "full"
    return f"d={c['dim']} {body}, softmax {sm} of {c['vocab']}, {c['T']}x{c['B']} tokens x {c['micro']}"


# ---------------------------------------------------------------------------
# Layers. Parameters keep our layouts where that costs nothing (experts
# [E x in x out], gates [d x n]); nn.LSTM keeps its own and a binding table
# maps our names onto slices/transposes of its tensors.
# ---------------------------------------------------------------------------

def acc_dtype(t):
    """fp32 for half-precision tensors, else the tensor's own dtype (fp64 checks stay fp64)."""
    return torch.float32 if t.dtype in (torch.bfloat16, torch.float16) else t.dtype


def glorot_(t, fan_in, fan_out):
    a = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        t.uniform_(-a, a)
    return t


class Bound:
    """Our parameter `name` = param (sliced to rows a:b of its flattened form
    when given, transposed when tr)."""

    def __init__(self, name, param, tr=False, a=None, b=None):
        self.name, self.param, self.tr, self.a, self.b = name, param, tr, a, b

    def load(self, arr):
        t = torch.from_numpy(np.array(arr)).to(self.param.dtype)
        with torch.no_grad():
            if self.a is not None:
                self.param[self.a:self.b].copy_(t.reshape(-1))
            elif self.tr:
                self.param.copy_(t.reshape(self.param.shape[::-1]).t())
            else:
                self.param.copy_(t.reshape(self.param.shape))

    def grad_norm(self):
        g = self.param.grad
        if g is None:
            return 0.0
        if self.a is not None:
            g = g[self.a:self.b]
        return float(g.double().norm())


def _mask_lengths(lengths, T):
    return lengths is not None and bool((lengths < T).any())


class Lstm(nn.Module):
    """An LSTM / LSTMP layer (optionally bidirectional) on nn.LSTM (cuDNN),
    time-major; padded sequences go through pack_padded_sequence, which gives
    what our masks give (zero outputs after a sequence's end, the reverse
    direction starting at its last real token)."""

    def __init__(self, name, inp, hidden, proj, bidir=False):
        super().__init__()
        self.name, self.hidden, self.proj, self.bidir = name, hidden, proj, bidir
        self.rnn = nn.LSTM(inp, hidden, proj_size=proj, bidirectional=bidir)
        out = proj if proj else hidden
        with torch.no_grad():
            for sfx in ([""] + (["_reverse"] if bidir else [])):
                glorot_(getattr(self.rnn, "weight_ih_l0" + sfx), inp, 4 * hidden)
                glorot_(getattr(self.rnn, "weight_hh_l0" + sfx), out, 4 * hidden)
                if proj:
                    glorot_(getattr(self.rnn, "weight_hr_l0" + sfx), hidden, proj)
                bi = getattr(self.rnn, "bias_ih_l0" + sfx)
                bi.zero_()
                bi[hidden:2 * hidden] = 1  # our forget-gate bias
                getattr(self.rnn, "bias_hh_l0" + sfx).zero_()

    def bindings(self):
        out = []
        dirs = [("", "")] if not self.bidir else [(".fw", ""), (".bw", "_reverse")]
        for ours, sfx in dirs:
            n = self.name + ours
            r = self.rnn
            h = self.hidden
            out += [Bound(n + ".wx", getattr(r, "weight_ih_l0" + sfx), tr=True),
                    Bound(n + ".wh", getattr(r, "weight_hh_l0" + sfx), tr=True),
                    Bound(n + ".b_i", getattr(r, "bias_ih_l0" + sfx), a=0, b=h),
                    Bound(n + ".b_f", getattr(r, "bias_ih_l0" + sfx), a=h, b=2 * h),
                    Bound(n + ".b_go", getattr(r, "bias_ih_l0" + sfx), a=2 * h, b=4 * h)]
            if self.proj:
                out.append(Bound(n + ".wp", getattr(r, "weight_hr_l0" + sfx), tr=True))
        return out

    def forward(self, x, lengths=None):
        T = x.shape[0]
        if _mask_lengths(lengths, T):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
            y, _ = self.rnn(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=T)
            return y
        return self.rnn(x)[0]

    def step_weights(self, split):
        """(W_x[:, :split], W_x[:, split:], W_h, W_p, bias) for a hand-written step loop."""
        r = self.rnn
        w = r.weight_ih_l0
        return (w[:, :split], w[:, split:], r.weight_hh_l0, r.weight_hr_l0 if self.proj else None,
                r.bias_ih_l0 + r.bias_hh_l0)


def cv2(v):
    """CV^2 with t2t's epsilons, as our cv2 op."""
    n = v.numel() + 1e-10
    mu = v.sum() / n
    var = ((v - mu) ** 2).sum() / n
    return var / (mu * mu + 1e-10)


def noisy_topk(clean, raw, k, noise_eps, train):
    """Noisy top-k gating (Eq. 3-5) and the smooth load estimate P (Eq. 9)."""
    n = clean.shape[1]
    sigma = None
    if train:
        sigma = F.softplus(raw) + noise_eps
        H = clean + torch.randn_like(clean) * sigma
    else:
        H = clean
    K1 = k + 1 if k < n else k
    topv, topi = H.topk(K1, dim=1)
    gates = torch.softmax(topv[:, :k], dim=1)
    P = None
    if train and k < n:
        in_top = torch.zeros_like(H, dtype=torch.bool).scatter_(1, topi[:, :k], True)
        thr = torch.where(in_top, topv[:, k:k + 1], topv[:, k - 1:k])
        P = 0.5 * (1 + torch.erf((clean - thr) / sigma / math.sqrt(2.0)))
    return topi[:, :k], gates, P


_GROUPED_OK = {}


def grouped_mm_supported(device, dt):
    """Whether torch._grouped_mm runs for dt on this device (probed once, eagerly,
    so compiled graphs see a constant)."""
    key = (device.type, dt)
    if key not in _GROUPED_OK:
        ok = hasattr(torch, "_grouped_mm")
        if ok:
            try:
                a = torch.ones(32, 16, device=device, dtype=dt)
                w = torch.ones(2, 16, 16, device=device, dtype=dt)
                torch._grouped_mm(a, w, offs=torch.tensor([16, 32], device=device, dtype=torch.int32))
            except (RuntimeError, NotImplementedError, TypeError):
                ok = False
        _GROUPED_OK[key] = ok
    return _GROUPED_OK[key]


@torch._dynamo.disable
def _loop_mm(x, w, counts):
    """Per-group products by a loop (needs the counts on the host)."""
    parts = torch.split(x, counts.tolist())
    return torch.cat([p @ w[g].to(p.dtype) for g, p in enumerate(parts)])


def grouped_mm(x, w, offs, counts, dt):
    """Rows of x split into groups by offs (I32 group ends) times w[g]: [M x k] x [G x k x n]."""
    x = x.to(dt)
    if grouped_mm_supported(x.device, dt):
        return torch._grouped_mm(x, w.to(dt), offs=offs)
    return _loop_mm(x, w.to(dt), counts)


class Experts(nn.Module):
    """E stacked ReLU experts [E x d x h], [E x h x d] (no biases)."""

    def __init__(self, name, E, d, h):
        super().__init__()
        self.name = name
        self.w_in = nn.Parameter(glorot_(torch.empty(E, d, h), d, h))   # each expert Glorot
        self.w_out = nn.Parameter(glorot_(torch.empty(E, h, d), h, d))
        self.mm_dtype = None    # None: the input's dtype

    def bindings(self):
        return [Bound(self.name + ".expert.w_in", self.w_in), Bound(self.name + ".expert.w_out", self.w_out)]

    def _mm(self, x, w, offs, counts):
        return grouped_mm(x, w, offs, counts, self.mm_dtype or x.dtype)

    def forward(self, xs, offs, counts):
        """xs [M x d] in expert-major order; offs I32 [E] group ends."""
        h = F.relu(self._mm(xs, self.w_in, offs, counts))
        return self._mm(h, self.w_out, offs, counts)


def route(slot_exp, E):
    """Sort slots by expert: order (pair -> slot), int32 group ends, counts."""
    order = torch.argsort(slot_exp, stable=True)
    counts = torch.zeros(E, dtype=torch.long, device=slot_exp.device).scatter_add_(0, slot_exp,
                                                                                   torch.ones_like(slot_exp))
    return order, counts.cumsum(0).to(torch.int32), counts


class MoE(nn.Module):
    """The MoE layer of nn/moe.h: flat or hierarchical noisy top-k, or flat
    strictly balanced (batchwise) gating; forward returns (y, losses)."""

    def __init__(self, name, d, cfg):
        super().__init__()
        self.name, self.d, self.cfg = name, d, cfg
        E, a, k = cfg["experts"], cfg["groups"], cfg["k"]
        if cfg["hidden_layers"] != 1:
            raise ValueError("torch_ref: one hidden layer per expert only")
        self.gating = cfg["gating"]
        if self.gating not in ("noisy-topk", "batchwise") or (a and self.gating != "noisy-topk"):
            raise ValueError(f"torch_ref: gating {self.gating} with groups {a} is not implemented")
        self.E, self.a, self.k = E, a, k
        self.n1 = a if a else E
        self.b = E // a if a else E
        self.wg = nn.Parameter(torch.zeros(d, self.n1))
        self.wn = nn.Parameter(torch.zeros(d, self.n1)) if self.gating == "noisy-topk" else None
        self.thr = nn.Parameter(torch.zeros(self.n1)) if self.gating == "batchwise" else None
        if a:
            self.wg2 = nn.Parameter(torch.zeros(a, d, self.b))
            self.wn2 = nn.Parameter(torch.zeros(a, d, self.b))
        self.experts = Experts(name, E, d, cfg["hidden"])
        self.impl = self._forward  # torch.compile replaces it in the compiled variant
        self.last = None           # routing of the last forward, for the component replays

    def bindings(self):
        n = self.name
        out = [Bound(n + ".gate.wg", self.wg)]
        if self.wn is not None:
            out.append(Bound(n + ".gate.wn", self.wn))
        if self.thr is not None:
            out.append(Bound(n + ".gate.thr", self.thr))
        if self.a:
            out += [Bound(n + ".gate2.wg", self.wg2), Bound(n + ".gate2.wn", self.wn2)]
        return out + self.experts.bindings()

    def _logits(self, x, train):
        if train and self.wn is not None:
            both = x @ torch.cat([self.wg, self.wn], 1)
            return both[:, :self.n1], both[:, self.n1:]
        return x @ self.wg, None

    def gate(self, x, train):
        """Routing: (slot_exp [N*kk], slot_gate [N*kk], kk, losses)."""
        c, k = self.cfg, self.k
        if self.gating == "batchwise":
            return self._gate_batchwise(x, train)
        clean, raw = self._logits(x, train)
        idx, g1, P1 = noisy_topk(clean, raw, k, c["noise_eps"], train)
        if not self.a:
            slot_exp, slot_gate, kk = idx.reshape(-1), g1.reshape(-1), k
            load = c["w_load"] * cv2(P1.sum(0)) if P1 is not None else None
        else:
            slot_grp = idx.reshape(-1)
            order1, offs1, counts1 = route(slot_grp, self.a)
            x1 = x[order1 // k]
            grp = slot_grp[order1]
            if train:
                both = self.experts_gate_mm(x1, torch.cat([self.wg2, self.wn2], 2), offs1, counts1)
                clean2, raw2 = both[:, :self.b], both[:, self.b:]
            else:
                clean2, raw2 = self.experts_gate_mm(x1, self.wg2, offs1, counts1), None
            idx2, g2, P2 = noisy_topk(clean2, raw2, k, c["noise_eps"], train)
            inv1 = torch.empty_like(order1)
            inv1[order1] = torch.arange(order1.numel(), device=x.device)
            exp2 = grp[:, None] * self.b + idx2
            slot_exp = exp2[inv1].reshape(-1)
            slot_gate = (g1.reshape(-1, 1) * g2[inv1]).reshape(-1)
            kk = k * k
            load = None
            if P1 is not None and P2 is not None:
                Lp = P1.sum(0)
                Ls = torch.zeros(self.a, self.b, device=x.device, dtype=P2.dtype).index_add(0, grp, P2)
                LH = Lp[:, None] * Ls / (counts1.to(Ls.dtype)[:, None] + 1e-10)
                load = c["w_load"] * cv2(LH.reshape(-1))
        imp = torch.zeros(self.E, device=x.device, dtype=slot_gate.dtype).index_add(0, slot_exp, slot_gate)
        losses = {"importance": c["w_importance"] * cv2(imp)}
        if load is not None:
            losses["load"] = load
        return slot_exp, slot_gate, kk, losses

    def experts_gate_mm(self, x, w, offs, counts):
        """Per-group products of the secondary gates (group-major rows)."""
        y = grouped_mm(x, w, offs, counts, self.experts.mm_dtype or x.dtype)
        return y.to(acc_dtype(y))

    def _gate_batchwise(self, x, train):
        if not train:
            raise ValueError("torch_ref: batchwise gating is implemented for training only")
        c, k, n = self.cfg, self.k, self.n1
        N = x.shape[0]
        lg = x @ self.wg
        probs = torch.softmax(lg.to(acc_dtype(lg)), dim=1)
        m = (k * N) // n
        rows = probs.topk(m, dim=0).indices.sort(0).values      # [m x n]: each expert's rows
        mask = torch.zeros_like(probs).scatter_(0, rows, 1.0)
        mthr = (probs > self.thr).to(probs.dtype)
        thr_loss = c["w_threshold"] / N * ((mthr - mask) * (probs.detach() - self.thr)).sum()
        pm = probs * mask
        den = pm.sum(1, keepdim=True)
        gates = pm / torch.where(den > 0, den, torch.ones_like(den))
        imp = gates.sum(0)
        losses = {"importance": c["w_importance"] * cv2(imp), "threshold": thr_loss}
        # expert-major slots: expert e holds rows[:, e]
        slot_rows = rows.t().reshape(-1)
        slot_gate = gates.gather(0, rows).t().reshape(-1)
        return slot_rows, slot_gate, m, losses

    def forward(self, x, train):
        y, losses, self.last = self.impl(x, train)
        return y, losses

    def _forward(self, x, train):
        """(y, losses, routing); routing = (xs, offs, counts, ye, order or rows, gates, kk, N)."""
        N, d = x.shape
        slot_a, slot_gate, kk, losses = self.gate(x, train)
        if self.gating == "batchwise":
            m = kk
            counts = torch.full((self.E,), m, dtype=torch.long, device=x.device)
            offs = (torch.arange(1, self.E + 1, device=x.device) * m).to(torch.int32)
            xs = x[slot_a]
            ye = self.experts(xs, offs, counts)
            last = (xs.detach(), offs, counts, ye.detach(), slot_a, slot_gate.detach(), "batchwise", N)
            y = torch.zeros(N, d, device=x.device, dtype=ye.dtype).index_add(
                0, slot_a, ye * slot_gate[:, None].to(ye.dtype))
            return y, losses, last
        order, offs, counts = route(slot_a, self.E)
        xs = x[order // kk]
        ye = self.experts(xs, offs, counts)
        last = (xs.detach(), offs, counts, ye.detach(), order, slot_gate.detach(), kk, N)
        return combine(ye, order, slot_gate, N, kk), losses, last


def combine(ye, order, slot_gate, N, kk):
    """y[t] = sum of its kk slots' gate * expert output (no atomics)."""
    ys = torch.empty_like(ye)
    ys[order] = ye
    return (ys.view(N, kk, -1) * slot_gate.view(N, kk, 1).to(ye.dtype)).sum(1)


class ChunkedCE(torch.autograd.Function):
    """Full-softmax cross-entropy over the vocabulary in chunks (online
    log-sum-exp; the backward recomputes each chunk's logits), as our
    softmax_full_forward: logits [N x V] are never materialised."""

    @staticmethod
    def forward(ctx, H, W, b, tgt, wt, chunk, dt):
        N, V = H.shape[0], W.shape[0]
        ad = torch.float64 if W.dtype == torch.float64 else torch.float32
        m = torch.full((N,), -math.inf, device=H.device, dtype=ad)
        s = torch.zeros(N, device=H.device, dtype=ad)
        tl = torch.zeros(N, device=H.device, dtype=ad)
        Hc = H.to(dt)
        with torch.autocast(device_type=H.device.type, enabled=False):
            for c0 in range(0, V, chunk):
                c1 = min(V, c0 + chunk)
                lg = (Hc @ W[c0:c1].to(dt).t()).to(ad) + b[c0:c1]
                mn = torch.maximum(m, lg.max(1).values)
                s = s * torch.exp(m - mn) + torch.exp(lg - mn[:, None]).sum(1)
                m = mn
                inside = (tgt >= c0) & (tgt < c1)
                t = lg.gather(1, (tgt - c0).clamp(0, c1 - c0 - 1)[:, None])[:, 0]
                tl = torch.where(inside, t, tl)
        lse = m + torch.log(s)
        ctx.save_for_backward(H, W, b, tgt, wt, lse)
        ctx.chunk, ctx.dt = chunk, dt
        return (wt * (lse - tl)).sum()

    @staticmethod
    def backward(ctx, gl):
        H, W, b, tgt, wt, lse = ctx.saved_tensors
        chunk, dt = ctx.chunk, ctx.dt
        V = W.shape[0]
        ad = lse.dtype
        dH = torch.zeros(H.shape, device=H.device, dtype=ad)
        dW = torch.zeros_like(W)
        db = torch.zeros_like(b)
        Hc = H.to(dt)
        scale = (wt * gl)[:, None]
        with torch.autocast(device_type=H.device.type, enabled=False):
            for c0 in range(0, V, chunk):
                c1 = min(V, c0 + chunk)
                Wc = W[c0:c1].to(dt)
                lg = (Hc @ Wc.t()).to(ad) + b[c0:c1]
                g = torch.exp(lg - lse[:, None])
                inside = ((tgt >= c0) & (tgt < c1)).to(ad)[:, None]
                g = g.scatter_add(1, (tgt - c0).clamp(0, c1 - c0 - 1)[:, None], -inside)
                g = g * scale
                gd = g.to(dt)
                dH += (gd @ Wc).to(ad)
                dW[c0:c1] = (gd.t() @ Hc).to(W.dtype)
                db[c0:c1] = g.sum(0).to(b.dtype)
        return dH.to(H.dtype), dW, db, None, None, None, None


def sample_log_uniform(V, S, device):
    """S distinct ids from the log-uniform sampler (nn/sampler.h), drawn on the
    device: candidates in batches until S distinct were seen (the last batch
    may overshoot: a random S of them are kept); logQ is the log expected count
    -expm1(tries * log1p(-P(id)))."""
    logv = math.log(V + 1.0)
    seen = torch.zeros(V, dtype=torch.bool, device=device)
    tries = 0
    while True:
        u = torch.rand(2 * S, device=device, dtype=torch.float64)
        cand = (torch.exp(u * logv).floor().long() - 1) % V
        seen[cand] = True
        tries += 2 * S
        if int(seen.sum()) >= S:
            break
    ids = seen.nonzero()[:, 0]
    if ids.numel() > S:
        ids = ids[torch.randperm(ids.numel(), device=device)[:S]]
    return ids, tries


def log_expected_count(ids, V, tries):
    i = ids.double()
    p = (torch.log(i + 2) - torch.log(i + 1)) / math.log(V + 1.0)
    return torch.log(-torch.expm1(tries * torch.log1p(-p))).float()


class Softmax(nn.Module):
    def __init__(self, name, V, d, chunk):
        super().__init__()
        self.name, self.V = name, V
        self.w = nn.Parameter(glorot_(torch.empty(V, d), V, d))
        self.b = nn.Parameter(torch.zeros(V))
        self.chunk = min(V, chunk if chunk else 4096)
        self.mm_dtype = torch.float32

    def bindings(self):
        return [Bound(self.name + ".w", self.w), Bound(self.name + ".b", self.b)]

    def full(self, H, tgt, wt):
        return ChunkedCE.apply(H, self.w, self.b, tgt, wt, self.chunk, self.mm_dtype)

    def sampled(self, H, tgt, wt, S):
        ids, tries = sample_log_uniform(self.V, S, H.device)
        logq = log_expected_count(ids, self.V, tries)
        logq_t = log_expected_count(tgt.clamp(min=0), self.V, tries)
        return self.sampled_loss(H, tgt, wt, ids, logq, logq_t)

    def sampled_loss(self, H, tgt, wt, ids, logq, logq_t):
        """Importance-sampled softmax (Jozefowicz et al.): target and shared
        samples, logQ-corrected, accidental hits removed."""
        tg = tgt.clamp(min=0)
        logits = H @ self.w[ids].t() + (self.b[ids] - logq)
        tl = (H.float() * self.w[tg]).sum(1) + self.b[tg] - logq_t
        logits = logits.float().masked_fill(ids[None, :] == tgt[:, None], -math.inf)
        lse = torch.logsumexp(torch.cat([tl[:, None], logits], 1), 1)
        return (wt * (lse - tl)).sum()


def embed(table, ids):
    """Rows of table; ids < 0 give zero rows (padding)."""
    e = F.embedding(ids.clamp(min=0), table)
    if bool((ids < 0).any()):
        e = e * (ids >= 0).unsqueeze(-1).to(e.dtype)
    return e


def valid_positions(lengths, T, B, device):
    """Positions t*B + b with t < len[b], ascending (our MoE rows), or None when all are real."""
    if lengths is None or not bool((lengths < T).any()):
        return None
    t = torch.arange(T, device=device)[:, None]
    return (t < lengths[None, :].to(device)).reshape(-1).nonzero()[:, 0]


class ModelBase(nn.Module):
    def bindings(self):
        out = []
        for m in self.modules():
            if m is not self and hasattr(m, "bindings") and not isinstance(m, ModelBase):
                if isinstance(m, Experts):
                    continue  # bound through its MoE
                out += m.bindings()
        return out + self.own_bindings()

    def set_precision(self, dt):
        for m in self.modules():
            if isinstance(m, Experts):
                m.mm_dtype = dt
            if isinstance(m, Softmax):
                m.mm_dtype = dt

    def moe_block(self, moe, x, valid, train, p):
        """sigmoid(MoE(x)) on the real tokens, dropout, residual (model/moe_block.h)."""
        T, B, d = x.shape
        flat = x.reshape(T * B, d)
        xin = flat if valid is None else flat[valid]
        y, losses = moe(xin, train)
        y = F.dropout(torch.sigmoid(y), p, train)
        if valid is not None:
            y = torch.zeros(T * B, d, device=x.device, dtype=y.dtype).index_copy(0, valid, y)
        self.moe_losses.append(losses)
        out = y.reshape(T, B, d)
        return out + x if self.cfg["residual"] else out


class LM(ModelBase):
    """model/lm.h: embedding -> LSTM / MoE layers -> softmax."""

    def __init__(self, c):
        super().__init__()
        self.cfg = c
        d = c["dim"]
        self.emb = nn.Parameter(torch.empty(c["vocab"], d).uniform_(-0.1, 0.1))
        self.layers = nn.ModuleList()
        nl = nm = 0
        for kind in c["layers"].split(","):
            if kind == "lstm":
                self.layers.append(Lstm(f"lm.lstm{nl}", d, c["rnn"], c["proj"]))
                nl += 1
            else:
                self.layers.append(MoE(f"lm.moe{nm}", d, c["moe"]))
                nm += 1
        self.sm = Softmax("lm.softmax", c["vocab"], d, c["chunk"])
        self.moe_losses = []

    def own_bindings(self):
        return [Bound("lm.emb", self.emb)]

    def forward(self, inp, tgt, lengths, train, sampled):
        c = self.cfg
        T, B = inp.shape
        p = c["dropout"] if train else 0.0
        self.moe_losses = []
        x = F.dropout(F.embedding(inp, self.emb), p, train)
        valid = valid_positions(lengths, T, B, inp.device)
        for layer in self.layers:
            if isinstance(layer, Lstm):
                y = F.dropout(layer(x, lengths), p, train)
                x = y + x if c["residual"] else y
            else:
                x = self.moe_block(layer, x, valid, train, p)
        return self.loss(x.reshape(T * B, -1), tgt.reshape(-1), train and sampled)

    def loss(self, H, tgt, sampled):
        wt = (tgt >= 0).float()
        wt = wt / wt.sum().clamp(min=1)
        ce = self.sm.sampled(H, tgt, wt, self.cfg["samples"]) if sampled else self.sm.full(H, tgt, wt)
        return ce, self.moe_losses


class S2S(ModelBase):
    """model/s2s.h: bidirectional-first encoder with an MoE, input-feeding
    decoder with separable attention (Eq. 22) and an MoE, full softmax."""

    def __init__(self, c):
        super().__init__()
        self.cfg = c
        D, H, P = c["dim"], c["rnn"], c["proj"]
        if c["attention"] != "separable":
            raise ValueError("torch_ref: separable attention only")
        self.src_emb = nn.Parameter(torch.empty(c["vocab"], D).uniform_(-0.1, 0.1))
        self.tgt_emb = nn.Parameter(torch.empty(c["vocab"], D).uniform_(-0.1, 0.1))
        self.enc = nn.ModuleList()
        for l in range(c["enc_depth"]):
            if l == 0 and c["enc_bidir"]:
                self.enc.append(Lstm("s2s.enc0", D, H if P else D // 2, D // 2 if P else 0, bidir=True))
            else:
                self.enc.append(Lstm(f"s2s.enc{l}", D, H, P))
        self.dec = nn.ModuleList([Lstm(f"s2s.dec{l}", 2 * D, H, P) for l in range(c["dec_depth"])])
        self.enc_moe = MoE("s2s.enc_moe", D, c["moe"]) if c["enc_moe_after"] else None
        self.dec_moe = MoE("s2s.dec_moe", D, c["moe"]) if c["dec_moe_after"] else None
        n = c["att_dim"]
        self.att_u = nn.Parameter(glorot_(torch.empty(D, n), D, n))
        self.att_w = nn.Parameter(glorot_(torch.empty(D, n), D, n))
        self.att_v = nn.Parameter(torch.empty(n).uniform_(-math.sqrt(3.0 / n), math.sqrt(3.0 / n)))
        self.sm = Softmax("s2s.softmax", c["vocab"], D, c["chunk"])
        self.moe_losses = []

    def own_bindings(self):
        return [Bound("s2s.src_emb", self.src_emb), Bound("s2s.tgt_emb", self.tgt_emb),
                Bound("s2s.att.u", self.att_u), Bound("s2s.att.w", self.att_w), Bound("s2s.att.v", self.att_v)]

    def encode(self, src, slen, train, p):
        c = self.cfg
        S, B = src.shape
        x = F.dropout(embed(self.src_emb, src), p, train)
        valid = valid_positions(slen, S, B, src.device)
        for l, layer in enumerate(self.enc):
            y = F.dropout(layer(x, slen), p, train)
            x = y + x if c["residual"] else y
            if c["enc_moe_after"] == l + 1:
                x = self.moe_block(self.enc_moe, x, valid, train, p)
        return x

    def decode_first(self, E, K, slen, tlen, attend=True):
        """The input-feeding layer: its input at step t is [E_t; context_{t-1}];
        its output is the attention query of step t (attend=False: the LSTM
        steps alone, contexts stay zero; for the component timing)."""
        T, B, D = E.shape
        S = K.shape[0]
        wxe, wxc, wh, wp, bias = self.dec[0].step_weights(D)
        pre = E @ wxe.t().to(E.dtype) + bias.to(E.dtype)            # input projections of all steps at once
        Kb = K.transpose(0, 1)                                        # [B x S x D]
        Ek = torch.tanh(Kb @ self.att_u.to(Kb.dtype)) * self.att_v.to(Kb.dtype)
        smask = torch.arange(S, device=K.device)[None, :] < slen[:, None].to(K.device)
        tmask = (torch.arange(T, device=K.device)[:, None] < tlen[None, :].to(K.device)).to(E.dtype)
        Hd = self.dec[0].hidden
        r = torch.zeros(B, wh.shape[1], device=E.device, dtype=E.dtype)
        ad = acc_dtype(E)
        cst = torch.zeros(B, Hd, device=E.device, dtype=ad)
        ctx = torch.zeros(B, D, device=E.device, dtype=E.dtype)
        outs, ctxs = [], []
        for t in range(T):
            g = (pre[t] + ctx @ wxc.t().to(ctx.dtype) + r @ wh.t().to(r.dtype)).to(ad)
            i, f, gg, o = g.chunk(4, 1)
            cst = torch.sigmoid(f) * cst + torch.sigmoid(i) * torch.tanh(gg)
            m = tmask[t][:, None].to(ad)
            cst = cst * m
            h = (torch.sigmoid(o) * torch.tanh(cst) * m).to(E.dtype)
            r = h @ wp.t().to(h.dtype) if wp is not None else h
            if attend:
                q = torch.tanh(r @ self.att_w.to(r.dtype))
                sc = torch.einsum("bsn,bn->bs", Ek.to(q.dtype), q)
                sc = sc.to(acc_dtype(sc)).masked_fill(~smask, -math.inf)
                pr = torch.softmax(sc, 1)
                ctx = torch.einsum("bs,bsd->bd", pr.to(Kb.dtype), Kb).to(E.dtype)
            outs.append(r)
            ctxs.append(ctx)
        return torch.stack(outs), torch.stack(ctxs)

    def forward(self, src, slen, tin, tout, tlen, train):
        c = self.cfg
        T, B = tin.shape
        p = c["dropout"] if train else 0.0
        self.moe_losses = []
        K = self.encode(src, slen, train, p)
        E = F.dropout(embed(self.tgt_emb, tin), p, train)
        H1, ctxs = self.decode_first(E, K, slen, tlen)
        x = F.dropout(H1, p, train)
        valid = valid_positions(tlen, T, B, tin.device)
        for l in range(c["dec_depth"]):
            if l > 0:
                y = F.dropout(self.dec[l](torch.cat([x, ctxs.to(x.dtype)], -1), tlen), p, train)
                x = y + x if c["residual"] else y
            if c["dec_moe_after"] == l + 1:
                x = self.moe_block(self.dec_moe, x, valid, train, p)
        tg = tout.reshape(-1)
        wt = (tg >= 0).float()
        wt = wt / wt.sum().clamp(min=1)
        return self.sm.full(x.reshape(T * B, -1), tg, wt), self.moe_losses


def build(c):
    return LM(c) if c["kind"] == "lm" else S2S(c)


def total_loss(ce, moe_losses):
    out = ce
    for d in moe_losses:
        for v in d.values():
            out = out + v
    return out


# ---------------------------------------------------------------------------
# --check DIR
# ---------------------------------------------------------------------------

def check_config(f):
    """Our configuration from a dump file's metadata."""
    m = f.meta
    moe = dict(experts=m["cfg.moe.experts"], groups=m["cfg.moe.groups"], k=m["cfg.moe.k"],
               hidden=m["cfg.moe.hidden"], hidden_layers=m["cfg.moe.hidden_layers"], gating=m["cfg.moe.gating"],
               w_importance=m["cfg.moe.w_importance"], w_load=m["cfg.moe.w_load"],
               w_threshold=m["cfg.moe.w_threshold"], noise_eps=m["cfg.moe.noise_eps"])
    c = dict(kind=m["kind"], vocab=m["cfg.vocab"], dim=m["cfg.dim"], rnn=m["cfg.rnn"], proj=m["cfg.proj"], moe=moe,
             dropout=0.0, residual=m["cfg.residual"], chunk=m["cfg.chunk"], sampled=0, samples=0)
    if c["kind"] == "lm":
        c["layers"] = m["cfg.layers"]
    else:
        for k in ("enc_depth", "dec_depth", "enc_moe_after", "dec_moe_after", "enc_bidir", "att_dim"):
            c[k] = m["cfg." + k]
        c["attention"] = m["cfg.attention"]
    return c


def run_check(args):
    files = sorted(x for x in os.listdir(args.check) if x.endswith(".bin"))
    if not files:
        print(f"torch_ref: no .bin files in {args.check} (run bench_cuda --dump-check {args.check})")
        return 2
    dt = torch.float64 if args.check_dtype == "float64" else torch.float32
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: threads only add contention
    print(f"check: torch {torch.__version__}, {args.check_dtype} on cpu, files from {args.check}, tolerance {args.tol:g}")
    print(f"{'family':<9} {'loss ours':>12} {'loss torch':>12} {'rel err':>9} {'params':>6} "
          f"{'worst grad-norm rel err':>24}  (parameter)")
    ok = True
    for name in files:
        f = MoeFile(os.path.join(args.check, name))
        c = check_config(f)
        model = build(c).to(dt)
        train = bool(f.meta["train"])
        for bd in model.bindings():
            bd.load(f.param(bd.name))
        model.set_precision(dt)
        if c["kind"] == "lm":
            inp = torch.from_numpy(f.tensor("batch.inp").astype(np.int64))
            tgt = torch.from_numpy(f.tensor("batch.tgt").astype(np.int64))
            lens = torch.from_numpy(f.tensor("batch.len").astype(np.int64))
            ce, ml = model(inp, tgt, lens, train, False)
        else:
            g = lambda k: torch.from_numpy(f.tensor(k).astype(np.int64))
            ce, ml = model(g("batch.src"), g("batch.src_len"), g("batch.tgt_in"), g("batch.tgt_out"),
                           g("batch.tgt_len"), train)
        loss = total_loss(ce, ml)
        loss.backward()
        ours = f.meta["loss"]
        lv = loss.item()
        lrel = abs(lv - ours) / max(abs(ours), 1e-12)
        worst, wname, n = 0.0, "", 0
        bound = {bd.name for bd in model.bindings()}
        for bd in model.bindings():
            key = "gnorm:" + bd.name
            if key not in f.meta:
                print(f"  {name}: our file has no gradient norm of {bd.name}")
                ok = False
                continue
            a, b = bd.grad_norm(), f.meta[key]
            den = max(abs(a), abs(b))
            rel = 0.0 if den < 1e-12 else abs(a - b) / den
            n += 1
            if rel > worst:
                worst, wname = rel, bd.name
            if args.verbose:
                print(f"    {bd.name:<34} ours {b:.8e} torch {a:.8e} rel {rel:.2e}")
        missing = [k[6:] for k in f.meta if k.startswith("gnorm:") and k[6:] not in bound]
        if missing:
            print(f"  {name}: parameters of ours that torch_ref does not model: {', '.join(missing)}")
            ok = False
        passed = lrel <= args.tol and worst <= args.tol
        ok &= passed
        print(f"{f.meta['family']:<9} {ours:>12.7f} {lv:>12.7f} {lrel:>9.2e} {n:>6} {worst:>24.2e}  "
              f"({wname}){'' if passed else '  FAIL'}")
    print("check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


# ---------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------

COMPONENTS = ["lstm", "gate", "experts", "combine", "softmax", "optim", "other"]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_ms(dev, fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


def _mm_tflops(dev, a, b, reps):
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / time_ms(dev, lambda: a @ b, reps) / 1e9


def _copy_gbs(dev, n, reps):
    x = torch.rand(n, device=dev)
    y = torch.empty_like(x)
    return 2.0 * n * 4 / time_ms(dev, lambda: y.copy_(x), reps) / 1e6


def ceilings(dev, tiny):
    """bf16, TF32 and fp32 matmul at 8192^3 on uniform(-1, 1) data, and a 4 GiB copy."""
    out = dict(bf16=0.0, tf32=0.0, fp32=0.0, copy_gbs=0.0)
    cuda = dev.type == "cuda"
    n = 8192 if (cuda and not tiny) else 512
    reps = 10 if cuda else 3
    a = torch.rand(n, n, device=dev) * 2 - 1
    b = torch.rand(n, n, device=dev) * 2 - 1
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        out["fp32"] = _mm_tflops(dev, a, b, reps)
        if cuda:
            out["bf16"] = _mm_tflops(dev, a.bfloat16(), b.bfloat16(), reps)
            torch.backends.cuda.matmul.allow_tf32 = True
            out["tf32"] = _mm_tflops(dev, a, b, reps)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    a = b = None
    m = (4 << 30) // 4 if (cuda and not tiny) else (4 << 20)
    out["copy_gbs"] = _copy_gbs(dev, m, reps)
    out["method"] = (f"torch matmul {n}^3 uniform(-1,1) (bf16, TF32, fp32 with allow_tf32=False), copy of "
                     f"{m * 4 >> 20} MiB; median of {reps}")
    return out


def versions(dev):
    v = [f"torch {torch.__version__}"]
    if dev.type == "cuda":
        v += [f"CUDA {torch.version.cuda}", f"cuDNN {torch.backends.cudnn.version()}",
              torch.cuda.get_device_name(dev)]
    v.append("_grouped_mm " + ("yes" if hasattr(torch, "_grouped_mm") else "no"))
    v.append("F.grouped_mm " + ("yes" if hasattr(F, "grouped_mm") else "no"))
    return ", ".join(v)


class Batches:
    """The token stream of bench_tokens.h for one optimizer step."""

    def __init__(self, c, dev):
        self.c, self.dev = c, dev

    def step(self, s):
        c = self.c
        T, B, V = c["T"], c["B"], c["vocab"]
        out = []
        for u in range(c["micro"]):
            i = s * c["micro"] + u
            if c["kind"] == "lm":
                tok = bench_tokens(DATA_SEED, i, V, (T + 1) * B).reshape(T + 1, B).astype(np.int64)
                out.append((torch.from_numpy(tok[:T]).to(self.dev), torch.from_numpy(tok[1:]).to(self.dev)))
            else:
                S = c["S"]
                src = bench_tokens(DATA_SEED, 2 * i, V, S * B).reshape(S, B).astype(np.int64)
                tok = bench_tokens(DATA_SEED, 2 * i + 1, V, (T + 1) * B).reshape(T + 1, B).astype(np.int64)
                out.append((torch.from_numpy(src).to(self.dev), torch.from_numpy(tok[:T]).to(self.dev),
                            torch.from_numpy(tok[1:]).to(self.dev)))
        return out


class Runner:
    def __init__(self, c, variant, args, dev):
        self.c, self.variant, self.args, self.dev = c, variant, args, dev
        self.bf16 = args.precision == "bf16" and dev.type == "cuda"
        with torch.device(dev):  # parameters are created (and initialised) on the device
            self.model = build(c)
        self.model.set_precision(torch.bfloat16 if self.bf16 else torch.float32)
        params = list(self.model.parameters())
        self.params = params
        try:  # fused Adam: CUDA, and the CPU since torch 2.4
            self.opt = torch.optim.Adam(params, lr=1e-4, fused=True)
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.Adam(params, lr=1e-4, foreach=True)
        self.moes = [m for m in self.model.modules() if isinstance(m, MoE)]
        if variant == "compiled":
            mode = args.compile_mode
            for m in self.moes:
                m.impl = torch.compile(m._forward, mode=mode, dynamic=False)
            self.model.sm.full = torch.compile(self.model.sm.full, mode=mode, dynamic=False)
            self.model.sm.sampled_loss = torch.compile(self.model.sm.sampled_loss, mode=mode, dynamic=False)
        self.S = torch.full((c["B"],), c.get("S", 0), dtype=torch.long)
        self.Tl = torch.full((c["B"],), c["T"], dtype=torch.long)

    def autocast(self):
        return torch.autocast(device_type=self.dev.type, dtype=torch.bfloat16, enabled=self.bf16)

    def micro(self, batch):
        c = self.c
        with self.autocast():
            if c["kind"] == "lm":
                inp, tgt = batch
                ce, ml = self.model(inp, tgt, None, True, bool(c["sampled"]))
            else:
                src, tin, tout = batch
                ce, ml = self.model(src, self.S, tin, tout, self.Tl, True)
            loss = total_loss(ce, ml) / c["micro"]
        loss.backward()
        return float(loss.detach()) * c["micro"]

    def step(self, batches):
        sync(self.dev)
        t0 = time.perf_counter()
        loss = sum(self.micro(b) for b in batches) / len(batches)
        sync(self.dev)
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        sync(self.dev)
        t2 = time.perf_counter()
        return (t2 - t0) * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3, loss

    # ---- components (per micro-batch), timed apart like bench_cuda ----
    def components(self, reps):
        c, dev, m = self.c, self.dev, self.model
        comp = {k: 0.0 for k in COMPONENTS}
        d = c["dim"]
        T, B = c["T"], c["B"]
        N = T * B

        def fb(fn):
            def run():
                with self.autocast():
                    out = fn()
                out.backward(torch.full_like(out, 1e-3))  # a materialised gradient, as in training
            return time_ms(dev, run, reps)

        def rnd(*shape):
            return (torch.rand(*shape, device=dev) * 2 - 1).requires_grad_()

        lstms = [l for l in m.modules() if isinstance(l, Lstm)]
        for l in lstms:
            steps = c["kind"] == "s2s" and l is m.dec[0]
            L = c["S"] if (c["kind"] == "s2s" and l.name.startswith("s2s.enc")) else T
            x = rnd(L, B, l.rnn.input_size)
            if steps:
                K = rnd(c["S"], B, d)
                E = rnd(T, B, d)
                comp["lstm"] += fb(lambda: m.decode_first(E, K, self.S, self.Tl, attend=False)[0])
            else:
                comp["lstm"] += fb(lambda: l(x))
        for moe in self.moes:
            rows = c["S"] * B if (c["kind"] == "s2s" and moe is m.enc_moe) else N
            x = rnd(rows, d)
            total = fb(lambda: moe(x, True)[0])
            with self.autocast():
                moe(x, True)
            xs, offs, counts, ye, order, gate, kk, NN = moe.last
            xs = xs.clone().requires_grad_()
            ex = fb(lambda: moe.experts(xs, offs, counts))
            ye = ye.clone().requires_grad_()
            gate = gate.clone().requires_grad_()
            if kk == "batchwise":
                co = fb(lambda: torch.zeros(NN, d, device=dev, dtype=ye.dtype).index_add(
                    0, order, ye * gate[:, None].to(ye.dtype)))
            else:
                co = fb(lambda: combine(ye, order, gate, NN, kk))
            comp["experts"] += ex
            comp["combine"] += co
            comp["gate"] += total - ex - co
        H = rnd(N, d)
        tgt = torch.from_numpy(bench_tokens(DATA_SEED, 999, c["vocab"], N).astype(np.int64)).to(dev)
        wt = torch.full((N,), 1.0 / N, device=dev)
        if c["sampled"]:
            comp["softmax"] += fb(lambda: m.sm.sampled(H, tgt, wt, c["samples"]))
        else:
            comp["softmax"] += fb(lambda: m.sm.full(H, tgt, wt))
        for k in comp:
            comp[k] *= c["micro"]
        return comp


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def bench_config(c, variant, args, dev, ceil, budget_s):
    r = dict(id=c["id"], desc=describe(c), variant=variant, ran=False, note="", tokens_per_step=tokens_micro(c) * c["micro"],
             micro_batches=c["micro"], steps_timed=0, macs_per_token=macs_per_token(c))
    r["flop_per_token"] = 6 * r["macs_per_token"]
    t_start = time.perf_counter()
    gc.collect()
    try:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        runner = Runner(c, variant, args, dev)
    except torch.cuda.OutOfMemoryError as e:
        r["note"] = f"skipped: out of memory building the model ({str(e).splitlines()[0][:120]})"
        return r
    r["params"] = param_count(runner.model)
    batches = Batches(c, dev)
    times, fbs, opts = [], [], []
    try:
        warm = []
        total = args.warmup + args.steps
        s = 0
        while s < total:
            b = batches.step(s)
            st, fb_ms, op, loss = runner.step(b)
            if s == 0:
                r["loss_first"] = loss
                r["first_step_ms"] = st
            r["loss_last"] = loss
            if s < args.warmup:
                warm.append(st)
                if s + 1 == args.warmup and budget_s > 0:
                    per = float(np.median(warm[1:] if len(warm) > 1 else warm)) / 1e3
                    left = budget_s - (time.perf_counter() - t_start)
                    fit = int(left * 0.6 / per) if per > 0 else args.steps
                    if fit < args.steps:
                        total = args.warmup + max(1, fit)
                        r["note"] = f"{total - args.warmup} of {args.steps} timed steps (time budget)"
            else:
                times.append(st)
                fbs.append(fb_ms)
                opts.append(op)
            s += 1
        if variant == "compiled" and len(warm) > 1:
            r["compile_s"] = (warm[0] - float(np.median(warm[1:]))) / 1e3
        comp = runner.components(args.comp_reps) if args.comp_reps > 0 else None
    except torch.cuda.OutOfMemoryError as e:
        r["note"] = f"out of memory ({str(e).splitlines()[0][:120]})"
        return r
    except Exception as e:  # a compile failure must not hide the other results
        if variant != "compiled":
            raise
        r["note"] = f"compiled variant failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        return r
    r["ran"] = True
    r["steps_timed"] = len(times)
    r["step_ms"] = float(np.median(times))
    r["step_ms_min"], r["step_ms_max"] = float(min(times)), float(max(times))
    r["fwd_bwd_ms"] = float(np.median(fbs))
    r["tokens_per_s"] = r["tokens_per_step"] / (r["step_ms"] * 1e-3)
    r["fwd_bwd_tokens_per_s"] = r["tokens_per_step"] / (r["fwd_bwd_ms"] * 1e-3)
    r["tflops"] = r["flop_per_token"] * r["tokens_per_s"] / 1e12
    r["mfu_bf16"] = r["tflops"] / ceil["bf16"] if ceil["bf16"] else None
    r["mfu_fp32"] = r["tflops"] / ceil["fp32"] if ceil["fp32"] else None
    if comp is not None:
        comp["optim"] = float(np.median(opts))
        comp["other"] = r["step_ms"] - sum(v for k, v in comp.items() if k != "other")
        r["components_ms"] = comp
    if dev.type == "cuda":
        r["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    del runner
    return r


def print_header(ours):
    cols = " ".join(f"{k:>8}" for k in COMPONENTS)
    print(f"{'cfg':<4} {'tok/step':>8} {'step ms':>9} {'tok/s':>10} {'TFLOP/s':>7} {'MFU16':>6} {'MFU32':>6} | {cols}"
          f"{'  ours/torch' if ours else ''}")


def fmt_pct(v):
    return f"{'-':>6}" if v is None else f"{100 * v:5.1f}%"


def print_row(r, ours):
    if not r["ran"]:
        print(f"{r['id']:<4} {r['tokens_per_step']:>8}  {r['note']}")
        return
    comp = r.get("components_ms")
    cols = " ".join(f"{comp[k]:8.1f}" if comp else f"{'-':>8}" for k in COMPONENTS)
    extra = ""
    o = ours.get(r["id"]) if ours else None
    if o and o.get("ran"):
        extra = f"  {o['tokens_per_s'] / r['tokens_per_s']:10.2f}x"
    note = f"  [{r['note']}]" if r["note"] else ""
    print(f"{r['id']:<4} {r['tokens_per_step']:>8} {r['step_ms']:9.1f} {r['tokens_per_s']:10.0f} {r['tflops']:7.2f} "
          f"{fmt_pct(r['mfu_bf16'])} {fmt_pct(r['mfu_fp32'])} | {cols}{extra}{note}")


def run_bench(args):
    dev = torch.device(args.device if args.device != "cuda" or torch.cuda.is_available() else "none")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_ref: no CUDA device visible to torch: nothing to benchmark (--device cpu runs on the CPU)")
        return 77
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        tf32 = args.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    ours = {}
    if args.ours and os.path.exists(args.ours):
        with open(args.ours) as fh:
            ours = {x["id"]: x for x in json.load(fh).get("configs", [])}
    ceil = ceilings(dev, args.tiny)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    known = configs(args.tiny) + cpu_configs(args.tiny)
    want = args.configs.split(",") if args.configs else [c["id"] for c in
                                                         (cpu_configs if dev.type == "cpu" else configs)(args.tiny)]
    cfgs = [c for c in known if c["id"] in want]
    for c in cfgs:
        c["B"] = args.batch or c["B"]
    variants = args.variants.split(",")
    print(f"torch_ref on {dev} ({args.precision}{', --tiny shapes' if args.tiny else ''})")
    print(f"versions  {versions(dev)}")
    print(f"ceilings  bf16 {ceil['bf16']:.1f} TFLOP/s | tf32 {ceil['tf32']:.1f} TFLOP/s | fp32 {ceil['fp32']:.2f} "
          f"TFLOP/s | copy {ceil['copy_gbs']:.0f} GB/s\n          ({ceil['method']})")
    print("timing    host clock around torch.cuda.synchronize(); full steps: median of the timed steps after warm-up; "
          "components: each layer's forward+backward timed apart on the step's shapes (median)")
    out = dict(program="torch_ref", device=str(dev), versions=versions(dev), precision=args.precision,
               ceilings={"bf16_tflops": ceil["bf16"], "tf32_tflops": ceil["tf32"], "fp32_tflops": ceil["fp32"],
                         "copy_gbs": ceil["copy_gbs"], "method": ceil["method"]}, runs=[])
    n_left = len(cfgs) * len(variants)
    for v in variants:
        print(f"\nvariant {v}" + (f" (torch.compile mode {args.compile_mode})" if v == "compiled" else ""))
        print_header(ours)
        run = dict(variant=v, configs=[])
        out["runs"].append(run)
        for c in cfgs:
            budget = (args.budget_s - (time.perf_counter() - t0)) / n_left if args.budget_s > 0 else 0
            r = bench_config(c, v, args, dev, ceil, max(budget, 1.0) if args.budget_s > 0 else 0)
            n_left -= 1
            print_row(r, ours)
            sys.stdout.flush()
            run["configs"].append(r)
            if args.json:
                tmp = args.json + ".tmp"
                with open(tmp, "w") as fh:
                    json.dump(out, fh, indent=1)
                os.replace(tmp, args.json)
    print()
    for c in cfgs:
        print(f"{c['id']:<4} {describe(c)}")
    print(f"total {time.perf_counter() - t0:.0f} s" + (f", JSON in {args.json}" if args.json else ""))
    return 0


def markdown(paths):
    """A README table from bench_cuda's JSON and optionally torch_ref's JSON."""
    docs = []
    for path in paths:
        with open(path) as fh:
            docs.append(json.load(fh))
    ours = docs[0]
    if ours.get("program") != "bench_cuda":
        print("torch_ref: --markdown takes bench_cuda's JSON first", file=sys.stderr)
        return 2
    peers = {}
    for d in docs[1:]:
        for run in d.get("runs", []):
            for r in run["configs"]:
                if r.get("ran"):
                    peers.setdefault(r["id"], {})[run["variant"]] = r
    variants = sorted({v for p in peers.values() for v in p})
    c = ours["ceilings"]
    print(f"Device: {ours['device']}; ceilings bf16 {c['bf16_tflops']:.0f}, fp32 {c['fp32_tflops']:.1f} TFLOP/s, "
          f"copy {c['copy_gbs']:.0f} GB/s.\n")
    head = ["config", "tokens/step", "ours tok/s", "ours MFU bf16", "ours MFU fp32"]
    head += [f"torch {v} tok/s" for v in variants] + [f"ours / torch {v}" for v in variants]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in ours["configs"]:
        if not r["ran"]:
            print(f"| {r['id']} | {r['tokens_per_step']} | {r['note']} |" + " |" * (len(head) - 3))
            continue
        mb = "-" if r["mfu_bf16"] is None else f"{100 * r['mfu_bf16']:.1f}%"
        mf = "-" if r["mfu_fp32"] is None else f"{100 * r['mfu_fp32']:.1f}%"
        row = [r["id"], str(r["tokens_per_step"]), f"{r['tokens_per_s']:,.0f}", mb, mf]
        p = peers.get(r["id"], {})
        row += [f"{p[v]['tokens_per_s']:,.0f}" if v in p else "-" for v in variants]
        row += [f"{r['tokens_per_s'] / p[v]['tokens_per_s']:.2f}x" if v in p else "-" for v in variants]
        print("| " + " | ".join(row) + " |")
    print()
    for r in ours["configs"]:
        print(f"- {r['id']}: {r['desc']}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="DIR", help="compare with the files of bench_cuda --dump-check DIR")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance of the check (default 1e-4)")
    ap.add_argument("--check-dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--verbose", action="store_true", help="check: every parameter's gradient norms")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--markdown", nargs="+", metavar="JSON",
                    help="print a README table from bench_cuda's JSON (and torch_ref's JSON), then exit")
    ap.add_argument("--ours", help="bench_cuda's JSON: adds our tokens/s over torch's as a column")
    ap.add_argument("--configs", default="",
                    help="e.g. G1,G2 (default: G1-G5 on a GPU, the CPU configurations C1-C3 with --device cpu)")
    ap.add_argument("--variants", default="eager,compiled")
    ap.add_argument("--precision", choices=["bf16", "tf32", "fp32"], default="bf16",
                    help="bf16: autocast (default); tf32/fp32: no autocast, TF32 allowed or not")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--comp-reps", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=900,
                    help="wall-time budget of the run (default 900; 0 = none); timed steps are cut to fit")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (torch.set_num_threads; default all cores)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (a smoke test)")
    ap.add_argument("--batch", type=int, default=0, help="sequences per micro-batch instead of each configuration's own")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.markdown:
        return markdown(args.markdown)
    if args.check:
        return run_check(args)
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
