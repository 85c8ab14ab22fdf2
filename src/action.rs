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

/// Size of the action slice of the vocabulary: x bins, y bins, open, close, end.
pub const ACTION_VOCAB: usize = END + 1;

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

/// A whole action: the waypoints in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub waypoints: Vec<Waypoint>,
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
        }
    }

    pub fn from_index(index: usize) -> Result<Self> {
        Ok(match index {
            i if i < NUM_BINS => ActionToken::X(i as u8),
            i if i < 2 * NUM_BINS => ActionToken::Y((i - NUM_BINS) as u8),
            OPEN => ActionToken::Open,
            CLOSE => ActionToken::Close,
            END => ActionToken::End,
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

/// Action -> tokens, closed by `<eoa>`.
pub fn encode(action: &Action) -> Vec<ActionToken> {
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
    Ok(Action { waypoints })
}

/// What a token is allowed to be at step `step` of an action, given the tokens
/// so far: x, then y, then a gripper, then either `<eoa>` or the next x.
/// Used by the decoder to keep sampled actions well formed.
pub fn allowed_at(prefix: &[ActionToken]) -> std::ops::Range<usize> {
    match prefix.len() % 3 {
        0 if prefix.is_empty() => 0..NUM_BINS,
        0 if prefix.len() + 1 >= MAX_ACTION_TOKENS => END..END + 1,
        0 => 0..NUM_BINS, // next x, or <eoa>: see `allows_end`
        1 => NUM_BINS..2 * NUM_BINS,
        _ => OPEN..CLOSE + 1,
    }
}

/// Whether `<eoa>` may come next: only after at least one whole waypoint.
pub fn allows_end(prefix: &[ActionToken]) -> bool {
    !prefix.is_empty() && prefix.len().is_multiple_of(3)
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
        let a = Action {
            waypoints: vec![
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
            ],
        };
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
    }
}
