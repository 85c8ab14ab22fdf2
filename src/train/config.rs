//! The training config (`configs/train-*.json`): the model, the data mix,
//! the optimiser's schedule, each number checked against its bound.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::Config;
use crate::scene::draw::EVAL_SEED_START;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture; vocabulary ids are filled in from the tokenizer.
    pub model: Config,
    pub steps: usize,
    pub scenes_per_step: usize,
    pub commands_per_scene: usize,
    pub learning_rate: f64,
    pub min_learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
    /// Training scene seeds, `[start, end)`; must stay below the held-out range.
    pub train_seeds: [u64; 2],
    pub relational_share: f64,
    /// Curriculum: how often an English relational command that is not
    /// "next to" is redrawn as one (see [`crate::scene::draw::draw_commands_with`]).
    #[serde(default)]
    pub next_to_boost_en: f64,
    pub attention_loss_weight: f64,
    /// Which queries that term supervises: `"boa"` (the default, as
    /// before), `"coordinates"`, `"landmark"` (the coordinates and the
    /// words that name a landmark), or `"candidates"` (the landmark's, and
    /// an ambiguous command's `<boa>` on every object its name fits); see
    /// [`crate::data::Grounded`].
    #[serde(default)]
    pub grounded: crate::data::Grounded,
    /// Weight of the candidate balance term (needs `grounded:
    /// "candidates"`): an ambiguous command's `<boa>` asked to read each
    /// object its name fits alike, not just one of them. 0, as before,
    /// leaves the split to the model.
    #[serde(default)]
    pub each_candidate_weight: f64,
    /// Weight of the pointer term: how far, in patches, the pointer's point
    /// lies from each x and y target (0, as before, leaves the pointer to the
    /// cross-entropy alone).
    #[serde(default)]
    pub point_loss_weight: f64,
    /// Weight of the patch-label term: the cross-entropy of the model's
    /// patch head (`patch_labels` in the model config) against the colour
    /// and the shape of the object under each patch. 0, as before, trains
    /// the vision encoder through the action alone.
    #[serde(default)]
    pub patch_label_weight: f64,
    /// How much more a patch on an object counts in that term than a patch
    /// of the table (most patches show the table; 1, the default, counts
    /// them all alike).
    #[serde(default = "one_f64")]
    pub patch_object_weight: f64,
    /// Logit adjustment of the patch-label term by the training stream's
    /// colour × shape prior, with this strength τ ([`super::PairPrior`]):
    /// the patch head's shapes stop leaning on colour, and its colours on
    /// shape. 0, as before, adds nothing.
    #[serde(default)]
    pub pair_prior: f64,
    /// Weight of the named-object term: the cross-entropy of the model's
    /// reading of what each command names (`named_match` in the model
    /// config) against the colour and shape it does name.
    #[serde(default)]
    pub named_weight: f64,
    /// Share of scenes drawn from the randomised world (the rest are plain).
    #[serde(default)]
    pub random_share: f64,
    /// Curriculum: `[a, b]` steps. Before step `a` every scene is plain; from
    /// `a` to `b` the randomised share grows linearly to `random_share`.
    /// `[0, 0]` (the default) uses `random_share` from the first step.
    #[serde(default)]
    pub random_ramp: [usize; 2],
    /// Share of commands replaced by ones to refuse (absent or ambiguous).
    #[serde(default)]
    pub refusal_share: f64,
    /// Share of the commands to refuse that are ambiguous (the rest name an
    /// absent object).
    #[serde(default = "quarter")]
    pub ambiguous_share: f64,
    /// Share of the absent ones drawn as hard negatives: a colour and a
    /// shape that are both on the table, but never together.
    #[serde(default)]
    pub hard_negative_share: f64,
    /// Keep the held-out colour × shape pairs
    /// ([`crate::scene::random::HELD_OUT_PAIRS`]) out of every scene and command.
    #[serde(default)]
    pub hold_out_pairs: bool,
    /// Randomisation added to the world later
    /// ([`crate::scene::random::Extras`]): `{"finishes": true, "casts":
    /// true}`. Off (the default) is the world the older checkpoints were
    /// trained on.
    #[serde(default)]
    pub random_extras: crate::scene::random::Extras,
    /// Spread of the x/y bin targets, in bins (0 = plain one-hot).
    pub bin_sigma: f32,
    /// Data parallelism: each step's scenes are split into this many shards,
    /// run forward and backward on their own threads, and the gradients are
    /// summed. candle's CPU element-wise kernels are single-threaded, so on a
    /// 2-core machine two shards nearly double the throughput.
    #[serde(default = "one")]
    pub shards: usize,
    /// A model directory to start from instead of the seeded start: every
    /// weight this model shares with it (by name; a shape that differs is
    /// an error) starts as it is there, and the rest as a fresh run's. The
    /// schedule is this config's own, from step 0. Read from the working
    /// directory, like `--out`. `None` (the default): a fresh start.
    #[serde(default)]
    pub warm_start: Option<std::path::PathBuf>,
    pub eval_every: usize,
    pub eval_scenes: usize,
    pub checkpoint_every: usize,
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path, crate::limits::MAX_JSON_BYTES, "training config")?;
        let cfg: TrainConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid training config", path.display()))?;
        cfg.validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    /// Every number within its documented bound (`crate::limits::train`),
    /// so a run cannot divide by zero, overflow or allocate without bound.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{train::*, MAX_TRAIN_STEPS};
        self.model.validate_sizes()?;
        if self.train_seeds[1] > EVAL_SEED_START || self.train_seeds[0] >= self.train_seeds[1] {
            bail!(
                "train_seeds must be a non-empty range below {}",
                EVAL_SEED_START
            );
        }
        let within = |name: &str, v: usize, lo: usize, hi: usize| {
            anyhow::ensure!((lo..=hi).contains(&v), "{name} {v} is outside {lo}..={hi}");
            Ok(())
        };
        within("steps", self.steps, 1, MAX_TRAIN_STEPS)?;
        within(
            "scenes_per_step",
            self.scenes_per_step,
            1,
            MAX_SCENES_PER_STEP,
        )?;
        within(
            "commands_per_scene",
            self.commands_per_scene,
            1,
            MAX_COMMANDS_PER_SCENE,
        )?;
        within("shards", self.shards, 1, MAX_SHARDS)?;
        within("warmup_steps", self.warmup_steps, 0, MAX_TRAIN_STEPS)?;
        within(
            "checkpoint_every",
            self.checkpoint_every,
            1,
            MAX_TRAIN_STEPS,
        )?;
        within("eval_scenes", self.eval_scenes, 1, MAX_EVAL_SCENES)?;
        within("random_ramp[0]", self.random_ramp[0], 0, self.steps)?;
        within(
            "random_ramp[1]",
            self.random_ramp[1],
            self.random_ramp[0],
            self.steps,
        )?;
        let real = |name: &str, v: f64, lo: f64, hi: f64| {
            anyhow::ensure!((lo..=hi).contains(&v), "{name} {v} is outside {lo}..={hi}");
            Ok(())
        };
        real("learning_rate", self.learning_rate, 0.0, 1.0)?;
        real(
            "min_learning_rate",
            self.min_learning_rate,
            0.0,
            self.learning_rate,
        )?;
        real("weight_decay", self.weight_decay, 0.0, 1.0)?;
        real("grad_clip", self.grad_clip, 1e-6, 1e6)?;
        real("relational_share", self.relational_share, 0.0, 1.0)?;
        real("next_to_boost_en", self.next_to_boost_en, 0.0, 1.0)?;
        real("random_share", self.random_share, 0.0, 1.0)?;
        real("refusal_share", self.refusal_share, 0.0, 1.0)?;
        real("ambiguous_share", self.ambiguous_share, 0.0, 1.0)?;
        real("hard_negative_share", self.hard_negative_share, 0.0, 1.0)?;
        real(
            "attention_loss_weight",
            self.attention_loss_weight,
            0.0,
            1e3,
        )?;
        real("point_loss_weight", self.point_loss_weight, 0.0, 1e3)?;
        real(
            "each_candidate_weight",
            self.each_candidate_weight,
            0.0,
            1e3,
        )?;
        if self.each_candidate_weight > 0.0 && self.grounded != crate::data::Grounded::Candidates {
            bail!("each_candidate_weight needs \"grounded\": \"candidates\"");
        }
        real("patch_label_weight", self.patch_label_weight, 0.0, 1e3)?;
        real("patch_object_weight", self.patch_object_weight, 0.0, 1e3)?;
        real("named_weight", self.named_weight, 0.0, 1e3)?;
        real("pair_prior", self.pair_prior, 0.0, 10.0)?;
        if self.pair_prior > 0.0 && self.patch_label_weight <= 0.0 {
            bail!("pair_prior adjusts the patch-label term: set patch_label_weight above 0");
        }
        if self.named_weight > 0.0 && !self.model.named_match {
            bail!("named_weight needs \"named_match\": true in the model config");
        }
        if self.patch_label_weight > 0.0 && !self.model.patch_labels {
            bail!("patch_label_weight needs \"patch_labels\": true in the model config");
        }
        if self.random_share == 0.0 && self.random_extras != Default::default() {
            bail!("random_extras only change the randomised world: set random_share above 0");
        }
        if self.random_extras.strong_casts && !self.random_extras.casts {
            bail!("random_extras.strong_casts strengthens the casts: set \"casts\": true too");
        }
        if let Some(cap) = self.random_extras.max_side {
            let lowest = (self.model.image_size as u32).max(crate::scene::camera::MIN_SIDE);
            if !(lowest..=crate::scene::camera::MAX_SIDE).contains(&cap) {
                bail!(
                    "random_extras.max_side must lie in {lowest}..={} (at least the model's image_size), got {cap}",
                    crate::scene::camera::MAX_SIDE
                );
            }
        }
        real("bin_sigma", self.bin_sigma as f64, 0.0, 256.0)?;
        Ok(())
    }

    /// The share of randomised scenes at a step (see `random_ramp`).
    pub fn random_share_at(&self, step: usize) -> f64 {
        let [a, b] = self.random_ramp;
        if step < a {
            0.0
        } else if step >= b {
            self.random_share
        } else {
            self.random_share * (step - a + 1) as f64 / (b - a + 1) as f64
        }
    }

    /// How commands to refuse are mixed into each step.
    pub fn refusal_mix(&self) -> crate::data::RefusalMix {
        crate::data::RefusalMix {
            share: self.refusal_share,
            ambiguous: self.ambiguous_share,
            hard_negative: self.hard_negative_share,
        }
    }

    /// The colour × shape pairs this run must never show.
    pub fn held_out(&self) -> Vec<(crate::scene::Color, crate::scene::Shape)> {
        if self.hold_out_pairs {
            crate::scene::random::HELD_OUT_PAIRS.to_vec()
        } else {
            Vec::new()
        }
    }

    /// Learning rate at a step: linear warm-up, then cosine decay to the minimum.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let p = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_learning_rate
            + 0.5
                * (self.learning_rate - self.min_learning_rate)
                * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

fn one() -> usize {
    1
}

fn one_f64() -> f64 {
    1.0
}

fn quarter() -> f64 {
    0.25
}
