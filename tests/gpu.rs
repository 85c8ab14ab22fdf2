//! The CUDA paths, run on a real GPU: the shipped model, a training step and
//! the long-sequence attention, each against the CPU.
//!
//! Compiled only with `--features cuda` (scripts/build-cuda.sh builds it for a
//! GPU machine; docs/BENCH.md says how it was run). In that build every test
//! opens the GPU and fails without one, so a pass means the GPU ran. The
//! default, CPU-only build compiles nothing here.
#![cfg(feature = "cuda")]

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vla_demo::action::ActionToken;
use vla_demo::checkpoint::Checkpoint;
use vla_demo::data::{self, Example};
use vla_demo::engine::long_attention::{attention_with, AttentionImpl};
use vla_demo::engine::Path as RunPath;
use vla_demo::model::vla::{Decoding, Step};
use vla_demo::model::{Config, Vla};
use vla_demo::scene::Layout;
use vla_demo::tokens::CommandTokenizer;
use vla_demo::train::init::SeededInit;
use vla_demo::train::{self, AdamW};

fn gpu() -> Device {
    Device::new_cuda(0).expect("this test needs a CUDA GPU")
}

/// Scenes 30.. with two commands each, as one batch on `device`.
fn batch(cfg: &Config, tok: &CommandTokenizer, scenes: u64, device: &Device) -> data::Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut images = Vec::new();
    let mut examples = Vec::new();
    for seed in 30..30 + scenes {
        let layout = Layout::generate(seed);
        for command in vla_demo::scene::draw::draw_commands(&layout, 2, 0.3, &mut rng) {
            let target = vla_demo::grid::target_patches(
                &data::first_target(&layout, &command).unwrap(),
                cfg.grid(),
            );
            examples.push(Example {
                image: images.len(),
                command,
                target,
            });
        }
        images.push(layout.render(cfg.image_size as u32).unwrap());
    }
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    data::make_batch(&refs, &examples, tok, cfg, 1.5, device).unwrap()
}

/// Largest |a − b| over two tensors on any devices, and the largest |a|.
fn max_diff(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let a: Vec<f32> = a
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = b
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    (diff, a.iter().map(|x| x.abs()).fold(0.0, f32::max))
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
        batch(cpu.config(), &ckpt.tokenizer, 6, &Device::Cpu),
        batch(cpu.config(), &ckpt.tokenizer, 6, &dev),
    );
    let lc = cpu.forward(&bc.inputs, &bc.action_in).unwrap().logits;
    let lg = on_gpu.forward(&bg.inputs, &bg.action_in).unwrap().logits;
    let (diff, scale) = max_diff(&lc, &lg);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "logits differ by {diff} (largest {scale})"
    );

    let want = cpu
        .generate(&bc.inputs, &Decoding::default(), false)
        .unwrap();
    let got = on_gpu
        .generate(&bg.inputs, &Decoding::default(), true)
        .unwrap();
    assert_eq!(got.path, RunPath::Device);
    assert_eq!(tokens(&want.steps), tokens(&got.steps));
    let (diff, _) = max_diff(&want.boa_cross, &got.boa_cross);
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
    let b = batch(full.config(), &ckpt.tokenizer, 6, &dev);
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
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tok = CommandTokenizer::train(data::command_corpus(60, &mut rng).into_iter()).unwrap();
    let mut cfg = Config::tiny();
    cfg.image_size = 64;
    cfg.patch_size = 16;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.vision_layers = 1;
    cfg.text_layers = 1;
    cfg.fusion_layers = 2;
    cfg.vocab_size = tok.vocab_size();
    cfg.action_offset = tok.action_offset();
    cfg.boa_token_id = tok.boa_id();
    cfg.pad_token_id = tok.pad_id();
    cfg.validate().unwrap();

    let dev = gpu();
    let mut losses = Vec::new();
    for device in [Device::Cpu, dev.clone()] {
        let vars = VarMap::new();
        let m = Vla::new(&cfg, SeededInit::var_builder(&vars, 5, &device)).unwrap();
        let b = batch(&cfg, &tok, 3, &device);
        let (loss, stats) = train::loss(&m, &b, 0.3).unwrap();
        losses.push(stats.loss);
        if device.is_cuda() {
            let grads = loss.backward().unwrap();
            let mut opt = AdamW::new(&vars).unwrap();
            for (name, var) in opt.vars() {
                let g = grads
                    .get(var)
                    .unwrap_or_else(|| panic!("{name} has no gradient"));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{name} has a zero gradient on the GPU");
            }
            opt.step(&grads, 1e-3, 0.01, 1.0).unwrap();
            let (after, _) = train::loss(&m, &b, 0.3).unwrap();
            assert!(after.to_scalar::<f32>().unwrap().is_finite());
        }
    }
    assert!(
        (losses[0] - losses[1]).abs() < 1e-4,
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
            let (diff, _) = max_diff(&want, &got);
            assert!(
                diff < 1e-4,
                "{imp} causal={causal} differs from the CPU by {diff}"
            );
        }
    }
}
