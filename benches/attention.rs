//! Criterion micro-benchmarks of attention (`cargo bench --bench attention`):
//! the naive path against the tiled online-softmax path (Rabe & Staats 2021;
//! Dao et al. 2022), as the CPU kernel and as candle ops, at growing sequence lengths, and the three score
//! functions (Bahdanau, Luong, Vaswani) through score -> softmax -> attend.
//! Shapes are the model's: batch 1, 4 heads of 32 dims.

use candle::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vla_demo::engine::long_attention::{
    attention_with, tiled_attention_blocks, AttentionImpl, BLOCK_K, BLOCK_Q,
};
use vla_demo::model::attention::{align, attend, score, ScoreFn};

const HEADS: usize = 4;
const DIM: usize = 32;

fn qkv(t: usize) -> (Tensor, Tensor, Tensor) {
    let r = || Tensor::randn(0f32, 1f32, (1, HEADS, t, DIM), &Device::Cpu).unwrap();
    (r(), r(), r())
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention_path");
    g.sample_size(10);
    for t in [196, 576, 1024, 2304] {
        let (q, k, v) = qkv(t);
        for imp in [AttentionImpl::Naive, AttentionImpl::Tiled] {
            g.bench_with_input(BenchmarkId::new(imp.name(), t), &t, |b, _| {
                b.iter(|| attention_with(imp, &q, &k, &v, false).unwrap())
            });
        }
        // The same algorithm written with candle ops instead of one kernel.
        g.bench_with_input(BenchmarkId::new("tiled_ops", t), &t, |b, _| {
            b.iter(|| tiled_attention_blocks(&q, &k, &v, false, BLOCK_Q, BLOCK_K).unwrap())
        });
        let imp = AttentionImpl::Tiled;
        g.bench_with_input(BenchmarkId::new("tiled_causal", t), &t, |b, _| {
            b.iter(|| attention_with(imp, &q, &k, &v, true).unwrap())
        });
    }
    g.finish();
}

fn score_functions(c: &mut Criterion) {
    let mut g = c.benchmark_group("score_fn");
    g.sample_size(10);
    let v_add = Tensor::randn(0f32, 0.2f32, (HEADS, DIM), &Device::Cpu).unwrap();
    // The additive score builds a (1, H, T, T, D) tensor: 1024 is already 512 MiB.
    for t in [196, 576] {
        let (q, k, v) = qkv(t);
        for (name, kind) in [
            ("additive", ScoreFn::Additive),
            ("dot", ScoreFn::Dot),
            ("scaled_dot", ScoreFn::ScaledDot),
        ] {
            g.bench_with_input(BenchmarkId::new(name, t), &t, |b, _| {
                b.iter(|| {
                    let s = score(kind, &q, &k, Some(&v_add)).unwrap();
                    attend(&align(&s).unwrap(), &v).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, paths, score_functions);
criterion_main!(benches);
