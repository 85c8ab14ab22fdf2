//! The action space: what the model emits and what a robot would execute.
//!
//! An action is a short list of waypoints on the table plane. Each waypoint is
//! `(x, y, gripper)`, with `x` and `y` normalised to `[0, 1]` in the image frame
//! (x to the right, y downwards), so they do not depend on the image size.
//!
//! The model speaks in discrete tokens, in the style of RT-2 and OpenVLA: each
//! axis is cut into [`NUM_BINS`] equal bins. Unlike OpenVLA (255 centres for 256
//! bins), every one of the 256 bins has its own centre, `(i + 0.5) / 256`, so
//! `decode(encode(i)) == i` for every bin and the quantisation error is at most
//! half a bin (1/512 of the table).
//!
//! Token layout of one action:
//! `<x_i> <y_j> <open|close>` per waypoint, then `<eoa>` (end of action).
//!
//! A command can also name something the picture does not hold ("the green
//! cup" where there is none) or hold twice ("the red block" beside two red
//! blocks). The model then answers with one outcome token instead of a
//! waypoint, `<absent> <eoa>` or `<ambiguous> <eoa>`: attention always lands
//! somewhere, because a softmax sums to one, so saying "not here" has to be
//! something the model emits, not something read off the heatmap.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Number of bins per axis.
pub const NUM_BINS: usize = 256;

/// How far a push moves the object, as a fraction of the table side.
/// `push the ball to the left` ends 0.15 of the table to the left of the ball.
pub const PUSH_DISTANCE: f32 = 0.15;

/// Index of the first gripper token inside the action slice.
const OPEN: usize = 2 * NUM_BINS;
const CLOSE: usize = OPEN + 1;
const END: usize = OPEN + 2;
const ABSENT: usize = OPEN + 3;
const AMBIGUOUS: usize = OPEN + 4;

/// Size of the action slice of the vocabulary: x bins, y bins, open, close,
/// end, absent, ambiguous.
pub const ACTION_VOCAB: usize = AMBIGUOUS + 1;

/// Longest action in tokens: two waypoints of three tokens, then `<eoa>`.
pub const MAX_ACTION_TOKENS: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gripper {
    Open,
    Close,
}

/// One point the gripper moves to, in normalised image coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Waypoint {
    pub x: f32,
    pub y: f32,
    pub gripper: Gripper,
}

/// What the model made of the command: an action, or a refusal.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The named object is there, once: the waypoints say what to do.
    #[default]
    Act,
    /// Nothing in the picture fits the name ("the green cup" with no green cup).
    Absent,
    /// More than one thing fits ("the red block" beside two red blocks).
    Ambiguous,
}

impl Outcome {
    pub fn is_act(&self) -> bool {
        *self == Outcome::Act
    }

    /// "act", "absent" or "ambiguous", as in the JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Act => "act",
            Outcome::Absent => "absent",
            Outcome::Ambiguous => "ambiguous",
        }
    }

    /// The plain-words answer a learner reads, or `None` for an action.
    pub fn message(&self) -> Option<&'static str> {
        match self {
            Outcome::Act => None,
            Outcome::Absent => Some("not here: nothing in the picture fits that name"),
            Outcome::Ambiguous => Some("which one? more than one object fits that name"),
        }
    }
}

/// A whole action: the waypoints in order, or a refusal with none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub waypoints: Vec<Waypoint>,
    #[serde(default, skip_serializing_if = "Outcome::is_act")]
    pub outcome: Outcome,
}

impl Action {
    pub fn new(waypoints: Vec<Waypoint>) -> Self {
        Action {
            waypoints,
            outcome: Outcome::Act,
        }
    }

    /// A refusal: no waypoints.
    pub fn refuse(outcome: Outcome) -> Self {
        Action {
            waypoints: Vec::new(),
            outcome,
        }
    }
}

/// Where the table lies in the world: the image covers `width_m` × `height_m`
/// metres, with the metric origin at the image's top-left corner and the same
/// axes as the image (x right, y towards the camera's bottom edge).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub width_m: f32,
    pub height_m: f32,
}

impl Default for Workspace {
    fn default() -> Self {
        Self {
            width_m: 0.6,
            height_m: 0.6,
        }
    }
}

impl Workspace {
    /// Normalised `(x, y)` to metres.
    pub fn to_metric(&self, x: f32, y: f32) -> (f32, f32) {
        (x * self.width_m, y * self.height_m)
    }
}

/// One token of the action slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionToken {
    X(u8),
    Y(u8),
    Open,
    Close,
    End,
    Absent,
    Ambiguous,
}

impl ActionToken {
    /// Position inside the action slice, `0..ACTION_VOCAB`.
    pub fn index(self) -> usize {
        match self {
            ActionToken::X(i) => i as usize,
            ActionToken::Y(i) => NUM_BINS + i as usize,
            ActionToken::Open => OPEN,
            ActionToken::Close => CLOSE,
            ActionToken::End => END,
            ActionToken::Absent => ABSENT,
            ActionToken::Ambiguous => AMBIGUOUS,
        }
    }

    pub fn from_index(index: usize) -> Result<Self> {
        Ok(match index {
            i if i < NUM_BINS => ActionToken::X(i as u8),
            i if i < 2 * NUM_BINS => ActionToken::Y((i - NUM_BINS) as u8),
            OPEN => ActionToken::Open,
            CLOSE => ActionToken::Close,
            END => ActionToken::End,
            ABSENT => ActionToken::Absent,
            AMBIGUOUS => ActionToken::Ambiguous,
            _ => bail!("action token index {index} is outside 0..{ACTION_VOCAB}"),
        })
    }

    /// The token's text, as it appears in the tokenizer: `<x_137>`, `<close>`, ...
    pub fn text(self) -> String {
        match self {
            ActionToken::X(i) => format!("<x_{i:03}>"),
            ActionToken::Y(i) => format!("<y_{i:03}>"),
            ActionToken::Open => "<open>".into(),
            ActionToken::Close => "<close>".into(),
            ActionToken::End => "<eoa>".into(),
            ActionToken::Absent => "<absent>".into(),
            ActionToken::Ambiguous => "<ambiguous>".into(),
        }
    }

    /// Every action token in slice order, for building the vocabulary.
    pub fn all() -> impl Iterator<Item = ActionToken> {
        (0..ACTION_VOCAB).map(|i| Self::from_index(i).expect("index is in range"))
    }
}

/// The bin a normalised coordinate falls in. Values outside `[0, 1]` clamp.
pub fn to_bin(v: f32) -> u8 {
    let b = (v * NUM_BINS as f32).floor();
    b.clamp(0.0, (NUM_BINS - 1) as f32) as u8
}

/// The centre of a bin, in normalised coordinates.
pub fn bin_centre(bin: u8) -> f32 {
    (bin as f32 + 0.5) / NUM_BINS as f32
}

/// Action -> tokens, closed by `<eoa>`; a refusal is its outcome token.
pub fn encode(action: &Action) -> Vec<ActionToken> {
    match action.outcome {
        Outcome::Absent => return vec![ActionToken::Absent, ActionToken::End],
        Outcome::Ambiguous => return vec![ActionToken::Ambiguous, ActionToken::End],
        Outcome::Act => {}
    }
    let mut tokens = Vec::with_capacity(action.waypoints.len() * 3 + 1);
    for w in &action.waypoints {
        tokens.push(ActionToken::X(to_bin(w.x)));
        tokens.push(ActionToken::Y(to_bin(w.y)));
        tokens.push(match w.gripper {
            Gripper::Open => ActionToken::Open,
            Gripper::Close => ActionToken::Close,
        });
    }
    tokens.push(ActionToken::End);
    tokens
}

/// Tokens -> action. The tokens must be whole `x y gripper` triples followed by
/// `<eoa>`; anything else is an error that says what was expected where.
pub fn decode(tokens: &[ActionToken]) -> Result<Action> {
    let refusal = match tokens.first() {
        Some(ActionToken::Absent) => Some(Outcome::Absent),
        Some(ActionToken::Ambiguous) => Some(Outcome::Ambiguous),
        _ => None,
    };
    if let Some(outcome) = refusal {
        if tokens.get(1) != Some(&ActionToken::End) {
            bail!("malformed action: an outcome token must be followed by <eoa>");
        }
        return Ok(Action::refuse(outcome));
    }
    let mut waypoints = Vec::new();
    let mut i = 0;
    loop {
        match tokens.get(i) {
            Some(ActionToken::End) => break,
            None => bail!("action ended without <eoa> after {} tokens", tokens.len()),
            Some(_) => {}
        }
        let (x, y, g) =
            match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
                (Some(ActionToken::X(x)), Some(ActionToken::Y(y)), Some(g)) => (*x, *y, *g),
                _ => {
                    bail!(
                "malformed action at token {i}: expected <x_..> <y_..> <open|close>, got {}",
                tokens[i..].iter().map(|t| t.text()).collect::<Vec<_>>().join(" ")
            )
                }
            };
        let gripper = match g {
            ActionToken::Open => Gripper::Open,
            ActionToken::Close => Gripper::Close,
            other => bail!(
                "malformed action at token {}: expected a gripper token, got {}",
                i + 2,
                other.text()
            ),
        };
        waypoints.push(Waypoint {
            x: bin_centre(x),
            y: bin_centre(y),
            gripper,
        });
        i += 3;
    }
    Ok(Action::new(waypoints))
}

/// Whether the token at slice index `index` may come after `prefix`: first an
/// x or an outcome token; after an outcome token only `<eoa>`; otherwise x,
/// then y, then a gripper, then `<eoa>` or the next x. The decoder masks
/// everything else, so every action it emits is well formed.
pub fn allowed(prefix: &[ActionToken], index: usize) -> bool {
    let refused = matches!(
        prefix.first(),
        Some(ActionToken::Absent | ActionToken::Ambiguous)
    );
    if refused {
        return prefix.len() == 1 && index == END;
    }
    match prefix.len() % 3 {
        0 if prefix.is_empty() => index < NUM_BINS || index == ABSENT || index == AMBIGUOUS,
        0 if prefix.len() + 1 >= MAX_ACTION_TOKENS => index == END,
        0 => index < NUM_BINS || index == END,
        1 => (NUM_BINS..2 * NUM_BINS).contains(&index),
        _ => index == OPEN || index == CLOSE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bin_round_trips_exactly() {
        for b in 0..=255u8 {
            assert_eq!(to_bin(bin_centre(b)), b);
        }
    }

    #[test]
    fn quantisation_error_is_at_most_half_a_bin() {
        for i in 0..=10_000 {
            let v = i as f32 / 10_000.0;
            let err = (bin_centre(to_bin(v)) - v).abs();
            assert!(err <= 0.5 / NUM_BINS as f32 + 1e-6, "{v} -> {err}");
        }
    }

    #[test]
    fn token_indices_round_trip() {
        for (i, t) in ActionToken::all().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(ActionToken::from_index(i).unwrap(), t);
        }
        assert!(ActionToken::from_index(ACTION_VOCAB).is_err());
    }

    #[test]
    fn actions_round_trip_through_tokens() {
        let a = Action::new(vec![
            Waypoint {
                x: bin_centre(12),
                y: bin_centre(200),
                gripper: Gripper::Close,
            },
            Waypoint {
                x: bin_centre(255),
                y: bin_centre(0),
                gripper: Gripper::Open,
            },
        ]);
        let t = encode(&a);
        assert_eq!(t.len(), 7);
        assert_eq!(t[6], ActionToken::End);
        assert_eq!(decode(&t).unwrap(), a);
    }

    #[test]
    fn malformed_actions_are_errors() {
        assert!(decode(&[ActionToken::X(3)]).is_err());
        assert!(decode(&[
            ActionToken::X(3),
            ActionToken::X(4),
            ActionToken::Open,
            ActionToken::End
        ])
        .is_err());
        assert!(decode(&[ActionToken::X(3), ActionToken::Y(4), ActionToken::Open]).is_err());
        assert_eq!(decode(&[ActionToken::End]).unwrap().waypoints.len(), 0);
        assert!(decode(&[ActionToken::Absent, ActionToken::X(1)]).is_err());
    }

    #[test]
    fn refusals_round_trip_and_the_grammar_allows_them_first_only() {
        for outcome in [Outcome::Absent, Outcome::Ambiguous] {
            let t = encode(&Action::refuse(outcome));
            assert_eq!(t.len(), 2);
            assert_eq!(decode(&t).unwrap(), Action::refuse(outcome));
            assert!(allowed(&[], t[0].index()));
            assert!(allowed(&t[..1], END));
            assert!(!allowed(&t[..1], 0));
        }
        let x = [ActionToken::X(3), ActionToken::Y(4), ActionToken::Close];
        assert!(!allowed(&x, ABSENT) && !allowed(&x[..1], AMBIGUOUS));
        assert!(allowed(&x, END) && allowed(&x, 0) && !allowed(&[], END));
    }
}
