#!/usr/bin/env python3
"""Our CPU engine against PyTorch on the same LSTM-MoE models, side by side in one run
(issue 17; `make bench-torch-cpu`, bench/README.md "CPU: ours against PyTorch").

Models (torch_ref.py cpu_configs): embedding -> LSTM -> MoE (noisy top-4) -> LSTM -> sampled
softmax over 32,000 words, dropout 0.1, residual connections, Adam with clipping at 1.0,
T = 64 time steps:
  C1  d 256, 16 experts 256-512-256, 1,024 samples, B 64   (4,096 tokens per step)
  C2  d 512, 64 experts 512-1024-512, 4,096 samples, B 128 (8,192 tokens per step)
  C3  C1 with 256 experts

Ours runs the way users run it: bin/moe-train on a recipe with stream batching (B streams cut
into 64-step segments) over a generated corpus of 32,000 words drawn from the same integer
stream as the peer's batches (bench/cuda/bench_tokens.h), with --disp-freq 1 --profile; its
tokens/s is the median of the per-update figures after the warm-up updates, and the component
times the medians of the [prof] lines. PyTorch runs bench/torch_ref.py --device cpu (fp32,
eager, nn.LSTM, _grouped_mm experts, fused Adam) twice: with its defaults, and with
OMP_WAIT_POLICY=PASSIVE and jemalloc preloaded when libjemalloc is installed; the ratio is
ours over the better of the two. --busy adds each run again beside a one-core busy loop
(sh -c 'while :; do :; done'), and reports it as a share of the run alone.

  python3 bench/cpu_vs_torch.py [--configs C1,C2,C3] [--busy] [--torch-python PY | --no-torch]
                                [--steps 10] [--warmup 5] [--threads 0] [--json FILE]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M64 = (1 << 64) - 1
DATA_SEED = 1234
COMPONENTS = ["lstm", "gate", "dispatch", "experts", "combine", "softmax", "optim", "other"]

CONFIGS = {
    "C1": dict(d=256, E=16, h=512, S=1024, B=64),
    "C2": dict(d=512, E=64, h=1024, S=4096, B=128),
    "C3": dict(d=256, E=256, h=512, S=1024, B=64),
}
V, T, K = 32000, 64, 4


def mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def write_corpus(path, tokens):
    """Token i of stream 0 of bench_tokens.h as words "w<id>", 20 to a line."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return
    bits = V.bit_length()
    key = mix64(mix64(DATA_SEED) ^ 0)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        line = []
        for i in range(tokens):
            r = mix64(key ^ i)
            span = (1 << ((r >> 32) % bits)) - 1
            line.append("w%d" % ((span + (r & span)) % V))
            if len(line) == 20:
                f.write(" ".join(line) + "\n")
                line = []
    os.replace(tmp, path)


def macs_per_token(c):
    """Forward multiply-adds per token, as torch_ref.macs_per_token and lm_macs_per_token."""
    d, E, h, S = c["d"], c["E"], c["h"], c["S"]
    lstm = 4 * d * (d + d)
    moe = 2 * d * E + K * (d * h + h * d)
    return 2 * lstm + moe + d * (S + 1)


def recipe(cid, c, corpus, model, steps):
    return f"""# issue 17 benchmark {cid} (bench/cpu_vs_torch.py)
type: lm
train-sets: [{corpus}]
model: {model}
dim-vocabs: [{V}]
dim-emb: {c['d']}
dim-rnn: {c['d']}
layers: lstm,moe,lstm
moe-expert-count: {c['E']}
moe-top-k: {K}
moe-expert-ffn-dim: {c['h']}
dropout: 0.1
softmax: sampled
softmax-samples: {c['S']}
batching: stream
mini-batch: {c['B']}
bptt: {T}
learn-rate: 0.001
lr-warmup: 100
valid-freq: 0
save-freq: 0
disp-freq: 1
after: {steps}u
"""


class Busy:
    """A one-core busy loop beside a run (None: nothing)."""

    def __init__(self, on):
        self.on, self.p = on, None

    def __enter__(self):
        if self.on:
            self.p = subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
            time.sleep(0.5)
        return self

    def __exit__(self, *a):
        if self.p:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait()


def run_ours(cid, c, args, work, busy):
    corpus = os.path.join(work, "corpus.txt")
    model = os.path.join(work, f"{cid}{'-busy' if busy else ''}", "model.bin")
    shutil.rmtree(os.path.dirname(model), ignore_errors=True)
    os.makedirs(os.path.dirname(model))
    rec = os.path.join(os.path.dirname(model), "recipe.yml")
    with open(rec, "w") as f:
        f.write(recipe(cid, c, corpus, model, args.warmup + args.steps))
    cmd = [os.path.join(ROOT, "bin", "moe-train"), "-c", rec, "--profile", "--no-reload", "--cpu-threads",
           str(args.threads)]
    with Busy(busy):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = r.stdout
    with open(os.path.join(os.path.dirname(model), "train.log"), "w") as f:
        f.write(log)
    if r.returncode != 0:
        print(log[-2000:], file=sys.stderr)
        raise SystemExit(f"cpu_vs_torch: moe-train failed on {cid} (exit {r.returncode})")
    tps, comp = [], {k: [] for k in COMPONENTS}
    for line in log.splitlines():
        m = re.search(r"\[train\] step (\d+) .*tokens/s (\d+)", line)
        if m and int(m.group(1)) > args.warmup:
            tps.append(float(m.group(2)))
        m = re.search(r"\[prof\] step (\d+) \| (.*)", line)
        if m and int(m.group(1)) > args.warmup:
            for part in m.group(2).split(" | "):
                k, v = part.rsplit(" ", 1)
                if k in comp:
                    comp[k].append(float(v))
    if not tps:
        raise SystemExit(f"cpu_vs_torch: no [train] lines after the warm-up in {cid}'s log")
    tok = statistics.median(tps)
    return dict(tokens_per_s=tok, gflops=6 * macs_per_token(c) * tok / 1e9, steps=len(tps),
                components_ms={k: statistics.median(v) for k, v in comp.items() if v}, command=" ".join(cmd))


def jemalloc():
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        p = os.path.join(d, "libjemalloc.so.2")
        if os.path.exists(p):
            return p
    return None


def torch_variants():
    v = [("default", {})]
    env = {"OMP_WAIT_POLICY": "PASSIVE"}
    je = jemalloc()
    if je:
        env["LD_PRELOAD"] = je
    v.append(("passive" + ("+jemalloc" if je else ""), env))
    return v


def run_torch(cid, args, work, variant, extra_env, busy):
    out = os.path.join(work, f"torch-{cid}-{variant}{'-busy' if busy else ''}.json")
    if os.path.exists(out):
        os.remove(out)
    cmd = [args.torch_python, os.path.join(ROOT, "bench", "torch_ref.py"), "--device", "cpu", "--precision", "fp32",
           "--variants", "eager", "--configs", cid, "--steps", str(args.steps), "--warmup", str(args.torch_warmup),
           "--comp-reps", "0", "--budget-s", "0", "--json", out]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ)
    env.update(extra_env)
    with Busy(busy):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if r.returncode != 0 or not os.path.exists(out):
        print(r.stdout[-2000:], file=sys.stderr)
        return dict(error=f"torch_ref exit {r.returncode}")
    with open(out) as f:
        doc = json.load(f)
    row = doc["runs"][0]["configs"][0]
    if not row.get("ran"):
        return dict(error=row.get("note", "did not run"))
    return dict(tokens_per_s=row["tokens_per_s"], gflops=row["flop_per_token"] * row["tokens_per_s"] / 1e9,
                versions=doc.get("versions"), command=" ".join(cmd))


def torch_ok(py):
    if not py:
        return None
    r = subprocess.run([py, "-c", "import torch, numpy; print(torch.__version__)"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="C1,C2,C3")
    ap.add_argument("--busy", action="store_true", help="also run everything beside a one-core busy loop")
    ap.add_argument("--torch-python", default=os.path.join(ROOT, "build", "venv", "bin", "python"),
                    help="a Python with torch and numpy (default build/venv, made by make bench-torch-cpu)")
    ap.add_argument("--no-torch", action="store_true", help="ours only")
    ap.add_argument("--steps", type=int, default=10, help="timed updates (default 10)")
    ap.add_argument("--warmup", type=int, default=5, help="our warm-up updates (default 5)")
    ap.add_argument("--torch-warmup", type=int, default=3, help="PyTorch's warm-up steps (default 3)")
    ap.add_argument("--threads", type=int, default=0, help="threads of both (default 0 = all cores)")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "cpu"))
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench", "cpu-vs-torch.json"))
    args = ap.parse_args()
    ids = [x for x in args.configs.split(",") if x]
    for x in ids:
        if x not in CONFIGS:
            raise SystemExit(f"cpu_vs_torch: unknown configuration '{x}' (C1, C2, C3)")
    os.makedirs(args.work, exist_ok=True)
    if not os.access(os.path.join(ROOT, "bin", "moe-train"), os.X_OK):
        raise SystemExit("cpu_vs_torch: bin/moe-train is missing (make tools)")
    tv = None if args.no_torch else torch_ok(args.torch_python)
    t0 = time.time()
    write_corpus(os.path.join(args.work, "corpus.txt"), 1_000_000)
    info = subprocess.run([os.path.join(ROOT, "bin", "moe-train"), "--build-info"], stdout=subprocess.PIPE,
                          text=True).stdout
    blas = re.search(r"BLAS: (.*)", info)
    print(f"cpu_vs_torch: {os.cpu_count()} cores; ours: moe-train, {blas.group(1) if blas else '?'}; "
          f"PyTorch: {'torch ' + tv if tv else 'not run (' + ('--no-torch' if args.no_torch else 'no torch in ' + args.torch_python) + ')'}")
    print(f"  {args.warmup} warm-up + {args.steps} timed updates each; tokens/s = median per update; "
          f"GFLOP/s = 6 x forward multiply-adds per token x tokens/s")
    res = dict(program="cpu_vs_torch", cores=os.cpu_count(), ours_blas=blas.group(1) if blas else None,
               torch=tv, steps=args.steps, configs={})
    variants = torch_variants() if tv else []
    for cid in ids:
        c = CONFIGS[cid]
        row = dict(desc=c, macs_per_token=macs_per_token(c), tokens_per_step=T * c["B"])
        for busy in ([False, True] if args.busy else [False]):
            key = "busy" if busy else "alone"
            r = dict(ours=run_ours(cid, c, args, args.work, busy))
            for name, env in variants:
                r["torch_" + name] = run_torch(cid, args, args.work, name, env, busy)
            row[key] = r
            print(f"  {cid} {key}: ours {r['ours']['tokens_per_s']:.0f} tok/s" +
                  "".join(f", torch {n} {fmt(r['torch_' + n].get('tokens_per_s'), '.0f')}" for n, _ in variants),
                  flush=True)
        res["configs"][cid] = row
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print()
    head = "| config | ours tok/s | ours GFLOP/s |"
    for n, _ in variants:
        head += f" torch {n} tok/s |"
    head += " ours / best torch |" if variants else ""
    if args.busy:
        head += " ours beside busy loop | torch best beside busy loop |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for cid in ids:
        a = res["configs"][cid]["alone"]
        o = a["ours"]
        line = f"| {cid} | {o['tokens_per_s']:,.0f} | {o['gflops']:.1f} |"
        best = None
        for n, _ in variants:
            t = a["torch_" + n].get("tokens_per_s")
            line += f" {fmt(t, ',.0f')} |"
            if t and (best is None or t > best):
                best = t
        if variants:
            line += f" **{o['tokens_per_s'] / best:.2f}x** |" if best else " - |"
            res["configs"][cid]["ratio"] = o["tokens_per_s"] / best if best else None
        if args.busy:
            b = res["configs"][cid]["busy"]
            ob = b["ours"]["tokens_per_s"]
            line += f" {ob:,.0f} ({100 * ob / o['tokens_per_s']:.0f}% of alone) |"
            tb = [b["torch_" + n].get("tokens_per_s") for n, _ in variants]
            tb = [x for x in tb if x]
            line += f" {max(tb):,.0f} ({100 * max(tb) / best:.0f}%) |" if tb and best else " - |"
        print(line)
    print()
    print("Our components, ms per update (median; moe-train --profile):")
    print("| config | step | " + " | ".join(COMPONENTS) + " |")
    print("|" + "---|" * (len(COMPONENTS) + 2))
    for cid in ids:
        o = res["configs"][cid]["alone"]["ours"]
        cm = o["components_ms"]
        print(f"| {cid} | {1e3 * T * CONFIGS[cid]['B'] / o['tokens_per_s']:.0f} | " +
              " | ".join(fmt(cm.get(k), ".1f") for k in COMPONENTS) + " |")
    if "C1" in ids and "C3" in ids:
        r = res["configs"]["C3"]["alone"]["ours"]["tokens_per_s"] / res["configs"]["C1"]["alone"]["ours"]["tokens_per_s"]
        print(f"\nC3 (256 experts) runs at {100 * r:.0f}% of C1's tokens/s (16 experts).")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    print(f"\ncommand: {' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}; {time.time() - t0:.0f} s; "
          f"JSON in {os.path.relpath(args.json, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
