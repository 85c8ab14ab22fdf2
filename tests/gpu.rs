//! The CUDA paths, run on a real GPU: the shipped model, a training step and
//! the long-sequence attention, each against the CPU.
//!
//! Compiled only with `--features cuda` (scripts/build-cuda.sh builds it for a
//! GPU machine; docs/BENCH.md says how to run it there). In that build every test
//! opens the GPU and fails without one, so a pass means the GPU ran. The
//! default, CPU-only build compiles nothing here.
#![cfg(feature = "cuda")]

mod model_common;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use model_common::{assert_every_variable_has_a_gradient, batch_on, tiny, LOSS_WEIGHTS};
use vla_demo::action::ActionToken;
use vla_demo::checkpoint::Checkpoint;
use vla_demo::engine::long_attention::{attention_with, AttentionImpl};
use vla_demo::engine::Path as RunPath;
use vla_demo::model::vla::{Decoding, Step};
use vla_demo::model::{ScoreFn, Vla};
use vla_demo::train::init::SeededInit;
use vla_demo::train::{self, AdamW};

fn gpu() -> Device {
    Device::new_cuda(0).expect("this test needs a CUDA GPU")
}

/// Largest |a − b| over the entries where |a| < `below`, and the largest
/// such |a|; the tensors may be on any devices.
fn max_diff(a: &Tensor, b: &Tensor, below: f32) -> (f32, f32) {
    let values = |t: &Tensor| -> Vec<f32> {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len());
    let pairs = a.iter().zip(&b).filter(|(x, _)| x.abs() < below);
    let diff = pairs
        .clone()
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    (diff, pairs.map(|(x, _)| x.abs()).fold(0.0, f32::max))
}

fn tokens(steps: &[Vec<Step>]) -> Vec<Vec<ActionToken>> {
    steps
        .iter()
        .map(|s| s.iter().map(|s| s.token).collect())
        .collect()
}

#[test]
fn auto_takes_the_gpu() {
    assert!(vla_demo::device::select("auto").unwrap().is_cuda());
    assert!(vla_demo::device::select("cuda:0").unwrap().is_cuda());
}

/// The shipped model on the GPU, through the device path: logits within
/// 1e-4 of the CPU's (relative to the largest logit), the same decoded
/// actions, and the same attention maps.
#[test]
fn the_shipped_model_decodes_the_same_actions_on_the_gpu() {
    let ckpt = Checkpoint::embedded().unwrap();
    let cpu = ckpt.load(&Device::Cpu, DType::F32).unwrap();
    let dev = gpu();
    let on_gpu = ckpt.load(&dev, DType::F32).unwrap();
    assert_eq!(on_gpu.path(false), RunPath::Device);
    assert_eq!(on_gpu.path(true), RunPath::Device);

    let (bc, bg) = (
        batch_on(cpu.config(), &ckpt.tokenizer, 30..36, &Device::Cpu),
        batch_on(cpu.config(), &ckpt.tokenizer, 30..36, &dev),
    );
    let lc = cpu.forward(&bc.inputs, &bc.action_in).unwrap().logits;
    let lg = on_gpu.forward(&bg.inputs, &bg.action_in).unwrap().logits;
    // The grammar's forbidden tokens sit near -1e4, where one f32 step is
    // about 1e-3: the 1e-4 bar is for the allowed ones, as in
    // benches/torch_peer.py.
    let (diff, scale) = max_diff(&lc, &lg, 1e3);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "allowed logits differ by {diff} (largest {scale})"
    );
    let (diff, _) = max_diff(&lc, &lg, f32::INFINITY);
    assert!(diff < 1e-2, "masked logits differ by {diff}");

    let want = cpu
        .generate(&bc.inputs, &Decoding::default(), false)
        .unwrap();
    let got = on_gpu
        .generate(&bg.inputs, &Decoding::default(), true)
        .unwrap();
    assert_eq!(got.path, RunPath::Device);
    assert_eq!(tokens(&want.steps), tokens(&got.steps));
    let (diff, _) = max_diff(&want.boa_cross, &got.boa_cross, f32::INFINITY);
    assert!(diff < 1e-4, "the <boa> attention differs by {diff}");
    let maps = got.maps.as_ref().unwrap();
    assert_eq!(maps.fusion_cross.len(), cpu.config().fusion_layers);
}

/// f16 and bf16 run on the GPU and decode finite, full-length actions that
/// mostly agree with f32 (half precision may flip a bin at a boundary).
#[test]
fn half_precision_runs_on_the_gpu() {
    let ckpt = Checkpoint::embedded().unwrap();
    let dev = gpu();
    let full = ckpt.load(&dev, DType::F32).unwrap();
    let b = batch_on(full.config(), &ckpt.tokenizer, 30..36, &dev);
    let want = tokens(
        &full
            .generate(&b.inputs, &Decoding::default(), false)
            .unwrap()
            .steps,
    );
    for dtype in [DType::F16, DType::BF16] {
        let half = ckpt.load(&dev, dtype).unwrap();
        let got = half
            .generate(&b.inputs, &Decoding::default(), false)
            .unwrap();
        vla_demo::pipeline::check_finite_output(&got).unwrap();
        let got = tokens(&got.steps);
        assert_eq!(got.len(), want.len());
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        assert!(
            same * 10 >= want.len() * 9,
            "{dtype:?}: {same}/{} sequences agree with f32",
            want.len()
        );
    }
}

/// One training step on the GPU: the same loss as on the CPU from the same
/// seed, a non-zero gradient for every variable, and a working optimiser step.
#[test]
fn a_training_step_on_the_gpu_matches_the_cpu() {
    let (cfg, tok) = tiny(ScoreFn::ScaledDot);

    let dev = gpu();
    let mut losses = Vec::new();
    for device in [Device::Cpu, dev.clone()] {
        let vars = VarMap::new();
        let m = Vla::new(&cfg, SeededInit::var_builder(&vars, 5, &device)).unwrap();
        let b = batch_on(&cfg, &tok, 30..33, &device);
        let (loss, stats) = train::loss(&m, &b, LOSS_WEIGHTS).unwrap();
        losses.push(stats.loss);
        if device.is_cuda() {
            let grads = loss.backward().unwrap();
            let mut opt = AdamW::new(&vars).unwrap();
            assert_every_variable_has_a_gradient(&grads, &opt);
            opt.step(&grads, 1e-3, 0.01, 1.0).unwrap();
            let (after, _) = train::loss(&m, &b, LOSS_WEIGHTS).unwrap();
            assert!(after.to_scalar::<f32>().unwrap().is_finite());
        }
    }
    assert!(
        (losses[0] - losses[1]).abs() <= 1e-4 * losses[0].abs().max(1.0),
        "loss: cpu {} gpu {}",
        losses[0],
        losses[1]
    );
}

/// The long-sequence paths on the GPU: tiled equals naive, and both equal
/// the CPU, causal or not.
#[test]
fn long_attention_on_the_gpu_matches_the_cpu() {
    let dev = gpu();
    let (b, h, t, d) = (1, 2, 700, 32);
    for causal in [false, true] {
        let q = Tensor::randn(0f32, 1.0, (b, h, t, d), &Device::Cpu).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, t, d), &Device::Cpu).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, t, d), &Device::Cpu).unwrap();
        let want = attention_with(AttentionImpl::Naive, &q, &k, &v, causal).unwrap();
        let (qg, kg, vg) = (
            q.to_device(&dev).unwrap(),
            k.to_device(&dev).unwrap(),
            v.to_device(&dev).unwrap(),
        );
        for imp in [AttentionImpl::Naive, AttentionImpl::Tiled] {
            let got = attention_with(imp, &qg, &kg, &vg, causal).unwrap();
            assert!(got.device().is_cuda());
            let (diff, _) = max_diff(&want, &got, f32::INFINITY);
            assert!(
                diff < 1e-4,
                "{imp} causal={causal} differs from the CPU by {diff}"
            );
        }
    }
}
