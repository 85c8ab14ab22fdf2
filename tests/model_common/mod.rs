//! Helpers shared by the model tests (tests/model.rs) and the GPU tests
//! (tests/gpu.rs): a tiny config with its tokenizer, and a batch of plain
//! scenes on any device.
#![allow(dead_code)]

use candle::{backprop::GradStore, Device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vla_demo::data::{self, Example};
use vla_demo::model::{Config, ScoreFn};
use vla_demo::scene::Layout;
use vla_demo::tokens::CommandTokenizer;
use vla_demo::train::{AdamW, LossWeights};

/// The loss weights the tests train with: every term on.
pub const LOSS_WEIGHTS: LossWeights = LossWeights {
    attention: 0.3,
    point: 0.3,
    patch: 0.3,
    patch_object: 2.0,
    each_candidate: 0.3,
    named: 0.3,
    pair_prior: None,
};

/// A model config small enough for a test: 64 px, hidden 32, one vision and
/// one text block, two fusion blocks; the tokenizer fills in its ids.
pub fn tiny(score: ScoreFn) -> (Config, CommandTokenizer) {
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
    cfg.cross_score_fn = score;
    cfg.vocab_size = tok.vocab_size();
    cfg.action_offset = tok.action_offset();
    cfg.boa_token_id = tok.boa_id();
    cfg.pad_token_id = tok.pad_id();
    cfg.validate().unwrap();
    (cfg, tok)
}

/// Two commands on each plain scene of `seeds`, as one batch on `device`.
pub fn batch_on(
    cfg: &Config,
    tok: &CommandTokenizer,
    seeds: std::ops::Range<u64>,
    device: &Device,
) -> data::Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut images = Vec::new();
    let mut examples = Vec::new();
    let mut layouts = Vec::new();
    for seed in seeds {
        let layout = Layout::generate(seed);
        for command in vla_demo::scene::draw::draw_commands(&layout, 2, 0.3, &mut rng) {
            examples.push(Example::new(images.len(), command, &layout, cfg.grid()).unwrap());
        }
        images.push(layout.render(cfg.image_size as u32).unwrap());
        layouts.push(layout);
    }
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    let layouts: Vec<&Layout> = layouts.iter().collect();
    data::make_batch(
        &refs,
        &examples,
        tok,
        cfg,
        1.5,
        data::Grounded::Landmark,
        device,
    )
    .unwrap()
    .with_patch_labels(&layouts, cfg.grid())
    .unwrap()
}

/// Asserts that every trainable variable has a non-zero gradient; returns
/// their names.
pub fn assert_every_variable_has_a_gradient(grads: &GradStore, opt: &AdamW) -> Vec<String> {
    let mut names = Vec::new();
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
        assert!(norm > 0.0, "{name} has a zero gradient");
        names.push(name.clone());
    }
    names
}
