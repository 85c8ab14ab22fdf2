//! config.json (and the training config): any bytes either parse into a
//! config within the documented bounds, or give an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vla_demo::limits::config::*;
use vla_demo::model::Config;
use vla_demo::train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::from_json(text) {
        assert!(cfg.image_size <= MAX_IMAGE_SIZE);
        assert!(cfg.num_patches() <= MAX_PATCHES && cfg.num_patches() >= 1);
        assert!(cfg.hidden_size % cfg.num_attention_heads == 0);
        assert!(cfg.layer_norm_eps > 0.0 && cfg.image_std.iter().all(|s| *s > 0.0));
        assert!(cfg.vision_layers.max(cfg.text_layers).max(cfg.fusion_layers) <= MAX_LAYERS);
    }
    if let Ok(t) = serde_json::from_str::<TrainConfig>(text) {
        if t.validate().is_ok() {
            assert!(t.checkpoint_every >= 1 && t.steps >= 1 && t.shards >= 1);
            let _ = t.lr_at(0);
            let _ = t.lr_at(t.steps);
        }
    }
});
