//! The model's contracts on a tiny config: attention through the real
//! module, the causal mask, gradients, checkpoints (directory, hf-hub cache,
//! corrupt files) and batching.

use std::path::Path;

mod model_common;
use model_common::{assert_every_variable_has_a_gradient, batch_on, tiny, LOSS_WEIGHTS};

use candle::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use vla_demo::checkpoint::{self, Checkpoint, Source};
use vla_demo::data;
use vla_demo::model::attention::causal_mask;
use vla_demo::model::record::Site;
use vla_demo::model::vla::{Decoding, Inputs};
use vla_demo::model::{Attention, Config, ScoreFn, Vla};
use vla_demo::tokens::CommandTokenizer;
use vla_demo::train::init::SeededInit;
use vla_demo::train::{self, AdamW, TrainConfig};

fn model(cfg: &Config, seed: u64) -> (Vla, VarMap) {
    let vars = VarMap::new();
    let m = Vla::new(cfg, SeededInit::var_builder(&vars, seed, &Device::Cpu)).unwrap();
    (m, vars)
}

/// An attention module whose Q, K, V and output projections are constants.
fn constant_attention(hidden: usize, heads: usize, score: ScoreFn) -> Attention {
    let dev = Device::Cpu;
    let mut t = std::collections::HashMap::new();
    let eye = Tensor::eye(hidden, DType::F32, &dev).unwrap();
    for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        t.insert(format!("{p}.weight"), eye.clone());
        t.insert(
            format!("{p}.bias"),
            Tensor::zeros(hidden, DType::F32, &dev).unwrap(),
        );
    }
    t.insert(
        "score_v".into(),
        Tensor::ones((heads, hidden / heads), DType::F32, &dev).unwrap(),
    );
    Attention::new(
        hidden,
        heads,
        score,
        Site::FusionCross,
        VarBuilder::from_tensors(t, DType::F32, &dev),
    )
    .unwrap()
}

#[test]
fn worked_example_through_the_real_attention_module() {
    // One query and three keys with identity projections and the dot score:
    // the scores are q·k = [2, 5, 1], the notes' worked example.
    let dev = Device::Cpu;
    let attn = constant_attention(1, 1, ScoreFn::Dot);
    let q = Tensor::new(&[[[1f32]]], &dev).unwrap(); // (B=1, Tq=1, C=1)
    let keys = Tensor::new(&[[[2f32], [5.], [1.]]], &dev).unwrap(); // (1, 3, 1)
    let (out, w) = attn.forward(&q, Some(&keys), None).unwrap();
    let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    for (got, want) in w.iter().zip([0.0466, 0.9362, 0.0171]) {
        assert!((got - want).abs() < 5e-5, "{w:?}");
    }
    // Step 3: the context is the weighted sum of the values [2, 5, 1].
    let c = out.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!(
        (c - (0.0466 * 2.0 + 0.9362 * 5.0 + 0.0171 * 1.0)).abs() < 1e-3,
        "{c}"
    );
}

#[test]
fn every_score_function_runs_through_the_module() {
    let dev = Device::Cpu;
    let xs = Tensor::new(&[[[1f32, 0., 1., 0.], [0., 2., 0., 1.]]], &dev).unwrap();
    for score in [ScoreFn::Additive, ScoreFn::Dot, ScoreFn::ScaledDot] {
        let attn = constant_attention(4, 2, score);
        let (out, w) = attn.forward(&xs, None, None).unwrap();
        assert_eq!(out.dims(), &[1, 2, 4]);
        assert_eq!(w.dims(), &[1, 2, 2, 2]);
        let sums: Vec<f32> = w
            .sum(D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
            "{score:?}: {sums:?}"
        );
    }
}

#[test]
fn causal_rows_sum_to_one_and_masked_entries_are_zero() {
    let dev = Device::Cpu;
    let attn = constant_attention(4, 2, ScoreFn::ScaledDot);
    let xs = Tensor::randn(0f32, 1., (2, 5, 4), &dev).unwrap();
    let mask = causal_mask(5, &dev).unwrap();
    let (_, w) = attn.forward(&xs, None, Some(&mask)).unwrap();
    let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    for (r, row) in w.chunks(5).enumerate() {
        let i = r % 5;
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for (j, x) in row.iter().enumerate() {
            if j > i {
                assert_eq!(*x, 0.0, "query {i} sees the future key {j}");
            }
        }
    }
}

#[test]
fn changing_a_later_token_leaves_earlier_outputs_bit_identical() {
    let (cfg, tok) = tiny(ScoreFn::ScaledDot);
    let (m, _) = model(&cfg, 3);
    let ids = tok.encode("pick up the red cup").unwrap().ids;
    let n = ids.len();
    let mut changed = ids.clone();
    changed[n - 2] = tok.encode("ball").unwrap().ids[0];
    let run = |ids: &[u32]| {
        let t = Tensor::from_vec(ids.to_vec(), (1, n), &Device::Cpu).unwrap();
        let h = m.encode_text(&t, &[n]).unwrap();
        h.squeeze(0).unwrap().to_vec2::<f32>().unwrap()
    };
    let (a, b) = (run(&ids), run(&changed));
    for t in 0..n - 2 {
        assert_eq!(
            a[t],
            b[t],
            "position {t} moved when token {} changed",
            n - 2
        );
    }
    assert_ne!(a[n - 2], b[n - 2]);
}

#[test]
fn every_trainable_variable_gets_a_gradient() {
    for score in [ScoreFn::ScaledDot, ScoreFn::Additive] {
        let (mut cfg, tok) = tiny(score);
        // The pointer's patch offsets start at zero: they must still learn.
        cfg.patch_offsets = score == ScoreFn::Additive;
        cfg.patch_labels = score == ScoreFn::Additive;
        cfg.fusion_reads_labels = score == ScoreFn::Additive;
        cfg.named_match = score == ScoreFn::Additive;
        cfg.colour_from_embedding = score == ScoreFn::Additive;
        // So must the stem's stride-1 context convolutions.
        cfg.stem_context = usize::from(score == ScoreFn::Additive);
        let (m, vars) = model(&cfg, 5);
        let b = batch_on(&cfg, &tok, 0..8, &Device::Cpu);
        // The batch grounds some landmark words too, so that term is in the loss.
        let grounded_words = b.word_mask.as_ref().unwrap().sum_all().unwrap();
        assert!(grounded_words.to_scalar::<f32>().unwrap() > 0.0);
        let (loss, _) = train::loss(&m, &b, LOSS_WEIGHTS).unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = AdamW::new(&vars).unwrap();
        let names = assert_every_variable_has_a_gradient(&grads, &opt);
        assert!(names.iter().any(|n| n.contains("vision.blocks.0.norm1")));
        assert!(names
            .iter()
            .any(|n| n.contains("fusion.blocks.1.cross_attn.q_proj")));
        assert!(names.iter().any(|n| n.ends_with("geometry.ask.weight")));
        assert!(names.iter().any(|n| n.ends_with("geometry.tell.weight")));
        if score == ScoreFn::Additive {
            assert!(names.iter().any(|n| n.ends_with("cross_attn.score_v")));
            assert!(names
                .iter()
                .any(|n| n.ends_with("pointer.patch_offset.weight")));
            assert!(names.iter().any(|n| n.ends_with("patch_head.weight")));
            assert!(names.iter().any(|n| n.ends_with("label_embed.weight")));
            assert!(names.iter().any(|n| n.ends_with("named.read.weight")));
            assert!(names.iter().any(|n| n.ends_with("named.gate.weight")));
            assert!(names.iter().any(|n| n.ends_with("named.weight_change.1")));
            assert!(names.iter().any(|n| n.ends_with("vision.stem.2.weight")));
            assert!(names.iter().any(|n| n.ends_with("colour_head.weight")));
        }
        opt.step(&grads, 1e-3, 0.01, 1.0).unwrap();
    }
}

/// With `fusion_reads_labels` the patch head's readings reach the fusion
/// head's image memory, and through it the logits; with its layer zeroed
/// the model is the one without it, weight for weight.
#[test]
fn the_fusion_head_reads_the_patch_heads_readings_only_when_asked() {
    let (mut cfg, tok) = tiny(ScoreFn::ScaledDot);
    cfg.patch_labels = true;
    cfg.fusion_reads_labels = true;
    let (m, vars) = model(&cfg, 5);
    let without = Config {
        fusion_reads_labels: false,
        ..cfg.clone()
    };
    let off = Vla::new(&without, SeededInit::var_builder(&vars, 5, &Device::Cpu)).unwrap();
    let b = batch_on(&cfg, &tok, 0..4, &Device::Cpu);
    let logits = |m: &Vla| -> Vec<f32> {
        let out = m.forward(&b.inputs, &b.action_in).unwrap();
        out.logits.flatten_all().unwrap().to_vec1().unwrap()
    };
    let apart = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(apart(&logits(&m), &logits(&off)) > 1e-4);
    for (name, var) in vars.data().lock().unwrap().iter() {
        if name.starts_with("label_embed.") {
            var.set(&var.zeros_like().unwrap()).unwrap();
        }
    }
    assert!(apart(&logits(&m), &logits(&off)) < 1e-6);
    cfg.patch_labels = false;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("fusion_reads_labels"), "{err}");
}

/// The grounding term is the mean of −log(attention mass on the object)
/// over every supervised query: the action queries of the last fusion
/// block and, with landmark words, the first block's word queries, counted
/// alike. Recomputed here by hand from the model's own attention.
#[test]
fn the_grounding_term_counts_landmark_words_like_action_queries() {
    let (cfg, tok) = tiny(ScoreFn::ScaledDot);
    let (m, _) = model(&cfg, 5);
    let mut b = batch_on(&cfg, &tok, 0..8, &Device::Cpu);
    let out = m.forward(&b.inputs, &b.action_in).unwrap();
    let terms = |cross: &Tensor, mask: &Tensor| -> Vec<f32> {
        let w = cross.mean(1).unwrap().to_vec3::<f32>().unwrap();
        let mask = mask.to_vec3::<f32>().unwrap();
        let mut out = Vec::new();
        for (wi, mi) in w.iter().zip(&mask) {
            for (q, row) in wi.iter().zip(mi) {
                if row.iter().any(|&v| v > 0.0) {
                    let mass: f32 = q.iter().zip(row).map(|(a, b)| a * b).sum();
                    out.push(-(mass + 1e-6).ln());
                }
            }
        }
        out
    };
    let actions = terms(&out.action_cross, &b.target_mask);
    let words = terms(&out.word_cross, b.word_mask.as_ref().unwrap());
    assert!(!actions.is_empty() && !words.is_empty());
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (_, with) = train::loss(&m, &b, LOSS_WEIGHTS).unwrap();
    let both: Vec<f32> = actions.iter().chain(&words).copied().collect();
    assert!(
        (with.attention - mean(&both)).abs() < 1e-4,
        "{} {}",
        with.attention,
        mean(&both)
    );
    b.word_mask = None;
    let (_, without) = train::loss(&m, &b, LOSS_WEIGHTS).unwrap();
    assert!((without.attention - mean(&actions)).abs() < 1e-4);
    assert!((with.attention - without.attention).abs() > 1e-3);
}

/// The vendored candle-core stores the first gradient to reach a node as it
/// is and adds from the second on (vendor/README.md). A variable reached by
/// several paths, through add, sub (both sides), mul and a broadcast, must
/// still get the sum of all of them.
#[test]
fn the_backward_pass_sums_every_path_into_a_gradient() {
    let x = candle::Var::new(&[1.5f32, -2.0, 0.25], &Device::Cpu).unwrap();
    let y = candle::Var::new(&[0.5f32, 3.0, -1.0], &Device::Cpu).unwrap();
    let (xs, ys) = (x.as_tensor(), y.as_tensor());
    let sum = |t: Tensor| t.sum_all().unwrap();
    // f = Σ(x+x)·x − Σy·x − Σ(x−y) + Σ(y−x) + Σ broadcast(x to 2×3)
    let f = [
        sum(((xs + xs).unwrap() * xs).unwrap()),
        sum((ys * xs).unwrap()).neg().unwrap(),
        sum((xs - ys).unwrap()).neg().unwrap(),
        sum((ys - xs).unwrap()),
        sum(xs.unsqueeze(0).unwrap().broadcast_as((2, 3)).unwrap()),
    ]
    .into_iter()
    .reduce(|a, b| (a + b).unwrap())
    .unwrap();
    let grads = f.backward().unwrap();
    let got = |v: &candle::Var| grads.get(v).unwrap().to_vec1::<f32>().unwrap();
    // df/dx = 4x − y − 1 − 1 + 2 = 4x − y; df/dy = −x + 1 + 1 = 2 − x.
    assert_eq!(got(&x), [5.5, -11.0, 2.0]);
    assert_eq!(got(&y), [0.5, 4.0, 1.75]);
}

/// The vendored candle-core lets gemm write a product's output without
/// zeroing it first (vendor/README.md). Freed memory full of other values,
/// reused for the next product, must not show through, in a plain, a
/// batched and a batch-folded product; and an inner dimension of 0 must
/// still give zeros.
#[test]
fn a_product_written_into_recycled_memory_is_exact() {
    let dev = Device::Cpu;
    let naive = |a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize)| -> Vec<f32> {
        (0..m * n)
            .map(|i| (0..k).map(|j| a[i / n * k + j] * b[j * n + i % n]).sum())
            .collect()
    };
    let (m, k, n) = (7, 5, 9);
    let a: Vec<f32> = (0..2 * m * k).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
    for round in 0..20 {
        // Fill and free buffers of the output's size, so the allocator has
        // dirty memory of that size to hand out.
        drop(Tensor::full(f32::NAN, (2, m, n), &dev).unwrap());
        drop(Tensor::full(1e30f32, (m, n), &dev).unwrap());
        let at = Tensor::from_vec(a.clone(), (2, m, k), &dev).unwrap();
        let bt = Tensor::from_vec(b.clone(), (k, n), &dev).unwrap();
        // (2, m, k)·(k, n) broadcast: the batch folds into the rows.
        let folded = at.broadcast_matmul(&bt).unwrap();
        let batched = at
            .matmul(&bt.unsqueeze(0).unwrap().repeat((2, 1, 1)).unwrap())
            .unwrap();
        let plain = at.get(1).unwrap().matmul(&bt).unwrap();
        let want: Vec<f32> = [
            naive(&a[..m * k], &b, (m, k, n)),
            naive(&a[m * k..], &b, (m, k, n)),
        ]
        .concat();
        assert_eq!(
            folded.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want,
            "round {round}"
        );
        assert_eq!(
            batched.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want,
            "round {round}"
        );
        assert_eq!(
            plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want[m * n..],
            "round {round}"
        );
    }
    let empty = Tensor::zeros((3, 0), DType::F32, &dev)
        .unwrap()
        .matmul(&Tensor::zeros((0, 4), DType::F32, &dev).unwrap())
        .unwrap();
    assert_eq!(empty.to_vec2::<f32>().unwrap(), vec![vec![0f32; 4]; 3]);
}

fn save_dir(cfg: &Config, tok: &CommandTokenizer, vars: &VarMap, dir: &Path) {
    checkpoint::save(dir, cfg, tok, vars).unwrap();
}

fn logits(m: &Vla, b: &data::Batch) -> Vec<f32> {
    let out = m.forward(&b.inputs, &b.action_in).unwrap();
    out.logits.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn save_then_load_gives_identical_logits_from_a_dir_and_a_hub_cache() {
    let (cfg, tok) = tiny(ScoreFn::ScaledDot);
    let (m, vars) = model(&cfg, 9);
    let b = batch_on(&cfg, &tok, 10..12, &Device::Cpu);
    let want = logits(&m, &b);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    save_dir(&cfg, &tok, &vars, &dir);
    let loaded = Checkpoint::from_dir(&dir)
        .unwrap()
        .load(&Device::Cpu, DType::F32)
        .unwrap();
    // Loaded weights are plain tensors, so the CPU runs the fused inference
    // kernels (src/engine) where the trainable model ran candle's
    // ops: the same function, summed in a different order.
    let from_dir = logits(&loaded, &b);
    // Relative to 1 or the logit: the grammar mask puts forbidden tokens near
    // -1e4, where one f32 step is already ~1e-3.
    let off = from_dir
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(off < 1e-4, "loaded logits are {off} off");
    let want = from_dir;

    // A Hugging Face cache laid out as hf-hub writes it:
    // models--owner--name/{refs/main, snapshots/<commit>/<files>}.
    let cache = tmp.path().join("hub");
    let repo = cache.join("models--learner--vla-tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    for f in [
        checkpoint::CONFIG,
        checkpoint::WEIGHTS,
        checkpoint::TOKENIZER,
    ] {
        std::fs::copy(dir.join(f), snap.join(f)).unwrap();
    }
    let source = Source::Hub {
        id: "learner/vla-tiny".into(),
        revision: "main".into(),
        cache_dir: Some(cache.clone()),
    };
    let hub = Checkpoint::open(&source).unwrap();
    assert_eq!(hub.origin, "learner/vla-tiny@main");
    assert_eq!(
        logits(&hub.load(&Device::Cpu, DType::F32).unwrap(), &b),
        want
    );
}

#[test]
fn broken_checkpoints_get_errors_that_name_the_problem() {
    let (cfg, tok) = tiny(ScoreFn::ScaledDot);
    let (_, vars) = model(&cfg, 1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    save_dir(&cfg, &tok, &vars, &dir);
    let err = |dir: &Path| match Checkpoint::from_dir(dir)
        .and_then(|c| c.load(&Device::Cpu, DType::F32))
    {
        Ok(_) => panic!("loaded a broken checkpoint"),
        Err(e) => format!("{e:#}"),
    };

    // Truncated weights.
    let w = std::fs::read(dir.join(checkpoint::WEIGHTS)).unwrap();
    std::fs::write(dir.join(checkpoint::WEIGHTS), &w[..w.len() / 2]).unwrap();
    let e = err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    // A tensor of the wrong shape: the message names the key and the shapes.
    std::fs::write(dir.join(checkpoint::WEIGHTS), &w).unwrap();
    let mut bigger = cfg.clone();
    bigger.intermediate_size = 48;
    std::fs::write(
        dir.join(checkpoint::CONFIG),
        serde_json::to_string(&bigger).unwrap(),
    )
    .unwrap();
    let e = err(&dir);
    assert!(
        e.contains("does not fit") && e.contains("fc1") && e.contains("48"),
        "{e}"
    );

    // A missing file, and a corrupt config.
    std::fs::remove_file(dir.join(checkpoint::TOKENIZER)).unwrap();
    assert!(err(&dir).contains("tokenizer.json"));
    std::fs::write(dir.join(checkpoint::CONFIG), "{not json").unwrap();
    assert!(err(&dir).contains("config.json"));
    assert!(err(&tmp.path().join("nowhere")).contains("does not exist"));
}

#[test]
fn a_batch_gives_the_same_actions_as_single_runs() {
    let (cfg, tok) = tiny(ScoreFn::ScaledDot);
    let (m, _) = model(&cfg, 2);
    let b = batch_on(&cfg, &tok, 20..24, &Device::Cpu);
    let all = m.generate(&b.inputs, &Decoding::default(), false).unwrap();
    let n = b.inputs.text_lens.len();
    assert!(n >= 4);
    let index: Vec<u32> = b.inputs.image_index.as_ref().unwrap().to_vec1().unwrap();
    for (i, &image) in index.iter().enumerate().take(n) {
        let len = b.inputs.text_lens[i];
        let t = b.inputs.text_ids.dim(1).unwrap();
        let single = Inputs {
            pixels: b.inputs.pixels.narrow(0, image as usize, 1).unwrap(),
            image_index: None,
            text_ids: b
                .inputs
                .text_ids
                .narrow(0, i, 1)
                .unwrap()
                .narrow(1, t - len, len)
                .unwrap(),
            text_lens: vec![len],
            knockout: None,
        };
        let one = m.generate(&single, &Decoding::default(), false).unwrap();
        let tokens = |g: &vla_demo::model::vla::Generated, k: usize| {
            g.steps[k].iter().map(|s| s.token).collect::<Vec<_>>()
        };
        assert_eq!(tokens(&all, i), tokens(&one, 0), "example {i}");
    }
}

/// The one policy: a model built for training takes the reference path;
/// a loaded one runs the engine unless the maps are wanted, and both paths
/// decode the same actions from logits within 1e-4.
#[test]
fn the_policy_picks_one_path_per_run_and_both_paths_agree() {
    use vla_demo::engine::Path as RunPath;
    let (cfg, _) = tiny(ScoreFn::ScaledDot);
    let (trained, _) = model(&cfg, 2);
    assert_eq!(
        trained.path(false),
        RunPath::Reference,
        "no engine while training"
    );
    let ckpt = Checkpoint::embedded().unwrap();
    let loaded = ckpt.load(&Device::Cpu, DType::F32).unwrap();
    let tok = ckpt.tokenizer;
    assert_eq!(loaded.path(false), RunPath::CpuEngine);
    assert_eq!(loaded.path(true), RunPath::Reference);
    let b = batch_on(loaded.config(), &tok, 30..33, &Device::Cpu);
    let fast = loaded
        .generate(&b.inputs, &Decoding::default(), false)
        .unwrap();
    let mapped = loaded
        .generate(&b.inputs, &Decoding::default(), true)
        .unwrap();
    assert_eq!(
        (fast.path, mapped.path),
        (RunPath::CpuEngine, RunPath::Reference)
    );
    assert!(fast.maps.is_none());
    let maps = mapped.maps.as_ref().unwrap();
    assert_eq!(maps.vision.len(), loaded.config().vision_layers);
    assert_eq!(maps.text.len(), loaded.config().text_layers);
    assert_eq!(maps.fusion_cross.len(), loaded.config().fusion_layers);
    for (a, b) in fast.steps.iter().zip(&mapped.steps) {
        let tokens =
            |s: &[vla_demo::model::vla::Step]| s.iter().map(|s| s.token).collect::<Vec<_>>();
        assert_eq!(tokens(a), tokens(b));
    }
    let diff = (fast.boa_cross - mapped.boa_cross)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "the engine and the reference differ by {diff}");
}

/// A two-step run of the tiny model, cheap enough for a test.
fn two_step_config() -> TrainConfig {
    let mut cfg: TrainConfig =
        serde_json::from_str(&std::fs::read_to_string("configs/train-tiny.json").unwrap()).unwrap();
    cfg.model = tiny(ScoreFn::ScaledDot).0;
    cfg.steps = 2;
    cfg.warmup_steps = 1;
    cfg.scenes_per_step = 2;
    cfg.commands_per_scene = 2;
    cfg.eval_every = 0;
    cfg.checkpoint_every = 1;
    cfg
}

/// Trains `cfg` into `dir/out` (its config written beside it, as
/// `out.json`), up to `steps` or the config's end.
fn train_into(
    cfg: &TrainConfig,
    dir: &Path,
    out: &str,
    resume: bool,
    steps: Option<usize>,
) -> anyhow::Result<std::path::PathBuf> {
    let config = dir.join(format!("{out}.json"));
    std::fs::write(&config, serde_json::to_string(cfg).unwrap()).unwrap();
    let out = dir.join(out);
    train::run(&train::TrainArgs {
        config,
        out: out.clone(),
        resume,
        steps,
        quiet: true,
        device: Device::Cpu,
    })?;
    Ok(out)
}

#[test]
fn the_same_seed_trains_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = two_step_config();
    let run = |out: &str, resume: bool, steps: Option<usize>| {
        let dir = train_into(&cfg, tmp.path(), out, resume, steps).unwrap();
        std::fs::read(dir.join(checkpoint::WEIGHTS)).unwrap()
    };
    let a = run("a", false, None);
    assert_eq!(a, run("b", false, None));
    // Resuming from step 1 reaches the same weights as running straight to 2.
    run("c", false, Some(1));
    assert_eq!(run("c", true, Some(2)), a);
}

/// A warm start from a trained run, with a patch head and its readings
/// added and nothing learnt (learning rate 0): the shared weights are the
/// run's, the new ones a fresh run's. A model of another width does not
/// fit: one error, and nothing is written.
#[test]
fn a_warm_start_takes_the_weights_it_shares_and_starts_the_rest_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = two_step_config();
    let from = train_into(&cfg, tmp.path(), "a", false, None).unwrap();
    let weights = |dir: &Path| {
        candle::safetensors::load(dir.join(checkpoint::WEIGHTS), &Device::Cpu).unwrap()
    };
    let mut grown = cfg.clone();
    (grown.learning_rate, grown.min_learning_rate) = (0.0, 0.0);
    grown.model.patch_labels = true;
    grown.model.fusion_reads_labels = true;
    let fresh = weights(&train_into(&grown, tmp.path(), "fresh", false, None).unwrap());
    grown.warm_start = Some(from.clone());
    let warm = weights(&train_into(&grown, tmp.path(), "warm", false, None).unwrap());
    let a = weights(&from);
    let apart = |x: &Tensor, y: &Tensor| -> f32 {
        (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert!(warm.keys().any(|k| k.starts_with("label_embed.")));
    for (name, t) in &warm {
        assert_eq!(apart(t, a.get(name).unwrap_or(&fresh[name])), 0.0, "{name}");
        if a.contains_key(name) && name.ends_with("weight") {
            assert!(apart(t, &fresh[name]) > 0.0, "{name} was not warm-started");
        }
    }
    grown.model.hidden_size *= 2;
    grown.model.intermediate_size *= 2;
    let err = train_into(&grown, tmp.path(), "wide", false, None).unwrap_err();
    assert!(format!("{err:#}").contains("has shape"), "{err:#}");
    assert!(!tmp.path().join("wide").exists());
}

/// `eval` scores the patch head of a model that has one, and says nothing
/// of it for a model without.
#[test]
fn eval_reads_the_patch_head_only_where_there_is_one() {
    let (mut cfg, tok) = tiny(ScoreFn::ScaledDot);
    let scenes = vla_demo::eval::Scenes {
        split: vla_demo::eval::Split::Iid,
        first_seed: None,
        count: 3,
    };
    for head in [false, true] {
        cfg.patch_labels = head;
        let (m, _) = model(&cfg, 4);
        let r = vla_demo::eval::evaluate(&m, &tok, scenes, &Device::Cpu, None).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(r.patch_labels.is_some(), head);
        assert_eq!(json.contains("\"patch_labels\""), head);
        assert_eq!(r.table().contains("the patch head read"), head);
        if let Some(p) = r.patch_labels {
            let n = 3 * cfg.num_patches();
            assert_eq!(p.object_patches + p.table_patches, n);
            assert!(p.object_patches > 0 && p.table_patches > 0, "{p:?}");
            assert!((0.0..=1.0).contains(&p.both) && p.both <= p.color.min(p.shape));
        }
    }
}

/// With `colour_from_embedding` the patch head's colours are read from the
/// embedding's tokens alone and its shapes from the output alone; such a
/// model runs on the reference path (the engine returns only the output).
#[test]
fn the_colours_come_from_the_embedding_when_asked() {
    use vla_demo::grid::{PATCH_COLORS, PATCH_SHAPES};
    let mut cfg = Config::tiny();
    cfg.patch_labels = true;
    cfg.colour_from_embedding = true;
    let (m, _vars) = model(&cfg, 6);
    let (n, c) = (4, cfg.hidden_size);
    let t = |v: f64| (Tensor::ones((1, n, c), DType::F32, &Device::Cpu).unwrap() * v).unwrap();
    let read = |patches: &Tensor, early: &Tensor| -> (Vec<f32>, Vec<f32>) {
        let l = m.patch_labels(patches, Some(early)).unwrap().unwrap();
        let part = |first, len| -> Vec<f32> {
            let p = l.narrow(2, first, len).unwrap();
            p.flatten_all().unwrap().to_vec1().unwrap()
        };
        (part(0, PATCH_COLORS), part(PATCH_COLORS, PATCH_SHAPES))
    };
    let (colours, shapes) = read(&t(1.0), &t(2.0));
    let (colours_b, shapes_b) = read(&t(-3.0), &t(2.0)); // another output
    let (colours_c, shapes_c) = read(&t(1.0), &t(-5.0)); // another embedding
    assert_eq!(colours, colours_b);
    assert_ne!(shapes, shapes_b);
    assert_ne!(colours, colours_c);
    assert_eq!(shapes, shapes_c);
    let m = m.compile().unwrap();
    assert_eq!(m.path(false), vla_demo::engine::Path::Reference);
}
