#!/usr/bin/env python3
"""PyTorch + timm reference for the `ikd-benches` `hrnet` bench (issue 8's four cases): timm's
HRNet feature extraction and one IKD (AHSM) training step on the CPU, to be run on the same
machine, back to back with `cargo bench -p ikd-benches --bench hrnet`.

Cases (float32, batch 2, random init, no downloads, torch.set_num_threads(2)):
  hrnet_w18_small @128x128 : eval forward (4 branch maps, upsampled to 1/4)
  hrnet_w18_small @128x128 : one IKD training step (teacher eval/no_grad, student train, AdamW)
  hrnet_w32       @256x256 : same two

Each case: WARMUP untimed runs, then RUNS timed runs (time.perf_counter); prints median and min in ms.

Usage:
  python hrnet_bench.py            # full: all 4 cases, 2 warm-ups + 7 timed runs
  python hrnet_bench.py --predict  # hrnet_w32@256: teacher + student eval forwards and the anomaly
                                   # map of a batch of 8 (the `predictor` bench's work)
  python hrnet_bench.py --quick    # smoke: hrnet_w18_small only, 1 warm-up + 2 timed runs
  (BENCH_QUICK=1 in the environment is the same as --quick)
Options:
  --warmup N / --runs N   override counts
  --device cuda           run on the GPU (models and inputs moved there, synchronised around each run)
  --w32-only              hrnet_w32@256 cases only
  --json FILE             also write the table as JSON
  --timm-incre            timm's default features_only output (feature_location='incre': the branch
                          outputs passed through the classification head's incre blocks, 128/256/512/1024
                          channels) instead of the raw stage-4 branch maps that IKD and `ikd-hrnet` use
                          (feature_location='', e.g. 32/64/128/256 channels for hrnet_w32)
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import timm

THREADS = 2
DEVICE = torch.device('cpu')  # set by --device
BATCH = 2
OUT_INDICES = (1, 2, 3, 4)  # timm HRNet features_only: 0 = stem (stride 2), 1..4 = branches (stride 4, 8, 16, 32)
LEVELS = (1, 2)             # 0-based index into the 4 upsampled maps
LEVEL_WEIGHTS = (1.0, 2.0)


def make_model(name, raw_branches):
    kw = dict(pretrained=False, features_only=True, out_indices=OUT_INDICES)
    if raw_branches:
        kw['feature_location'] = ''
    return timm.create_model(name, **kw).to(DEVICE)


def upsampled_maps(model, x):
    feats = model(x)
    assert len(feats) == 4, len(feats)
    size = feats[0].shape[-2:]
    return [feats[0]] + [
        F.interpolate(f, size=size, mode='bilinear', align_corners=True) for f in feats[1:]
    ]


class IKDLoss:
    """Pixel + context distillation loss with AHSM (adaptive hard-sample mining) margins."""

    def __init__(self, levels=LEVELS, weights=LEVEL_WEIGHTS):
        self.levels = levels
        self.weights = weights
        self.margins = [torch.zeros((), device=DEVICE) for _ in levels]  # carried across steps, init 0
        self.kept = [0 for _ in levels]                   # last step's kept pixel counts (info only)

    def level_loss(self, i, t, s):
        tn = F.normalize(t, dim=1)
        sn = F.normalize(s, dim=1)
        d = (tn - sn).pow(2).sum(dim=1)  # N,H,W
        with torch.no_grad():
            dd = d.detach()
            self.margins[i] = 0.01 * self.margins[i] + 0.99 * (dd.mean() + 2.0 * dd.std())  # unbiased std
            mask = dd >= self.margins[i]
        k = int(mask.sum())
        self.kept[i] = k
        if k == 0:
            return d.mean()
        pixel = d[mask].mean()
        qt = tn.permute(0, 2, 3, 1)[mask]  # K x C
        qs = sn.permute(0, 2, 3, 1)[mask]  # K x C
        gt = qt @ qt.t()
        gs = qs @ qs.t()
        context = (gt - gs).pow(2).mean()
        return pixel + context

    def __call__(self, t_maps, s_maps):
        total = 0.0
        for i, (lvl, w) in enumerate(zip(self.levels, self.weights)):
            total = total + w * self.level_loss(i, t_maps[lvl], s_maps[lvl])
        return total / sum(self.weights)


def sync():
    if DEVICE.type == 'cuda':
        torch.cuda.synchronize()


def bench(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    sync()
    times, cpu = [], []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(times), min(times), times, cpu


def case_eval(name, res, raw_branches):
    torch.manual_seed(0)
    model = make_model(name, raw_branches).eval()
    x = torch.randn(BATCH, 3, res, res, dtype=torch.float32, device=DEVICE)
    with torch.no_grad():
        feats = model(x)
        maps = upsampled_maps(model, x)
    print(f'  {name} {res}x{res} reductions={model.feature_info.reduction()} '
          f'branch shapes={[tuple(f.shape) for f in feats]} '
          f'upsampled={[tuple(m.shape) for m in maps]}', flush=True)

    def fn():
        with torch.no_grad():
            return upsampled_maps(model, x)

    return fn


def case_predict(name, res, raw_branches, batch=8):
    """What `ikd::Predictor::score_batch` computes for a batch: teacher and student eval forwards,
    per-pixel L2-normalised squared distances of levels 1 and 2 multiplied, resized to the input."""
    torch.manual_seed(0)
    teacher = make_model(name, raw_branches).eval()
    torch.manual_seed(1)
    student = make_model(name, raw_branches).eval()
    x = torch.randn(batch, 3, res, res, dtype=torch.float32, device=DEVICE)

    def fn():
        with torch.no_grad():
            t_maps = upsampled_maps(teacher, x)
            s_maps = upsampled_maps(student, x)
            amap = None
            for i in LEVELS:
                t = F.normalize(t_maps[i], dim=1)
                s = F.normalize(s_maps[i], dim=1)
                d = ((t - s) ** 2).sum(dim=1, keepdim=True)
                amap = d if amap is None else amap * d
            return F.interpolate(amap, size=(res, res), mode='bilinear', align_corners=False)

    return fn


def case_train(name, res, raw_branches):
    torch.manual_seed(0)
    teacher = make_model(name, raw_branches).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(1)
    student = make_model(name, raw_branches).train()
    opt = torch.optim.AdamW(student.parameters(), lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    crit = IKDLoss()
    x = torch.randn(BATCH, 3, res, res, dtype=torch.float32, device=DEVICE)
    state = {}

    def fn():
        with torch.no_grad():
            t_maps = upsampled_maps(teacher, x)
        s_maps = upsampled_maps(student, x)
        loss = crit(t_maps, s_maps)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state['loss'] = float(loss.detach())
        return loss

    def info():
        return (f"loss={state.get('loss', float('nan')):.6g} kept={crit.kept} "
                f"margins={[round(float(m), 6) for m in crit.margins]}")

    fn.info = info
    return fn


def cpu_model():
    """The CPU's model name, as `ikd_kernels::cpu_model` reads it."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='hrnet_w18_small only, 1 warm-up + 2 runs')
    ap.add_argument('--warmup', type=int, default=None)
    ap.add_argument('--runs', type=int, default=None)
    ap.add_argument('--timm-incre', action='store_true')
    ap.add_argument('--predict', action='store_true',
                    help="only hrnet_w32@256 inference of a batch of 8, beside the `predictor` bench")
    ap.add_argument('--device', default='cpu', help='cpu or cuda')
    ap.add_argument('--w32-only', action='store_true', help='hrnet_w32@256 cases only')
    ap.add_argument('--json', default=None, help='also write the table as JSON to this file')
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    quick = args.quick or os.environ.get('BENCH_QUICK', '') not in ('', '0')
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    runs = args.runs if args.runs is not None else (2 if quick else 7)

    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(True)

    print(f'python {sys.version.split()[0]}  torch {torch.__version__}  timm {timm.__version__}')
    print('\n'.join(torch.__config__.parallel_info().splitlines()[:8]))
    print(f'torch.backends.mkldnn.is_available(): {torch.backends.mkldnn.is_available()}')
    # which vector code ATen runs (ATEN_CPU_CAPABILITY=avx2 forces an AVX2 machine's kernels;
    # DNNL_MAX_CPU_ISA=AVX2 and MKL_ENABLE_INSTRUCTIONS=AVX2 do the same for oneDNN and MKL)
    isa = {k: os.environ[k] for k in ('ATEN_CPU_CAPABILITY', 'DNNL_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS')
           if k in os.environ}
    print(f'CPU capability: {torch.backends.cpu.get_cpu_capability()}  caps set: {isa or "none"}  '
          f'CPU: {cpu_model()}')
    print('loadavg at start: %.2f %.2f %.2f (should be ~0 for clean numbers)' % os.getloadavg())
    print(f'torch.get_num_threads(): {torch.get_num_threads()}  quick={quick} warmup={warmup} runs={runs} '
          f'feature_location={"raw" if not args.timm_incre else "incre (timm default)"}')
    print(flush=True)

    specs = [('hrnet_w18_small', 128)]
    if not quick:
        specs.append(('hrnet_w32', 256))
    if args.w32_only:
        specs = [('hrnet_w32', 256)]
    cases = (('eval_fwd', case_eval), ('ikd_train_step', case_train))
    if args.predict:
        specs, cases = [('hrnet_w32', 256)], (('predict_b8', case_predict),)

    rows = []
    for name, res in specs:
        for kind, builder in cases:
            label = f'{name}@{res} {kind}'
            print(f'[{label}]', flush=True)
            fn = builder(name, res, not args.timm_incre)
            med, mn, times, cpu = bench(fn, warmup, runs)
            extra = f'  {fn.info()}' if hasattr(fn, 'info') else ''
            # process CPU time per run: with 2 threads and an idle machine, wall ~ cpu/2..cpu;
            # wall >> cpu means other processes were competing for the cores (results unreliable).
            print(f'  runs(ms)={[round(t, 1) for t in times]}  cpu(ms)={[round(c, 1) for c in cpu]}{extra}',
                  flush=True)
            rows.append((label, med, mn))
            del fn

    print()
    w = max(len(r[0]) for r in rows)
    print(f'{"case":<{w}}  {"median ms":>10}  {"min ms":>10}')
    for label, med, mn in rows:
        print(f'{label:<{w}}  {med:>10.1f}  {mn:>10.1f}')
    print('loadavg at end: %.2f %.2f %.2f' % os.getloadavg())
    if args.json:
        import json
        info = {'torch': torch.__version__, 'timm': timm.__version__, 'device': str(DEVICE),
                'gpu': torch.cuda.get_device_name() if DEVICE.type == 'cuda' else None,
                'cases': [{'case': l, 'median_ms': m, 'min_ms': n} for l, m, n in rows]}
        with open(args.json, 'w') as f:
            json.dump(info, f, indent=2)


if __name__ == '__main__':
    main()
