//! Criterion benchmark of the whole model at batch 1 (`cargo bench --bench
//! forward`): the teacher-forced forward pass (what the PyTorch peer times)
//! and `Pipeline::predict` end to end (preprocess, vision, text, greedy
//! decoding). The model is the embedded one, or `VLA_MODEL_DIR`, or, when
//! neither exists, fresh weights of the shipped shape (speed does not depend
//! on the weights' values).

use candle::Device;
use candle_nn::VarMap;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vla_demo::bench::infer::{examples, forced_inputs};
use vla_demo::checkpoint::Source;
use vla_demo::model::vla::Decoding;
use vla_demo::model::{Config, Vla};
use vla_demo::tokens::CommandTokenizer;
use vla_demo::train::init::SeededInit;
use vla_demo::{data, Pipeline};

fn pipeline() -> Pipeline {
    let source = match std::env::var_os("VLA_MODEL_DIR") {
        Some(dir) => Source::Dir(dir.into()),
        None => Source::Embedded,
    };
    if let Ok(p) = Pipeline::load(&source, "cpu") {
        return p;
    }
    eprintln!(
        "no embedded model and no VLA_MODEL_DIR: benchmarking fresh weights of the tiny preset"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tokenizer =
        CommandTokenizer::train(data::command_corpus(200, &mut rng).into_iter()).unwrap();
    let mut cfg = Config::tiny();
    cfg.vocab_size = tokenizer.vocab_size();
    cfg.action_offset = tokenizer.action_offset();
    cfg.boa_token_id = tokenizer.boa_id();
    cfg.pad_token_id = tokenizer.pad_id();
    let vars = VarMap::new();
    let model = Vla::new(&cfg, SeededInit::var_builder(&vars, 1, &Device::Cpu)).unwrap();
    Pipeline {
        model,
        tokenizer,
        device: Device::Cpu,
        origin: "fresh weights".into(),
    }
}

fn forward(c: &mut Criterion) {
    let p = pipeline();
    let ex = examples(1, p.config().image_size).unwrap();
    let images = vec![ex[0].image.clone()];
    let commands = [ex[0].command.as_str()];
    let preds = p
        .predict(&images, &commands, &Decoding::default(), false)
        .unwrap();
    let forced = forced_inputs(&p, &ex, &preds).unwrap();
    let mut g = c.benchmark_group("model_batch1");
    g.sample_size(20);
    g.bench_function("forward", |b| {
        b.iter(|| {
            p.model
                .forward(&forced.inputs, &forced.action_ids)
                .unwrap()
                .logits
        })
    });
    g.bench_function("predict", |b| {
        b.iter(|| {
            p.predict(&images, &commands, &Decoding::default(), false)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
