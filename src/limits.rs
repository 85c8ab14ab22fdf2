//! Every bound on what the program accepts, in one place. Inputs outside
//! them are refused with one `error:` line (exit code 2) before anything
//! large is allocated. docs/RELIABILITY.md lists them; a test checks that
//! the list and these numbers agree.

/// Largest image, in pixels (width × height): a guard against
/// decompression bombs. 40 megapixels decode to at most 320 MB (RGBA, 16 bit).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Longest side of an image over its shorter one: a picture, not a strip.
/// The training world's pictures are at most 2:1; a 40000000×1 strip is
/// within [`MAX_PIXELS`] but its overlay alone would need tens of GB.
pub const MAX_ASPECT: u64 = 16;
/// Largest image file, in bytes.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;
/// Most pixels over all of an animation's frames together: every frame is
/// decoded to check the file, and a 256 MiB file of well-compressed 40
/// megapixel frames would take minutes. A frame counts as at least 64×64
/// pixels, for the work any frame costs. (The bound on a `--batch` file's
/// images together is the same.)
pub const MAX_ANIMATION_PIXELS: u64 = 200_000_000;
/// Longest command, in bytes of UTF-8, checked before tokenising. (The
/// model's own limit, `max_text_len` tokens, is checked after.)
pub const MAX_COMMAND_BYTES: usize = 1024;

/// A checkpoint's config.json and tokenizer.json, and a training config:
/// at most this many bytes each.
pub const MAX_JSON_BYTES: u64 = 64 << 20;
/// A checkpoint's model.safetensors: at most this many bytes.
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// `--batch`: most pairs in one file.
pub const MAX_BATCH_PAIRS: usize = 256;
/// `--batch`: largest pairs file, in bytes.
pub const MAX_BATCH_FILE_BYTES: u64 = 4 << 20;
/// `--batch`: most pixels over all the batch's images together.
pub const MAX_BATCH_PIXELS: u64 = 200_000_000;

/// `--temperature`: 0 (greedy) to this; below
/// [`crate::model::decode::GREEDY_BELOW`] it is greedy too.
pub const MAX_TEMPERATURE: f64 = 100.0;
/// `--top-k`: 1 to this (more than the action vocabulary changes nothing).
pub const MAX_TOP_K: u64 = 100_000;
/// `explain --top`: 1 to this.
pub const MAX_EXPLAIN_TOP: u64 = 1000;
/// `eval --scenes`: 1 to this.
pub const MAX_EVAL_SCENES: u64 = 1_000_000;
/// `scene --count`: 1 to this.
pub const MAX_SCENE_COUNT: u64 = 100_000;
/// `train --steps` and the training config's `steps`: 1 to this.
pub const MAX_TRAIN_STEPS: usize = 10_000_000;

/// `bench --batch`: each size 1 to this.
pub const MAX_BENCH_BATCH: usize = 256;
/// `bench --runs` and `--warmup`: at most this (runs at least 1).
pub const MAX_BENCH_RUNS: usize = 10_000;
/// `bench --sweep-lens`: each length 1 to this (the naive path holds
/// T × T scores per head: 4096 patches take about 520 MiB).
pub const MAX_SWEEP_LEN: usize = 4096;
/// `bench --train-steps` and `--cold-start`: at most this.
pub const MAX_BENCH_REPEATS: usize = 1000;
/// `bench --batch` and `--sweep-lens`: at most this many values.
pub const MAX_LIST_LEN: usize = 16;

/// Bounds on a model's config.json (see `Config::validate`).
pub mod config {
    /// `image_size`, pixels per side.
    pub const MAX_IMAGE_SIZE: usize = 1024;
    /// `(image_size / patch_size)²`.
    pub const MAX_PATCHES: usize = 4096;
    pub const MAX_HIDDEN_SIZE: usize = 4096;
    pub const MAX_HEADS: usize = 64;
    pub const MAX_INTERMEDIATE_SIZE: usize = 16384;
    /// `vision_layers`, `text_layers`, `fusion_layers`: each 1 to this.
    pub const MAX_LAYERS: usize = 64;
    /// `conv_stem`: at most this many convolutions ...
    pub const MAX_STEM_LAYERS: usize = 4;
    /// ... of at most this many channels each.
    pub const MAX_STEM_CHANNELS: usize = 1024;
    /// `stem_context`: 0 to this many stride-1 convolutions.
    pub const MAX_STEM_CONTEXT: usize = 4;
    pub const MAX_VOCAB_SIZE: usize = 1_000_000;
    /// `max_text_len`, tokens.
    pub const MAX_TEXT_LEN: usize = 512;
    /// `image_std`: each channel in `MIN_IMAGE_STD..=MAX_IMAGE_STD`.
    pub const MIN_IMAGE_STD: f32 = 1e-3;
    pub const MAX_IMAGE_STD: f32 = 1e3;
    /// `layer_norm_eps`: in `MIN_LAYER_NORM_EPS..=MAX_LAYER_NORM_EPS`.
    pub const MIN_LAYER_NORM_EPS: f64 = 1e-12;
    pub const MAX_LAYER_NORM_EPS: f64 = 1.0;
    /// `workspace` sides, metres: positive and at most this.
    pub const MAX_WORKSPACE_M: f32 = 100.0;
}

/// Bounds on a training config (see `TrainConfig::validate`).
pub mod train {
    pub const MAX_SCENES_PER_STEP: usize = 1024;
    pub const MAX_COMMANDS_PER_SCENE: usize = 64;
    pub const MAX_SHARDS: usize = 64;
    pub const MAX_EVAL_SCENES: usize = 100_000;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/RELIABILITY.md states every bound; it must state these numbers.
    #[test]
    fn the_documented_limits_are_these() {
        let doc = include_str!("../docs/RELIABILITY.md");
        let mib = |b: u64| format!("{} MiB", b >> 20);
        let expected = [
            format!("at most {MAX_PIXELS} pixels"),
            format!("sides at most {MAX_ASPECT}:1 apart"),
            format!("at most {} on disk", mib(MAX_IMAGE_FILE_BYTES)),
            format!("an animation's frames at most {MAX_ANIMATION_PIXELS} pixels together"),
            format!("at most {MAX_COMMAND_BYTES} bytes"),
            format!(
                "at most {MAX_BATCH_PAIRS} pairs, {}, {MAX_BATCH_PIXELS} pixels",
                mib(MAX_BATCH_FILE_BYTES)
            ),
            format!(
                "| `--temperature` | 0 to {MAX_TEMPERATURE} (below {:e} decodes greedily",
                crate::model::decode::GREEDY_BELOW
            ),
            format!("| `--top-k` | 1 to {MAX_TOP_K} |"),
            format!("| `explain --top` | 1 to {MAX_EXPLAIN_TOP} |"),
            format!("1 to {MAX_EVAL_SCENES};"),
            format!("| `scene --count` | 1 to {MAX_SCENE_COUNT} |"),
            format!("| 1 to {MAX_TRAIN_STEPS} |"),
            format!("each 1 to {MAX_BENCH_BATCH}, at most {MAX_LIST_LEN} values"),
            format!("each 1 to {MAX_SWEEP_LEN}, at most {MAX_LIST_LEN} values"),
            format!("1 to {MAX_BENCH_RUNS} / 0 to {MAX_BENCH_RUNS}"),
            format!("0 to {MAX_BENCH_REPEATS} |"),
            format!("at most {} each", mib(MAX_JSON_BYTES)),
            format!("at most {} GiB", MAX_WEIGHTS_BYTES >> 30),
            format!("| `image_size` | 1 to {},", config::MAX_IMAGE_SIZE),
            format!("| 1 to {} |", config::MAX_PATCHES),
            format!("| `hidden_size` | 1 to {},", config::MAX_HIDDEN_SIZE),
            format!("| `num_attention_heads` | 1 to {} |", config::MAX_HEADS),
            format!(
                "| `intermediate_size` | 1 to {} |",
                config::MAX_INTERMEDIATE_SIZE
            ),
            format!("| 1 to {} each,", config::MAX_LAYERS),
            format!(
                "at most {} convolutions of 1 to {} channels",
                config::MAX_STEM_LAYERS,
                config::MAX_STEM_CHANNELS
            ),
            format!("| `stem_context` | 0 to {} |", config::MAX_STEM_CONTEXT),
            format!("at most {},", config::MAX_VOCAB_SIZE),
            format!("| `max_text_len` | 1 to {} |", config::MAX_TEXT_LEN),
            format!(
                "| each {} to {} |",
                config::MIN_IMAGE_STD,
                config::MAX_IMAGE_STD
            ),
            format!(
                "| `layer_norm_eps` | {:e} to {} |",
                config::MIN_LAYER_NORM_EPS,
                config::MAX_LAYER_NORM_EPS
            ),
            format!("at most {} m |", config::MAX_WORKSPACE_M),
            format!("`scenes_per_step` 1 to\n{}", train::MAX_SCENES_PER_STEP),
            format!(
                "`commands_per_scene` 1 to {}",
                train::MAX_COMMANDS_PER_SCENE
            ),
            format!("`shards` 1 to {}", train::MAX_SHARDS),
            format!("`eval_scenes` 1 to {}", train::MAX_EVAL_SCENES),
        ];
        let missing: Vec<&String> = expected
            .iter()
            .filter(|e| !doc.contains(e.as_str()))
            .collect();
        assert!(missing.is_empty(), "docs/RELIABILITY.md lacks {missing:?}");
    }
}
