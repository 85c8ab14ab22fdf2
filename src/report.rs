//! What one run tells the learner, as a readable printout or as JSON (the
//! schema is in docs/DEMO.md). Both come from the same [`RunReport`], so they
//! always agree.

use std::fmt::Write as _;

use serde::Serialize;

use crate::grid::{mass_set, Frame, PatchGrid};
use crate::maps;
use crate::output::printable;
use crate::pipeline::{Pipeline, Point, Prediction};

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The command as given.
    pub command: String,
    pub command_tokens: Vec<Token>,
    /// Words that are not one known token (the model runs anyway).
    pub unknown_words: Vec<String>,
    pub image: ImageInfo,
    pub model: ModelInfo,
    pub action: ActionInfo,
    pub attention: AttentionInfo,
    /// Present when a ground-truth JSON lies beside the image.
    pub grounding: Option<Grounding>,
    /// The overlay PNG, when one was written.
    pub overlay: Option<Figure>,
    /// Other files written: contact sheets, the export and its manifest.
    pub outputs: Vec<Output>,
    pub timing_ms: TimingMs,
    /// Things the learner should know (unknown words, ignored ground truth);
    /// the command line prints each as a `warning:` line on stderr.
    pub warnings: Vec<String>,
}

/// The warning for words the tokenizer does not know as whole words.
pub fn unknown_warning(words: &[String]) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let list: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    Some(format!(
        "unknown words {}: the model never saw them as whole words; running anyway",
        list.join(", ")
    ))
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: u32,
    pub text: String,
    /// Index of the word it belongs to.
    pub word: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub path: String,
    pub width: u32,
    pub height: u32,
    /// How the image was letterboxed into the model's square view.
    pub letterbox: Frame,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub origin: String,
    pub device: String,
    /// Which code computed the answer (`engine::Path::choose`).
    pub path: crate::engine::Path,
    pub image_size: usize,
    pub patch_size: usize,
    pub grid: usize,
    pub heads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alternative {
    pub id: u32,
    pub text: String,
    pub prob: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionTokenInfo {
    pub id: u32,
    pub text: String,
    pub prob: f32,
    /// The three most likely tokens at this step, best first.
    pub top: Vec<Alternative>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionInfo {
    pub tokens: Vec<ActionTokenInfo>,
    /// "act", or a refusal: "absent" (nothing fits the name) or "ambiguous".
    pub outcome: crate::action::Outcome,
    /// The refusal in plain words, or `None` for an action.
    pub message: Option<&'static str>,
    pub waypoints: Vec<Point>,
    /// Set when the tokens did not form a valid action.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Patch {
    pub index: usize,
    pub row: usize,
    pub col: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttentionInfo {
    /// Which map: query, layer, heads.
    pub map: String,
    pub peak_patch: Patch,
    pub peak_value: f32,
    /// Centre of the peak patch in input pixels, clipped to the image.
    pub peak_pixel: [f32; 2],
    /// How many patches hold 60% of the weight (the outline).
    pub mass60_patches: usize,
    pub num_patches: usize,
    /// What the model's patch head says the peak patch shows, for a model
    /// with one: what the encoder saw where the model looked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_reads_as: Option<String>,
}

/// How the attention relates to the scene's ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct Grounding {
    pub truth: String,
    /// What the scene says the answer should be: act, absent or ambiguous.
    pub expected: Option<crate::action::Outcome>,
    pub target: Option<Target>,
    /// The peak patch is one of the target's patches (as in `vla-demo eval`).
    pub pointing_hit: Option<bool>,
    /// Share of the `<boa>` attention on the target's patches.
    pub attention_mass: Option<f32>,
    /// The target's share of the patches: what a uniform map would give.
    pub uniform_mass: Option<f32>,
    /// What the peak patch and the first waypoint lie on.
    pub peak_on: String,
    pub waypoint_on: String,
    pub waypoint_on_target: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub id: usize,
    pub name: String,
    /// "command" when the command is one of the scene's own; otherwise how it was chosen.
    pub found_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub path: String,
    pub width: u32,
    pub height: u32,
    /// Where the input image lies in the PNG: [x, y, width, height].
    pub image_region: [u32; 4],
    /// The map it colours (`--method`: attention, rollout or relevance) and
    /// that map's peak, which for rollout and relevance is not `attention`'s.
    pub map: String,
    pub peak_patch: Patch,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    /// per-head, per-layer, per-token, rollout, export, manifest.
    pub kind: String,
    pub path: String,
    /// A contact sheet's panel labels, in reading order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub panels: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TimingMs {
    pub preprocess: f64,
    pub vision: f64,
    pub text: f64,
    /// The fusion head, decoding the action token by token.
    pub decode: f64,
    pub overlay: f64,
    pub total: f64,
}

/// The parts of a report every run has.
pub fn build(p: &Pipeline, image_path: &str, command: &str, pred: &Prediction) -> RunReport {
    let cfg = p.config();
    let tok = |id: u32| p.tokenizer.id_to_token(id);
    let action_id = |t: crate::action::ActionToken| cfg.action_offset + t.index() as u32;
    let g = PatchGrid::new(pred.frame, cfg);
    let peak = maps::argmax(&pred.boa_attention);
    let [px, py] = g.patch_centre_px(peak);
    let clip = |v: f32, max: u32| v.clamp(0.0, max as f32);
    let t = pred.times;
    RunReport {
        command: command.to_string(),
        command_tokens: pred
            .command
            .ids
            .iter()
            .zip(&pred.command.word_ids)
            .map(|(&id, &word)| Token { id, text: tok(id), word })
            .collect(),
        unknown_words: pred.command.unknown_words.clone(),
        image: ImageInfo { path: image_path.to_string(), width: pred.frame.width, height: pred.frame.height, letterbox: pred.frame },
        model: ModelInfo {
            origin: p.origin.clone(),
            device: crate::device::describe(&p.device),
            path: pred.path,
            image_size: cfg.image_size,
            patch_size: cfg.patch_size,
            grid: cfg.grid(),
            heads: cfg.num_attention_heads,
        },
        action: ActionInfo {
            tokens: pred
                .steps
                .iter()
                .map(|s| ActionTokenInfo {
                    id: action_id(s.token),
                    text: s.token.text(),
                    prob: s.prob,
                    top: s.top.iter().map(|(t, prob)| Alternative { id: action_id(*t), text: t.text(), prob: *prob }).collect(),
                })
                .collect(),
            outcome: pred.outcome,
            message: pred.outcome.message(),
            waypoints: pred.waypoints.clone(),
            error: pred.error.clone(),
        },
        attention: AttentionInfo {
            map: format!("fusion cross-attention of <boa> (predicts the first action token), last fusion layer, mean of {} heads", cfg.num_attention_heads),
            peak_patch: Patch { index: peak, row: peak / cfg.grid(), col: peak % cfg.grid() },
            peak_value: pred.boa_attention.get(peak).copied().unwrap_or(0.0),
            peak_pixel: [clip(px, pred.frame.width), clip(py, pred.frame.height)],
            mass60_patches: mass_set(&pred.boa_attention, crate::overlay::MASS_SHARE).iter().filter(|&&b| b).count(),
            num_patches: cfg.num_patches(),
            peak_reads_as: pred.peak_reads_as.clone(),
        },
        grounding: None,
        overlay: None,
        outputs: Vec::new(),
        warnings: unknown_warning(&pred.command.unknown_words).into_iter().collect(),
        timing_ms: TimingMs { preprocess: t.preprocess, vision: t.vision, text: t.text, decode: t.decode, overlay: 0.0, total: t.preprocess + t.vision + t.text + t.decode },
    }
}

impl RunReport {
    pub fn set_overlay_ms(&mut self, ms: f64) {
        self.timing_ms.overlay = ms;
        let t = &self.timing_ms;
        self.timing_ms.total = t.preprocess + t.vision + t.text + t.decode + ms;
    }

    /// The readable printout.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = self.write_text(&mut s);
        s
    }

    fn write_text(&self, s: &mut String) -> std::fmt::Result {
        let m = &self.model;
        writeln!(
            s,
            "model      {} on {}, {} path ({}×{} px view, {}×{} patches of {} px, {} heads)",
            m.origin,
            m.device,
            m.path,
            m.image_size,
            m.image_size,
            m.grid,
            m.grid,
            m.patch_size,
            m.heads
        )?;
        writeln!(
            s,
            "image      {} ({}×{})",
            printable(&self.image.path),
            self.image.width,
            self.image.height
        )?;
        writeln!(s, "command    \"{}\"", printable(&self.command))?;
        let toks: Vec<String> = self
            .command_tokens
            .iter()
            .map(|t| format!("{}({})", t.text, t.id))
            .collect();
        writeln!(s, "tokens     {}  [{} tokens]", toks.join(" "), toks.len())?;
        if !self.unknown_words.is_empty() {
            writeln!(
                s,
                "unknown    {} (not in the vocabulary as one token)",
                self.unknown_words.join(", ")
            )?;
        }
        writeln!(s)?;
        let a = &self.action;
        writeln!(
            s,
            "action     {}",
            a.tokens
                .iter()
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        writeln!(s, "  step  token      p      top 3 alternatives")?;
        for (i, t) in a.tokens.iter().enumerate() {
            let top: Vec<String> = t
                .top
                .iter()
                .map(|x| format!("{} {:.3}", x.text, x.prob))
                .collect();
            writeln!(
                s,
                "  {:<4}  {:<9}  {:.3}  {}",
                i + 1,
                t.text,
                t.prob,
                top.join(" · ")
            )?;
        }
        if let Some(e) = &a.error {
            writeln!(s, "  not a valid action: {e}")?;
        }
        writeln!(s)?;
        if let Some(m) = a.message {
            writeln!(
                s,
                "answer     {m}: the model refuses, so there are no waypoints"
            )?;
            writeln!(s)?;
        }
        writeln!(
            s,
            "waypoints  #  gripper  normalised (x, y)  metric (m)        input pixels"
        )?;
        for (i, w) in a.waypoints.iter().enumerate() {
            let g = match w.gripper {
                crate::action::Gripper::Open => "open",
                crate::action::Gripper::Close => "close",
            };
            writeln!(
                s,
                "           {}  {:<7}  ({:.3}, {:.3})     ({:.3}, {:.3})    ({:.1}, {:.1})",
                i + 1,
                g,
                w.x,
                w.y,
                w.metric[0],
                w.metric[1],
                w.pixel[0],
                w.pixel[1]
            )?;
        }
        writeln!(s)?;
        let at = &self.attention;
        writeln!(s, "attention  {}", at.map)?;
        writeln!(
            s,
            "  peak     patch {} (row {}, col {}) = {:.4}, centre at input pixel ({:.1}, {:.1})",
            at.peak_patch.index,
            at.peak_patch.row,
            at.peak_patch.col,
            at.peak_value,
            at.peak_pixel[0],
            at.peak_pixel[1]
        )?;
        if let Some(r) = &at.peak_reads_as {
            writeln!(
                s,
                "  reads as {r:?} (the patch head: what the encoder says that patch shows)"
            )?;
        }
        writeln!(
            s,
            "  60%      of the weight lies on {} of {} patches (outlined)",
            at.mass60_patches, at.num_patches
        )?;
        if let Some(g) = &self.grounding {
            writeln!(s)?;
            writeln!(s, "grounding  {}", g.truth)?;
            match &g.target {
                Some(t) => writeln!(
                    s,
                    "  target   #{} {} (found by {})",
                    t.id, t.name, t.found_by
                )?,
                None => writeln!(
                    s,
                    "  target   none: no single object in the scene fits the command"
                )?,
            }
            if let Some(want) = g.expected {
                let said = a.outcome;
                let mark = if said == want { "✓" } else { "✗" };
                writeln!(
                    s,
                    "  answer   the scene calls for \"{}\", the model said \"{}\" {mark}",
                    want.name(),
                    said.name()
                )?;
            }
            if let Some(hit) = g.pointing_hit {
                let mark = if hit {
                    "hit ✓ (the peak patch is on the target)"
                } else {
                    "miss ✗ (the peak patch is not on the target)"
                };
                writeln!(s, "  pointing {mark}; the peak lies on {}", g.peak_on)?;
            }
            if let (Some(mass), Some(u)) = (g.attention_mass, g.uniform_mass) {
                writeln!(s, "  mass     {:.1}% of the attention is on the target's patches (uniform would give {:.1}%)", mass * 100.0, u * 100.0)?;
            }
            let on = match g.waypoint_on_target {
                Some(true) => " ✓",
                Some(false) => " ✗",
                None => "",
            };
            writeln!(s, "  waypoint 1 lies on {}{on}", g.waypoint_on)?;
        }
        writeln!(s)?;
        let t = &self.timing_ms;
        writeln!(
            s,
            "timing     preprocess {:.1} ms · vision {:.1} ms · text {:.1} ms · fusion/decode {:.1} ms · overlay {:.1} ms · total {:.1} ms",
            t.preprocess, t.vision, t.text, t.decode, t.overlay, t.total
        )?;
        if let Some(o) = &self.overlay {
            writeln!(
                s,
                "overlay    wrote {} ({}×{}: the image at its own {}×{} top-left, colour bar right, caption below)\n           its map: {}, peak patch {} (row {}, col {})",
                o.path, o.width, o.height, o.image_region[2], o.image_region[3],
                o.map, o.peak_patch.index, o.peak_patch.row, o.peak_patch.col
            )?;
        }
        for o in &self.outputs {
            writeln!(s, "{:<10} wrote {}", o.kind, o.path)?;
        }
        Ok(())
    }
}
