//! The colour cast over a randomised picture (the `casts` and
//! `strong_casts` extras of [`super::random`]): a camera's white balance and
//! colour response, never so strong that a colour loses its name.

use rand::Rng;

use super::object::Color;

/// A colour cast over the whole picture: each channel takes a little of the
/// others after some saturation is drained (up to 6% and 30%, or 12% and
/// 50% for a strong one).
#[derive(Debug, Clone)]
pub(super) struct Cast {
    mix: [[f32; 3]; 3],
}

impl Cast {
    /// Half the pictures get one.
    pub(super) fn random(rng: &mut impl Rng) -> Option<Cast> {
        if !rng.random_bool(0.5) {
            return None;
        }
        Some(Cast::drawn(rng, 0.3, 0.06))
    }

    /// The `strong_casts` extra: half the pictures get a cast up to about
    /// twice as strong, drawn again until every named colour, cast, is still
    /// nearest its own name.
    pub(super) fn strong(rng: &mut impl Rng) -> Option<Cast> {
        if !rng.random_bool(0.5) {
            return None;
        }
        loop {
            let cast = Cast::drawn(rng, 0.5, 0.12);
            if Color::ALL.iter().all(|&c| cast.keeps_name(c)) {
                return Some(cast);
            }
        }
    }

    /// Up to `drain` of the saturation drained, each channel taking up to
    /// `cross` of each other one.
    fn drawn(rng: &mut impl Rng, drain: f32, cross: f32) -> Cast {
        let drain = rng.random_range(0.0..drain);
        let luma = [0.299, 0.587, 0.114];
        let mut mix = [[0.0; 3]; 3];
        for (i, row) in mix.iter_mut().enumerate() {
            for (j, m) in row.iter_mut().enumerate() {
                let keep = if i == j { 1.0 - drain } else { 0.0 };
                let cross = if i == j {
                    0.0
                } else {
                    rng.random_range(-cross..cross)
                };
                *m = keep + drain * luma[j] + cross;
            }
        }
        Cast { mix }
    }

    /// Whether colour `c`, cast, is still nearer its own paint than any
    /// other named colour's.
    fn keeps_name(&self, c: Color) -> bool {
        let rgb = self.apply(c.rgb().map(|v| v as f32));
        let d = |k: Color| {
            let plain = k.rgb().map(|v| v as f32);
            (0..3).map(|i| (rgb[i] - plain[i]).powi(2)).sum::<f32>()
        };
        Color::ALL.iter().all(|&k| k == c || d(k) > d(c))
    }

    pub(super) fn apply(&self, c: [f32; 3]) -> [f32; 3] {
        self.mix
            .map(|row| (row[0] * c[0] + row[1] * c[1] + row[2] * c[2]).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_cast_keeps_every_colour_nearest_its_own_name() {
        // The cast changes the picture, not what its colours are called:
        // every paint, cast, is still nearer its own colour than any other,
        // for the casts and the strong ones alike.
        type Draw = fn(&mut ChaCha8Rng) -> Option<Cast>;
        for (draw, strong) in [(Cast::random as Draw, false), (Cast::strong, true)] {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut casts = 0;
            let mut strongest = 0f32;
            for _ in 0..400 {
                let Some(cast) = draw(&mut rng) else {
                    continue;
                };
                casts += 1;
                for c in Color::ALL {
                    assert!(cast.keeps_name(c), "{c:?} cast by {:?}", cast.mix);
                    let rgb = cast.apply(c.rgb().map(|v| v as f32));
                    let d = |k: &Color| {
                        let plain = k.rgb().map(|v| v as f32);
                        (0..3).map(|i| (rgb[i] - plain[i]).powi(2)).sum::<f32>()
                    };
                    let nearest = Color::ALL
                        .into_iter()
                        .min_by(|a, b| d(a).total_cmp(&d(b)))
                        .unwrap();
                    assert_eq!(nearest, c, "{c:?} cast to {rgb:?}");
                    strongest = strongest.max(d(&c).sqrt());
                }
            }
            assert!((150..250).contains(&casts), "{casts}");
            // The strong casts move some paint further than any plain one
            // can (about 70 of 255 at most).
            assert_eq!(strongest > 90.0, strong, "{strongest}");
        }
    }
}
