//! The attention paths agree, the fused path says plainly when it is not
//! compiled in, the benchmark's FLOP count matches a hand count, and
//! `vla-demo bench` runs end to end on a tiny model.

use candle::{Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vla_demo::bench::{self, flops, BenchArgs};
use vla_demo::engine::long_attention::{attention_with, tiled_attention_blocks, AttentionImpl};
use vla_demo::model::{Config, Vla};
use vla_demo::tokens::CommandTokenizer;
use vla_demo::train::init::SeededInit;
use vla_demo::{checkpoint, data};

fn randn(b: usize, h: usize, t: usize, d: usize, seed: u64) -> Tensor {
    // Seeded through ChaCha so a failure reproduces.
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..b * h * t * d)
        .map(|_| rng.random::<f32>() * 4.0 - 2.0)
        .collect();
    Tensor::from_vec(v, (b, h, t, d), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn tiled_equals_naive_on_many_shapes() {
    // (B, H, Tq, Tk, D, causal, block_q, block_k)
    let cases = [
        (1, 1, 1, 1, 4, false, 256, 256),
        (1, 4, 196, 196, 32, false, 256, 256), // the ViT's shape: one tile
        (2, 4, 300, 300, 32, false, 256, 256), // 300 = 256 + 44: a ragged last tile
        (1, 4, 7, 196, 32, false, 256, 64),    // cross-attention: 7 queries over 196 patches
        (2, 3, 77, 77, 16, true, 16, 32),      // causal, blocks that do not divide T
        (1, 2, 513, 513, 8, true, 256, 256),   // causal, the default tiles
        (3, 2, 50, 50, 8, true, 7, 5),         // causal, query and key tiles misaligned
    ];
    for (i, &(b, h, tq, tk, d, causal, bq, bk)) in cases.iter().enumerate() {
        let q = randn(b, h, tq, d, 3 * i as u64);
        let k = randn(b, h, tk, d, 3 * i as u64 + 1);
        let v = randn(b, h, tk, d, 3 * i as u64 + 2);
        let naive = attention_with(AttentionImpl::Naive, &q, &k, &v, causal).unwrap();
        let tiled = tiled_attention_blocks(&q, &k, &v, causal, bq, bk).unwrap();
        let diff = max_diff(&naive, &tiled);
        assert!(
            diff < 1e-5,
            "case {i} {:?}: max diff {diff}",
            (b, h, tq, tk, d, causal, bq, bk)
        );
        if bq == 256 && bk == 256 {
            let via = attention_with(AttentionImpl::Tiled, &q, &k, &v, causal).unwrap();
            assert!(max_diff(&naive, &via) < 1e-5);
        }
    }
}

#[test]
fn causal_tiled_output_ignores_the_future() {
    // Changing the last key and value must not move any earlier query's output.
    let (q, k, v) = (
        randn(1, 2, 40, 8, 1),
        randn(1, 2, 40, 8, 2),
        randn(1, 2, 40, 8, 3),
    );
    let k2 = Tensor::cat(&[k.narrow(2, 0, 39).unwrap(), randn(1, 2, 1, 8, 9)], 2).unwrap();
    let v2 = Tensor::cat(&[v.narrow(2, 0, 39).unwrap(), randn(1, 2, 1, 8, 10)], 2).unwrap();
    let a = tiled_attention_blocks(&q, &k, &v, true, 8, 8)
        .unwrap()
        .narrow(2, 0, 39)
        .unwrap();
    let b = tiled_attention_blocks(&q, &k2, &v2, true, 8, 8)
        .unwrap()
        .narrow(2, 0, 39)
        .unwrap();
    assert_eq!(max_diff(&a, &b), 0.0);
}

#[test]
fn fused_on_the_cpu_is_a_clear_error() {
    let q = randn(1, 2, 4, 8, 0);
    assert!(!AttentionImpl::Fused.available(&Device::Cpu));
    let e = attention_with(AttentionImpl::Fused, &q, &q, &q, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not available") && e.contains("--features"),
        "{e}"
    );
}

#[test]
fn bad_shapes_are_errors_that_name_them() {
    let (q, k) = (randn(1, 2, 4, 8, 0), randn(1, 2, 5, 8, 1));
    let e = attention_with(AttentionImpl::Tiled, &q, &k, &k, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("causal"), "{e}");
    let empty = randn(1, 2, 0, 8, 3);
    for imp in [AttentionImpl::Naive, AttentionImpl::Tiled] {
        assert!(attention_with(imp, &q, &empty, &empty, false).is_err());
    }
    let k3 = randn(1, 3, 5, 8, 2);
    assert!(attention_with(AttentionImpl::Naive, &q, &k3, &k3, false).is_err());
}

/// A config small enough to count by hand: N = 4 patches of 16 px (3·16² =
/// 768 inputs), C = 8, I = 16, one layer in each part.
fn hand_config() -> Config {
    let mut cfg = Config::tiny();
    cfg.image_size = 32;
    cfg.patch_size = 16;
    cfg.conv_stem = vec![];
    cfg.hidden_size = 8;
    cfg.num_attention_heads = 2;
    cfg.intermediate_size = 16;
    cfg.vision_layers = 1;
    cfg.text_layers = 1;
    cfg.fusion_layers = 1;
    cfg.cross_geometry = false;
    cfg
}

#[test]
fn flop_count_matches_a_hand_count() {
    let cfg = hand_config();
    // Vision: patch projection 2·4·768·8 = 49152. One block over 4 tokens:
    // q, k, v, o projections 4 · 2·4·8·8 = 2048; scores and weighted sum
    // 2 · 2·4·4·8 = 512; MLP 2·4·8·16 + 2·4·16·8 = 2048. Block = 4608.
    let vision = 49152 + 4608;
    // Text over T = 3 tokens: projections 4 · 2·3·8·8 = 1536; attention
    // 2 · 2·3·3·8 = 288; MLP 2 · 2·3·8·16 = 1536.
    let text = 1536 + 288 + 1536;
    // Fusion: image keys and values 2 · 2·4·8·8 = 1024. One pass over
    // S = 3 + 2 positions: self-attention block 4·2·5·64 + 4·25·8 + 2·2·5·8·16
    // = 2560 + 800 + 2560; cross-attention q and o projections 2 · 2·5·8·8 = 1280;
    // cross scores and sum 2 · 2·5·4·8 = 640; head on 2 positions 2·2·8·517 = 16544.
    let fusion = 1024 + (2560 + 800 + 2560) + 1280 + 640 + 16544;
    let f = flops::forward(&cfg, 3, 2);
    assert_eq!((f.vision, f.text, f.fusion), (vision, text, fusion));
    assert_eq!(f.total(), 82528);
    // Greedy decoding of 2 tokens runs the fusion head over [words, <boa>]
    // (S = 4), then one query for a_1 against the 5 cached positions.
    let pass1 = (4 * 2 * 4 * 64 + 4 * 16 * 8 + 2 * 2 * 4 * 8 * 16)
        + 2 * 2 * 4 * 8 * 8
        + 2 * 2 * 4 * 4 * 8
        + 2 * 8 * 517;
    // One row: self q, k, v, o 4·2·64 = 512; its scores and sum over 5 keys
    // 4·5·8 = 160; cross q, o 2·2·64 = 256; cross over 4 patches 4·4·8 = 128;
    // MLP 2·2·8·16 = 512; the head on one position 2·8·517 = 8272.
    let row = 512 + 160 + 256 + 128 + 512 + 8272;
    let g = flops::generate(&cfg, 3, 2);
    assert_eq!(g.fusion, 1024 + pass1 + row);

    // A one-layer stem of 4 channels: a 16×16 output map, 2·16·16·4·9·3 =
    // 55296; the patches are then 8×8 of 4 channels: 2·4·256·8 = 16384.
    let mut stem = cfg.clone();
    stem.conv_stem = vec![4];
    assert_eq!(flops::vision(&stem), 55296 + 16384 + 4608);

    // Position terms, 2 heads × 3 coordinates over S = 5 positions and N = 4
    // patches: ask and tell 2 · 2·5·8·6 = 960; g·φ and α·φ 2 · 2·5·4·6 = 480.
    let mut geo = cfg.clone();
    geo.cross_geometry = true;
    assert_eq!(flops::forward(&geo, 3, 2).fusion, fusion + 960 + 480);
}

#[test]
fn flops_of_the_shipped_shape() {
    // The tiny preset's vision side: stem 70.0 M + projection 26.2 M + four
    // blocks of 31.3 M = 221.6 M FLOPs per image.
    let v = flops::vision(&Config::tiny());
    assert_eq!(v, 11_059_200 + 58_982_400 + 26_214_400 + 4 * 31_334_400);
}

/// A tiny checkpoint on disk: fresh weights, a tokenizer trained on a small corpus.
fn tiny_checkpoint(dir: &std::path::Path) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tok = CommandTokenizer::train(data::command_corpus(40, &mut rng).into_iter()).unwrap();
    let mut cfg = Config::tiny();
    cfg.image_size = 64;
    cfg.hidden_size = 16;
    cfg.intermediate_size = 32;
    cfg.vision_layers = 1;
    cfg.text_layers = 1;
    cfg.fusion_layers = 1;
    cfg.vocab_size = tok.vocab_size();
    cfg.action_offset = tok.action_offset();
    cfg.boa_token_id = tok.boa_id();
    cfg.pad_token_id = tok.pad_id();
    let vars = VarMap::new();
    Vla::new(&cfg, SeededInit::var_builder(&vars, 1, &Device::Cpu)).unwrap();
    checkpoint::save(dir, &cfg, &tok, &vars).unwrap();
}

#[test]
fn bench_smoke_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path());
    let reference = dir.path().join("reference");
    // --export-reference writes into an existing directory only.
    std::fs::create_dir(&reference).unwrap();
    let args = BenchArgs {
        device: "cpu".into(),
        dtype: "f32".into(),
        batch: vec![1, 2],
        runs: 1,
        warmup: 0,
        json: true,
        model_dir: Some(dir.path().to_path_buf()),
        attention_sweep: true,
        sweep_lens: vec![16, 40],
        in_process: true,
        train_steps: 1,
        cold_start: 0,
        skip_inference: false,
        export_reference: Some(reference.clone()),
        serve_load: false,
        clients: 8,
        seconds: 10,
        sweep_point: None,
    };
    bench::run(&args).unwrap();
    assert!(reference.join("reference.safetensors").is_file());
    let t =
        candle::safetensors::load(reference.join("reference.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(t["logits"].dims(), &[2, 7, vla_demo::action::ACTION_VOCAB]);

    let bad = BenchArgs {
        runs: 0,
        ..args.clone()
    };
    assert!(bench::run(&bad).unwrap_err().to_string().contains("--runs"));
    let bad = BenchArgs {
        dtype: "f16".into(),
        ..args
    };
    assert!(bench::run(&bad).is_err());
}

/// `bench --train-steps` times the step `vla-demo train` runs: the preset's
/// shards, in a child process with training's thread setting when this
/// one timed inference first, and in this process with `--skip-inference`.
#[test]
fn bench_times_training_steps_as_train_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path());
    let model_dir = dir.path().to_str().unwrap();
    for extra in [
        &["--batch", "1", "--runs", "1", "--warmup", "0"][..],
        &["--skip-inference"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vla-demo"))
            .args([
                "bench",
                "--json",
                "--device",
                "cpu",
                "--model-dir",
                model_dir,
            ])
            .args(["--train-steps", "1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t = &report["train"];
        assert_eq!(t["steps"], 1, "{extra:?}");
        assert_eq!(t["shards"], 2, "{extra:?}");
        // Up to 6 commands on each of 8 scenes; a randomised scene with few
        // objects allows fewer.
        let batch = t["batch"].as_u64().unwrap();
        assert!((1..=48).contains(&batch), "{extra:?}: {batch}");
        assert_eq!(t["scenes"], 8, "{extra:?}");
        assert!(t["gradients"]["median"].as_f64().unwrap() > 0.0);
        assert_eq!(
            report["batches"].as_array().map_or(0, |b| b.len()),
            extra.len() / 6
        );
    }
}

#[test]
fn cpu_kernel_equals_the_candle_ops_version() {
    use vla_demo::engine::long_attention::{tiled_attention, BLOCK_K, BLOCK_Q};
    // tiled_attention takes the CPU kernel for f32 on the CPU.
    for (i, &(b, h, tq, tk, d, causal)) in [
        (1, 4, 196, 196, 32, false),
        (2, 2, 300, 300, 16, true),
        (1, 3, 9, 700, 8, false),
        (1, 1, 129, 129, 5, true),
    ]
    .iter()
    .enumerate()
    {
        let q = randn(b, h, tq, d, 40 + 3 * i as u64);
        let k = randn(b, h, tk, d, 41 + 3 * i as u64);
        let v = randn(b, h, tk, d, 42 + 3 * i as u64);
        let kernel = tiled_attention(&q, &k, &v, causal).unwrap();
        let ops = tiled_attention_blocks(&q, &k, &v, causal, BLOCK_Q, BLOCK_K).unwrap();
        let naive = attention_with(AttentionImpl::Naive, &q, &k, &v, causal).unwrap();
        assert!(max_diff(&kernel, &ops) < 1e-5, "case {i}");
        assert!(max_diff(&kernel, &naive) < 1e-5, "case {i}");
    }
}
