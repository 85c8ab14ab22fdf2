//! `vla-demo eval --per-command FILE`: one JSON line per command, for
//! reading single answers after an evaluation: what was asked, what the
//! model answered, how strongly it leaned to refusing, where its `<boa>`
//! query looked, and what the patch head read on every patch.
//!
//! ```console
//! vla-demo eval --split absent --scenes 100 --per-command absent.jsonl
//! ```

use serde::Serialize;

use crate::action::Outcome;
use crate::scene::{Command, Layout};

/// One command of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    pub split: &'static str,
    /// The scene's seed: `vla-demo eval --split SPLIT --seed SEED --scenes 1`
    /// draws it again.
    pub seed: u64,
    pub command: String,
    pub lang: &'static str,
    pub family: &'static str,
    /// What the scene says the answer is, and what the model answered.
    pub expected: Outcome,
    pub answer: Outcome,
    /// For a command to act on: did the action succeed, and did the `<boa>`
    /// attention's peak land on the target (the pointing game)?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointing: Option<bool>,
    /// P(`<absent>`) and P(`<ambiguous>`) at the first action token.
    pub refusal: [f32; 2],
    /// What the command is about: the target object for a command to act
    /// on ("red cup"), the name it uses for one to refuse ("red cup", or
    /// "cup" for a shape alone).
    pub object: String,
    /// The `<boa>` query's cross-attention weights, mean of the heads, one
    /// per patch in row-major order (4 decimals).
    pub boa: Vec<f32>,
    /// The patch head's reading of each patch, as "colour shape" indices:
    /// colour 0 is none (the table), then red, green, blue, yellow, purple,
    /// orange; shape 0 is none, then cup, block, ball, bowl. Absent for a
    /// model without a patch head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<[u8; 2]>>,
}

/// What `command` is about in `layout`, in words (see [`CommandRecord::object`]).
pub fn object_of(command: &Command, layout: &Layout) -> String {
    match (&command.refused_name, layout.objects.get(command.target)) {
        (Some(name), _) => match name.color() {
            Some(c) => format!("{} {}", c.name_en(), name.shape().name_en()),
            None => name.shape().name_en().to_string(),
        },
        (None, Some(o)) => format!("{} {}", o.color.name_en(), o.shape.name_en()),
        (None, None) => String::new(),
    }
}

/// Rounds weights to 4 decimals, which is all a reader needs, and keeps the
/// file small.
pub fn rounded(weights: &[f32]) -> Vec<f32> {
    weights.iter().map(|w| (w * 1e4).round() / 1e4).collect()
}

/// The records as JSON lines.
pub fn to_jsonl(records: &[CommandRecord]) -> anyhow::Result<String> {
    let mut s = String::new();
    for r in records {
        s += &serde_json::to_string(r)?;
        s.push('\n');
    }
    Ok(s)
}
