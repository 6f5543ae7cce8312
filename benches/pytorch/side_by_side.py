#!/usr/bin/env python3
"""ikd's criterion benches and PyTorch's `hrnet_bench.py`, back to back, on every vector path.

The machines this project runs on change speed from minute to minute (shared virtual CPUs), so a
ratio is only meaningful between runs made one right after the other. This script alternates:
for each round, for each path, for each case, the ikd bench (criterion, release build) and then
the same case in PyTorch + timm, each with the same vector set:

  path avx512: ikd's default policy; PyTorch as installed (AVX-512 where the CPU has it)
  path avx2:   `IKD_SIMD=avx2` (the kernels and their matrix products on AVX2 + FMA only);
               PyTorch with ATEN_CPU_CAPABILITY=avx2, DNNL_MAX_CPU_ISA=AVX2,
               MKL_ENABLE_INSTRUCTIONS=AVX2: an AVX2-only machine's code on either side.
               On an AVX-512 CPU this stands in for an AVX2 machine: same instructions, not
               the same cores.

Cases: w18_eval, w18_train (hrnet_w18_small 128², batch 2), w32_eval, w32_train (hrnet_w32 256²,
batch 2), predict (hrnet_w32 256², batch 8: the `predictor` bench against `--predict`).

It prints each pair as it goes and, at the end, per path and case, the median over rounds of ikd,
PyTorch and of the per-round ratio ikd / PyTorch, as a Markdown table with the CPU model.

Usage (from the repository root; PyTorch + timm installed as in benches/README.md):
  python benches/pytorch/side_by_side.py                       # every path this CPU has, all cases, 3 rounds
  python benches/pytorch/side_by_side.py --paths avx2 --cases w18_train,w32_train --rounds 5
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

# case: (bench, criterion filter, criterion id under target/criterion, hrnet_bench.py args, its label)
CASES = {
    'w18_eval': ('hrnet', '^hrnet/hrnet_w18_small/128/b2/eval_forward$',
                 'hrnet_hrnet_w18_small_128_b2/eval_forward', ['--quick'], 'hrnet_w18_small@128 eval_fwd'),
    'w18_train': ('hrnet', '^hrnet/hrnet_w18_small/128/b2/ikd_train_step$',
                  'hrnet_hrnet_w18_small_128_b2/ikd_train_step', ['--quick'],
                  'hrnet_w18_small@128 ikd_train_step'),
    'w32_eval': ('hrnet', '^hrnet/hrnet_w32/256/b2/eval_forward$', 'hrnet_hrnet_w32_256_b2/eval_forward',
                 ['--w32-only'], 'hrnet_w32@256 eval_fwd'),
    'w32_train': ('hrnet', '^hrnet/hrnet_w32/256/b2/ikd_train_step$',
                  'hrnet_hrnet_w32_256_b2/ikd_train_step', ['--w32-only'], 'hrnet_w32@256 ikd_train_step'),
    'predict': ('predictor', '^predictor/hrnet_w32/256/b8/score_batch$',
                'predictor_hrnet_w32_256/b8_score_batch', ['--predict'], 'hrnet_w32@256 predict_b8'),
}

PATHS = {
    'avx512': ({'IKD_SIMD': 'avx512'}, {}),
    'avx2': ({'IKD_SIMD': 'avx2'},
             {'ATEN_CPU_CAPABILITY': 'avx2', 'DNNL_MAX_CPU_ISA': 'AVX2', 'MKL_ENABLE_INSTRUCTIONS': 'AVX2'}),
}


def cpu_flags():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('flags'):
                return set(line.split(':', 1)[1].split())
    return set()


def env_with(extra):
    env = dict(os.environ)
    for k in ('IKD_SIMD', 'ATEN_CPU_CAPABILITY', 'DNNL_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS', 'IKD_BENCH_QUICK'):
        env.pop(k, None)
    env.update(extra)
    return env


def run_ikd(case, path, seconds):
    bench, flt, cid, _, _ = CASES[case]
    env = env_with(PATHS[path][0])
    if case.startswith('w18'):
        env['IKD_BENCH_QUICK'] = '1'  # skip hrnet_w32's set-up
    cmd = ['cargo', 'bench', '-q', '-p', 'ikd-benches', '--bench', bench, '--', flt,
           '--measurement-time', str(seconds), '--warm-up-time', '1', '--sample-size', '10']
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed:\n{out.stderr[-3000:]}')
    # the bench's first line: `kernel path: PATH (...), CPU: MODEL` (ikd_kernels::cpu_model)
    kp = re.search(r'kernel path: ([^(,]+).*CPU: (.+)', out.stdout)
    with open(os.path.join(ROOT, 'target', 'criterion', cid, 'new', 'sample.json')) as f:
        sample = json.load(f)
    per_iter = [t / n / 1e6 for t, n in zip(sample['times'], sample['iters'])]
    path_cpu = (kp.group(1).strip(), kp.group(2).strip()) if kp else ('?', '?')
    return (statistics.median(per_iter), min(per_iter)), path_cpu


def run_torch(case, path, python, runs):
    _, _, _, args, label = CASES[case]
    with tempfile.NamedTemporaryFile(suffix='.json') as tmp:
        cmd = [python, os.path.join(HERE, 'hrnet_bench.py'), *args, '--warmup', '2', '--runs', str(runs),
               '--json', tmp.name]
        out = subprocess.run(cmd, env=env_with(PATHS[path][1]), capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f'{" ".join(cmd)} failed:\n{out.stderr[-3000:]}')
        cap = re.search(r'CPU capability: (\S+)', out.stdout)
        rows = json.load(open(tmp.name))['cases']
    row = next(r for r in rows if r['case'] == label)
    return (row['median_ms'], row['min_ms']), (cap.group(1) if cap else '?')


def main():
    flags = cpu_flags()
    have = [p for p, need in (('avx2', {'avx2', 'fma'}), ('avx512', {'avx512f'})) if need <= flags]
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--paths', default=','.join(have), help=f'comma-separated, of {list(PATHS)}')
    ap.add_argument('--cases', default=','.join(CASES), help=f'comma-separated, of {list(CASES)}')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--seconds', type=int, default=5, help="criterion's measurement time per case")
    ap.add_argument('--runs', type=int, default=5, help="PyTorch's timed runs per case")
    ap.add_argument('--python', default=sys.executable, help='the Python with torch and timm')
    a = ap.parse_args()
    paths, cases = a.paths.split(','), a.cases.split(',')
    for p in paths:
        if p not in PATHS or p not in have:
            sys.exit(f'path {p!r}: this CPU runs {have}')
    for c in cases:
        if c not in CASES:
            sys.exit(f'case {c!r}: one of {list(CASES)}')
    subprocess.run(['cargo', 'bench', '-q', '-p', 'ikd-benches', '--bench', 'hrnet', '--bench', 'predictor',
                    '--no-run'], cwd=ROOT, check=True)
    res, cpu = {}, '?'
    for r in range(a.rounds):
        for p in paths:
            for c in cases:
                ikd, (kp, cpu) = run_ikd(c, p, a.seconds)
                pt, cap = run_torch(c, p, a.python, a.runs)
                res.setdefault((p, c), []).append((ikd, pt))
                print(f'round {r + 1} {p:<6} {c:<9} ikd {ikd[0]:8.1f} ms (min {ikd[1]:8.1f}, {kp})  '
                      f'PyTorch {pt[0]:8.1f} ms (min {pt[1]:8.1f}, {cap})  ratio {ikd[0] / pt[0]:.2f} '
                      f'(min/min {ikd[1] / pt[1]:.2f})', flush=True)
    med = statistics.median
    print(f'\nCPU: {cpu}; {a.rounds} rounds; each side\'s median and fastest run per round '
          f'(ikd: 10 criterion samples, PyTorch: {a.runs} runs); the table gives the medians over the '
          f'rounds, of the times and of the per-round ratios ikd / PyTorch (medians; fastest runs)\n')
    print('| path | case | ikd (median; fastest) | PyTorch (median; fastest) | ikd / PyTorch (medians; fastest) |')
    print('|---|---|---|---|---|')
    for (p, c), v in res.items():
        cell = lambda i, j: f'{med(x[i][j] for x in v):.1f} ms'
        ratio = lambda j: f'{med(x[0][j] / x[1][j] for x in v):.2f}×'
        print(f'| {p} | {c} | {cell(0, 0)}; {cell(0, 1)} | {cell(1, 0)}; {cell(1, 1)} | {ratio(0)}; {ratio(1)} |')


if __name__ == '__main__':
    main()
