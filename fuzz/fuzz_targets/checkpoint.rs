//! The checkpoint loader: a small but complete checkpoint (the shipped
//! tokenizer, a tiny config, weights made at start-up) is corrupted as the
//! input says, then loaded. It either loads into a model whose every
//! weight is finite, or gives an error.
//!
//! Input: the first byte picks the mode. 0: the rest is model.safetensors
//! as it is. 1: the rest is config.json. Otherwise the rest is a list of
//! 5-byte patches (offset u32 LE, byte) applied to the valid weights, the
//! last 4 bytes (if any are left) a length to cut the file to.
#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use candle::{DType, Device};
use candle_nn::VarMap;
use libfuzzer_sys::fuzz_target;
use vla_demo::checkpoint::{self, Checkpoint};
use vla_demo::model::init::SeededInit;
use vla_demo::model::{Config, Vla};
use vla_demo::Pipeline;

struct Parts {
    config: Vec<u8>,
    tokenizer: Vec<u8>,
    weights: Vec<u8>,
}

fn parts() -> &'static Parts {
    static P: OnceLock<Parts> = OnceLock::new();
    P.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/context/");
        let tokenizer = std::fs::read(format!("{root}tokenizer.json")).unwrap();
        let shipped: Config =
            serde_json::from_slice(&std::fs::read(format!("{root}config.json")).unwrap()).unwrap();
        let mut cfg = shipped.clone();
        cfg.image_size = 32;
        cfg.patch_size = 16;
        cfg.hidden_size = 8;
        cfg.num_attention_heads = 2;
        cfg.intermediate_size = 8;
        cfg.conv_stem = vec![4];
        cfg.vision_layers = 1;
        cfg.text_layers = 1;
        cfg.fusion_layers = 1;
        let vars = VarMap::new();
        Vla::new(&cfg, SeededInit::var_builder(&vars, 1, &Device::Cpu)).unwrap();
        Parts {
            config: serde_json::to_vec(&cfg).unwrap(),
            tokenizer,
            weights: checkpoint::safetensors_bytes(&vars).unwrap(),
        }
    })
}

fn load(config: &[u8], weights: Vec<u8>) {
    let p = parts();
    let Ok(ck) = Checkpoint::from_parts(config, &p.tokenizer, Cow::Owned(weights), "fuzz".into())
    else {
        return;
    };
    let Ok(model) = ck.load(&Device::Cpu, DType::F32) else {
        return;
    };
    // A model the validator accepts predicts a well-formed action, or
    // refuses with an error (an output that is not finite); never a panic.
    let size = model.config().image_size as u32;
    let vla = Pipeline {
        model,
        tokenizer: ck.tokenizer.clone(),
        device: Device::Cpu,
        origin: "fuzz".into(),
    };
    let img = image::DynamicImage::new_rgb8(size, size);
    if let Ok(pred) = vla.predict(&[img], &["pick up the red cup"], &Default::default(), false) {
        assert!(pred[0].error.is_none(), "{:?}", pred[0].error);
    }
}

fuzz_target!(|data: &[u8]| {
    let p = parts();
    match data.split_first() {
        None => {}
        Some((0, rest)) => load(&p.config, rest.to_vec()),
        Some((1, rest)) => load(rest, p.weights.clone()),
        Some((_, rest)) => {
            let mut w = p.weights.clone();
            let mut chunks = rest.chunks_exact(5);
            for c in chunks.by_ref() {
                let at = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
                if let Some(b) = w.get_mut(at % p.weights.len()) {
                    *b = c[4];
                }
            }
            if let Ok(cut) = <[u8; 4]>::try_from(chunks.remainder()) {
                w.truncate(u32::from_le_bytes(cut) as usize);
            }
            load(&p.config, w);
        }
    }
});
