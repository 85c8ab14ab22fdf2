//! Commands drawn at random for a layout, in the mix that training,
//! evaluation and the benchmark use, and the line between the scene seeds
//! training may use and the held-out ones.

use rand::Rng;

use super::{sample_command, Command, Family, Lang, Layout, Relation};

/// First held-out seed. Training draws from `0..EVAL_SEED_START`.
pub const EVAL_SEED_START: u64 = 100_000;

/// Draws `k` commands for a layout: relational ones with probability
/// `relational_share` when the layout allows them, otherwise the other
/// families in turn; languages at random.
pub fn draw_commands(
    layout: &Layout,
    k: usize,
    relational_share: f64,
    rng: &mut impl Rng,
) -> Vec<Command> {
    draw_commands_with(layout, k, relational_share, 0.0, rng)
}

/// [`draw_commands`] with a curriculum knob: an English relational command
/// that is not "next to" is redrawn with probability `next_to_boost_en`,
/// keeping a "next to" one when the scene has one. English puts the landmark
/// last ("the red block next to the blue cup"), which a causal reader finds
/// harder than Korean's landmark-first order, so English "next to" gets more
/// of the relational share.
pub fn draw_commands_with(
    layout: &Layout,
    k: usize,
    relational_share: f64,
    next_to_boost_en: f64,
    rng: &mut impl Rng,
) -> Vec<Command> {
    let mut out = Vec::with_capacity(k);
    let mut tries = 0;
    while out.len() < k && tries < 20 * k {
        tries += 1;
        let lang = if rng.random_bool(0.5) {
            Lang::En
        } else {
            Lang::Ko
        };
        let family = if rng.random_bool(relational_share) {
            Family::Relational
        } else {
            [Family::Pick, Family::Place, Family::Push][rng.random_range(0..3)]
        };
        if let Some(mut c) = sample_command(layout, family, lang, rng) {
            let next_to = Some(Relation::NextTo);
            if family == Family::Relational
                && lang == Lang::En
                && c.relation != next_to
                && next_to_boost_en > 0.0
                && rng.random_bool(next_to_boost_en.min(1.0))
            {
                for _ in 0..4 {
                    match sample_command(layout, family, lang, rng) {
                        Some(d) if d.relation == next_to => {
                            c = d;
                            break;
                        }
                        _ => {}
                    }
                }
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Share of English relational commands that are "next to", over many scenes.
    fn english_next_to_share(boost: f64) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut next_to, mut all) = (0, 0);
        for seed in 0..400 {
            let layout = Layout::generate(seed);
            for c in draw_commands_with(&layout, 6, 1.0, boost, &mut rng) {
                if c.family == Family::Relational && c.lang == Lang::En {
                    all += 1;
                    next_to += (c.relation == Some(Relation::NextTo)) as usize;
                }
            }
        }
        assert!(all > 100, "only {all} English relational commands");
        next_to as f64 / all as f64
    }

    #[test]
    fn the_boost_gives_english_next_to_more_of_the_share() {
        let plain = english_next_to_share(0.0);
        let boosted = english_next_to_share(1.0);
        assert!(plain > 0.1 && plain < 0.7, "{plain}");
        assert!(boosted > plain + 0.15, "{plain} -> {boosted}");
    }
}
