//! What counts as success: the predicted action has the command's outcome,
//! its number of waypoints and its gripper tokens, and its points land where
//! the command asked. pick and relational: the first point on the target;
//! place: on the object, then on the bowl; push: on the object, then within
//! [`PUSH_TOLERANCE`] of the expected end point.

use crate::action::Action;
use crate::scene::{Command, Family, Layout};

/// How close a push must end to the expected point, as a share of the table side.
pub const PUSH_TOLERANCE: f32 = 0.05;

fn inside(layout: &Layout, id: usize, x: f32, y: f32) -> bool {
    layout
        .objects
        .iter()
        .any(|o| o.id == id && o.contains(x, y))
}

/// Whether a predicted action does what the command asked.
pub fn succeeded(layout: &Layout, cmd: &Command, got: &Action) -> bool {
    if got.outcome != cmd.action.outcome {
        return false;
    }
    let want = &cmd.action.waypoints;
    let got = &got.waypoints;
    if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| g.gripper != w.gripper) {
        return false;
    }
    let on_target = inside(layout, cmd.target, got[0].x, got[0].y);
    match cmd.family {
        Family::Pick | Family::Relational => on_target,
        Family::Place => {
            on_target
                && cmd
                    .destination
                    .is_some_and(|d| inside(layout, d, got[1].x, got[1].y))
        }
        Family::Push => {
            on_target && (got[1].x - want[1].x).hypot(got[1].y - want[1].y) <= PUSH_TOLERANCE
        }
    }
}
