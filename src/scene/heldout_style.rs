//! The held-out style: the same four shapes in the same six colours, drawn a
//! way no training picture is, for the `style` split of `vla-demo eval`.
//!
//! Training never reaches this file: a test draws training steps and the
//! training-time evaluation, and checks that [`SCENES_MADE`] stays at zero. What differs from both the plain renderer and
//! the randomised world:
//! - **drawing**: flat, cel-shaded "sticker" art with a thick dark outline;
//!   cups full of coffee, blocks with four studs on top like a toy brick,
//!   balls with a tennis-ball seam, bowls with a pale inside and a drawn
//!   inner line; paint a little pastel;
//! - **tables**: checked tablecloths, dark slate, felt and white tiles with
//!   grout lines;
//! - **light**: a spotlight with a strong falloff, long hard drop shadows, and
//!   a colour cast that mixes the channels.
//!
//! The camera (sizes, aspect ratios, roll) and the photographic damage are
//! those of [`super::camera`], with fresh seeds, so the split also tests other
//! sizes and JPEG. Masks are exact, as everywhere.

use anyhow::Result;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::TAU;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::camera::{Camera, Damage, MAX_ROLL, MAX_SIDE, MIN_SIDE};
use super::layout::{Layout, LayoutSpec};
use super::object::{Object, Shape};
use super::random::hsv;
use super::render::{hash, value_noise};

const STYLE_SEED: u64 = 0x57_11E0_0000_0007;

/// How many styled scenes this process has made: a test reads it to prove
/// that training never gets here.
pub static SCENES_MADE: AtomicUsize = AtomicUsize::new(0);

/// A scene in the held-out style.
#[derive(Debug, Clone)]
pub struct StyledScene {
    pub layout: Layout,
    pub camera: Camera,
    paints: Vec<[f32; 3]>,
    table: StyleTable,
    spot: [f32; 3],
    shadow: [f32; 2],
    cast: [[f32; 3]; 3],
    damage: Damage,
}

impl StyledScene {
    /// The scene for `seed`: today's layout rules (2 to 6 objects of today's
    /// sizes, scaled to the picture's short side) under `base`.
    pub fn generate(seed: u64, base: &LayoutSpec) -> StyledScene {
        SCENES_MADE.fetch_add(1, Ordering::Relaxed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STYLE_SEED);
        let camera = Camera::random(&mut rng, (MIN_SIDE, MAX_SIDE), MAX_ROLL);
        let short = camera.width.min(camera.height) as f32 / camera.scale;
        let mut spec = camera.spec(base);
        spec.size_scale = (base.size_scale.0 * short, base.size_scale.1 * short);
        let layout = Layout::generate_with(seed, &spec);
        let paints = layout
            .objects
            .iter()
            .map(|o| {
                let [r, g, b] = o.color.rgb().map(|v| v as f32);
                let pastel = rng.random_range(0.0..0.25);
                [r, g, b].map(|v| v + (255.0 - v) * pastel)
            })
            .collect();
        let angle = rng.random_range(0.0..TAU);
        let length = rng.random_range(0.02..0.04);
        let mix = rng.random_range(0.05..0.18);
        let tint = rng.random_range(0..3);
        let mut cast = [
            [1.0 - mix, 0.0, 0.0],
            [0.0, 1.0 - mix, 0.0],
            [0.0, 0.0, 1.0 - mix],
        ];
        cast[tint] = [
            mix * 0.6 + cast[tint][0],
            mix * 0.6 + cast[tint][1],
            mix * 0.6 + cast[tint][2],
        ];
        for (i, row) in cast.iter_mut().enumerate() {
            row[(i + 1) % 3] += mix * 0.5;
        }
        StyledScene {
            layout,
            camera,
            paints,
            table: StyleTable::random(&mut rng),
            spot: [
                rng.random_range(0.1..0.9),
                rng.random_range(0.1..0.9),
                rng.random_range(0.35..0.9),
            ],
            shadow: [angle.cos() * length, angle.sin() * length],
            cast,
            damage: Damage::random(&mut rng),
        }
    }

    pub fn render(&self) -> Result<RgbImage> {
        let img = self.camera.paint(|w, _, _| {
            let mut c = self.table.at(w);
            let shaded = self
                .layout
                .objects
                .iter()
                .any(|o| o.contains(w[0] - self.shadow[0], w[1] - self.shadow[1]));
            if shaded {
                c = c.map(|v| v * 0.5);
            }
            for (o, paint) in self.layout.objects.iter().zip(&self.paints) {
                let d = o.sdf(w[0], w[1]);
                if d < 0.0 {
                    c = draw(o, *paint, w, d, self.shadow);
                    break;
                }
            }
            // Spotlight falloff, then the colour cast.
            let r = ((w[0] - self.spot[0]).powi(2) + (w[1] - self.spot[1]).powi(2)).sqrt();
            let k = (1.25 - 0.5 * r / self.spot[2]).clamp(0.7, 1.15);
            let c = c.map(|v| v * k);
            let m = &self.cast;
            [0, 1, 2].map(|i| m[i][0] * c[0] + m[i][1] * c[1] + m[i][2] * c[2])
        });
        self.damage.apply(img)
    }
}

/// Cel shading: the half of the object facing away from the shadow is lit.
fn draw(o: &Object, paint: [f32; 3], w: [f32; 2], d: f32, shadow: [f32; 2]) -> [f32; 3] {
    const INK: [f32; 3] = [30.0, 26.0, 34.0];
    let r = o.radius();
    if -d < 0.08 * r {
        return INK;
    }
    let (dx, dy) = (w[0] - o.center[0], w[1] - o.center[1]);
    let rho = (dx * dx + dy * dy).sqrt() / r;
    let lit = dx * shadow[0] + dy * shadow[1] < 0.0;
    let tone = |k: f32| paint.map(|v| v * k);
    let base = tone(if lit { 1.0 } else { 0.78 });
    let (s, c) = o.angle.sin_cos();
    let (lx, ly) = ((dx * c + dy * s) / r, (dy * c - dx * s) / r);
    match o.shape {
        Shape::Cup => {
            if rho < 0.7 && rho > 0.64 {
                INK
            } else if rho < 0.64 {
                // Coffee, with a pale crescent of foam.
                let foam = (lx + 0.2).hypot(ly + 0.2) > 0.5 && rho > 0.5;
                if foam {
                    [205.0, 180.0, 150.0]
                } else {
                    [92.0, 56.0, 32.0]
                }
            } else {
                base
            }
        }
        Shape::Block => {
            // Four studs on top.
            let stud = [(-0.45, -0.45), (0.45, -0.45), (-0.45, 0.45), (0.45, 0.45)]
                .iter()
                .map(|&(sx, sy): &(f32, f32)| (lx - sx).hypot(ly - sy))
                .fold(f32::INFINITY, f32::min);
            if stud < 0.27 && stud > 0.22 {
                INK
            } else if stud < 0.22 {
                tone(1.15)
            } else {
                base
            }
        }
        Shape::Ball => {
            // A tennis-ball seam: two curves across the ball.
            let seam = (lx.abs() - 0.55 - 0.25 * (ly * 2.2).cos()).abs();
            if seam < 0.06 {
                [245.0, 245.0, 240.0]
            } else {
                base
            }
        }
        Shape::Bowl => {
            if (rho - 0.62).abs() < 0.04 {
                INK
            } else if rho < 0.62 {
                paint.map(|v| v + (255.0 - v) * 0.55)
            } else {
                base
            }
        }
    }
}

#[derive(Debug, Clone)]
enum StyleTable {
    Checked { a: [f32; 3], b: [f32; 3], cell: f32 },
    Slate { seed: u32 },
    Felt { colour: [f32; 3], seed: u32 },
    Tiles { cell: f32 },
}

impl StyleTable {
    fn random(rng: &mut impl Rng) -> StyleTable {
        match rng.random_range(0..4) {
            0 => StyleTable::Checked {
                a: hsv(
                    rng.random_range(0.0..360.0),
                    rng.random_range(0.1..0.3),
                    0.9,
                ),
                b: [240.0, 238.0, 232.0],
                cell: rng.random_range(0.05..0.12),
            },
            1 => StyleTable::Slate { seed: rng.random() },
            2 => StyleTable::Felt {
                colour: hsv(
                    rng.random_range(150.0..230.0),
                    rng.random_range(0.3..0.5),
                    rng.random_range(0.35..0.55),
                ),
                seed: rng.random(),
            },
            _ => StyleTable::Tiles {
                cell: rng.random_range(0.08..0.16),
            },
        }
    }

    fn at(&self, w: [f32; 2]) -> [f32; 3] {
        match *self {
            StyleTable::Checked { a, b, cell } => {
                let odd = ((w[0] / cell).floor() + (w[1] / cell).floor()) as i64 % 2 != 0;
                if odd {
                    a
                } else {
                    b
                }
            }
            StyleTable::Slate { seed } => {
                let chalk = value_noise(seed, w[0] * 7.0, w[1] * 7.0);
                let v = 80.0 + 30.0 * chalk;
                [v, v + 4.0, v + 10.0]
            }
            StyleTable::Felt { colour, seed } => {
                let fuzz = hash(seed, (w[0] * 900.0) as i32, (w[1] * 900.0) as i32) - 0.5;
                colour.map(|v| v * (1.0 + 0.12 * fuzz))
            }
            StyleTable::Tiles { cell } => {
                let fx = (w[0] / cell).rem_euclid(1.0);
                let fy = (w[1] / cell).rem_euclid(1.0);
                if fx < 0.05 || fy < 0.05 {
                    [150.0, 150.0, 145.0]
                } else {
                    [232.0, 234.0, 236.0]
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::camera::assert_masks_hold;
    use super::*;

    #[test]
    fn styled_scenes_are_deterministic_and_drawn_exactly_on_their_masks() {
        for seed in [2, 9] {
            let mut a = StyledScene::generate(seed, &LayoutSpec::default());
            a.damage = Damage::none();
            let img = a.render().unwrap();
            assert_eq!(img, a.render().unwrap());
            let mut bare = a.clone();
            bare.layout.objects.clear();
            let table = bare.render().unwrap();
            let shadow = a.shadow;
            let layout = a.layout.clone();
            let shaded = move |w: [f32; 2]| {
                layout
                    .objects
                    .iter()
                    .any(|o| o.contains(w[0] - shadow[0], w[1] - shadow[1]))
            };
            assert_masks_hold(&a.camera, &a.layout, &img, &table, shaded);
        }
    }
}
