//! The randomised world that training draws from (domain randomisation, as
//! in Tobin et al. 2017): vary everything that should not matter, so the
//! model has to ground the words in what does (colour and shape).
//!
//! From one seed:
//! - **objects**: 2 to 10, radius 4–15% of the picture's short side; each
//!   drawn one of several ways (cups with or without a lip and empty, light or
//!   dark inside; bevelled, flat, outlined or cube blocks; glossy, matte or
//!   striped balls; thin or thick, shallow or deep bowls), its paint jittered
//!   in hue, saturation and value within its colour name, outlined or not;
//! - **table**: wood, cloth, paper, marble, plain, noise or a gradient;
//! - **light**: direction and strength, hard, soft or no shadows, a vignette,
//!   a colour temperature;
//! - **camera**: see [`super::camera`]: size, aspect, roll, blur, noise,
//!   rescaling, JPEG;
//! - **distractors** that commands never name: pens, coins, cloth patches;
//! - **extras**, switched on by the training config ([`Extras`]): objects
//!   drawn flat, as a cartoon would, or with markings (dots, stripes, checks,
//!   specks) on any shape, so that neither shading nor markings tell a shape,
//!   only its outline, its handle and its hollow do; and colour casts.
//!
//! Masks stay exact: an object covers a pixel exactly when its hit test holds
//! at the table point under the pixel's centre, whatever its drawing.

use anyhow::Result;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::camera::{Camera, Damage, MAX_ROLL, MAX_SIDE, MIN_SIDE};
use super::layout::{Layout, LayoutSpec};
use super::object::{Color, Handle, Object, Shape};
use super::render::hash;
use super::surroundings::{Distractor, Light, RandomTable};

/// Mixed into a scene seed for the look, so the layout's own stream is untouched.
const LOOK_SEED: u64 = 0x5EED_10C4_0000_0001;
/// The cups' handles have a stream of their own, so the rest of a scene's
/// look is what it was before handles varied.
const HANDLE_SEED: u64 = 0x5EED_10C4_0000_0002;
/// Flat drawing and markings have a stream of their own too.
const FINISH_SEED: u64 = 0x5EED_10C4_0000_0003;
/// And the colour cast.
const CAST_SEED: u64 = 0x5EED_10C4_0000_0004;

/// The colour × shape pairs that training never shows (the unseen-combo
/// split): each colour and each shape is still seen, just not together.
pub const HELD_OUT_PAIRS: [(Color, Shape); 4] = [
    (Color::Purple, Shape::Ball),
    (Color::Orange, Shape::Cup),
    (Color::Green, Shape::Block),
    (Color::Yellow, Shape::Bowl),
];

/// A randomised scene: the table layout, and how every part of it is drawn.
#[derive(Debug, Clone)]
pub struct RandomScene {
    pub layout: Layout,
    pub camera: Camera,
    looks: Vec<ObjectLook>,
    distractors: Vec<Distractor>,
    table: RandomTable,
    light: Light,
    cast: Option<Cast>,
    damage: Damage,
}

/// How the randomised world is drawn from a seed.
#[derive(Debug, Clone)]
pub struct RandomSpec {
    pub layout: LayoutSpec,
    /// Long side range of the picture, pixels.
    pub sides: (u32, u32),
    /// Randomisation added after the first models; off, a scene is what the
    /// evaluation splits and the older checkpoints see.
    pub extras: Extras,
}

/// Randomisation added to the world after the first checkpoints were
/// trained on it. Each has a seed stream of its own, so switching one on
/// changes nothing else in a scene; the evaluation splits keep them off, so
/// their figures stay comparable across checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extras {
    /// Objects drawn flat or marked too ([`Finish`]).
    #[serde(default)]
    pub finishes: bool,
    /// A colour cast that mixes the channels and drains some saturation, as
    /// a camera's white balance and colour response can ([`Cast`]).
    #[serde(default)]
    pub casts: bool,
}

impl Default for RandomSpec {
    /// Training's spec: 2–10 objects of radius 4–15% of the short side, no
    /// held-out pair, pictures of 128 to 1024 px.
    fn default() -> Self {
        RandomSpec {
            layout: LayoutSpec {
                min_objects: 2,
                max_objects: 10,
                // Radius 4–15% of the short side (today's are 6.5–9.5%).
                sizes: Some((0.08, 0.30)),
                exclude: HELD_OUT_PAIRS.to_vec(),
                ..LayoutSpec::default()
            },
            sides: (MIN_SIDE, MAX_SIDE),
            extras: Extras::default(),
        }
    }
}

impl RandomScene {
    pub fn generate(seed: u64, spec: &RandomSpec) -> RandomScene {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ LOOK_SEED);
        let camera = Camera::random(&mut rng, spec.sides, MAX_ROLL);
        // Sizes are relative to the picture's short side, not the table's.
        let short = camera.width.min(camera.height) as f32 / camera.scale;
        let mut layout_spec = camera.spec(&spec.layout);
        layout_spec.size_scale = (
            spec.layout.size_scale.0 * short,
            spec.layout.size_scale.1 * short,
        );
        let mut layout = Layout::generate_with(seed, &layout_spec);
        let mut handles = ChaCha8Rng::seed_from_u64(seed ^ HANDLE_SEED);
        for o in layout.objects.iter_mut().filter(|o| o.shape == Shape::Cup) {
            o.handle = Handle::random(&mut handles);
        }
        let mut finishes = ChaCha8Rng::seed_from_u64(seed ^ FINISH_SEED);
        let looks = layout
            .objects
            .iter()
            .map(|o| {
                let mut look = ObjectLook::random(o, &mut rng);
                if spec.extras.finishes {
                    look.finish = Finish::random(&mut finishes);
                }
                look
            })
            .collect();
        let distractors = Distractor::scatter(&layout, &layout_spec.visible, short, &mut rng);
        RandomScene {
            layout,
            camera,
            looks,
            distractors,
            table: RandomTable::random(&mut rng),
            light: Light::random(&mut rng),
            cast: spec
                .extras
                .casts
                .then(|| Cast::random(&mut ChaCha8Rng::seed_from_u64(seed ^ CAST_SEED)))
                .flatten(),
            damage: Damage::random(&mut rng),
        }
    }

    /// The picture, damage included. The same scene always gives the same bytes.
    pub fn render(&self) -> Result<RgbImage> {
        let light = &self.light;
        let px_size = 1.0 / self.camera.scale;
        let boxes: Vec<[f32; 4]> = self.layout.objects.iter().map(|o| o.bbox()).collect();
        let img = self.camera.paint(|w, px, py| {
            let mut c = self.table.at(w, px, py);
            for d in &self.distractors {
                if d.under {
                    c = d.paint(w, c, light);
                }
            }
            let mut shade = 1.0;
            let caster = [w[0] - light.offset[0], w[1] - light.offset[1]];
            for (o, b) in self.layout.objects.iter().zip(&boxes) {
                let m = light.softness;
                if caster[0] < b[0] - m
                    || caster[0] > b[2] + m
                    || caster[1] < b[1] - m
                    || caster[1] > b[3] + m
                {
                    continue;
                }
                shade *= light.shadow(o.sdf(caster[0], caster[1]));
            }
            for d in self.distractors.iter().filter(|d| !d.under) {
                shade *= light.shadow(d.sdf(caster));
            }
            c = c.map(|v| v * shade);
            for d in self.distractors.iter().filter(|d| !d.under) {
                c = d.paint(w, c, light);
            }
            for ((o, look), b) in self.layout.objects.iter().zip(&self.looks).zip(&boxes) {
                if w[0] < b[0] || w[0] > b[2] || w[1] < b[1] || w[1] > b[3] {
                    continue;
                }
                let d = o.sdf(w[0], w[1]);
                if d < 0.0 {
                    c = look.paint(o, w, d, light, px_size);
                    break;
                }
            }
            let c = light.finish(c, w);
            match &self.cast {
                Some(cast) => cast.apply(c),
                None => c,
            }
        });
        self.damage.apply(img)
    }
}

/// A colour cast over the whole picture: each channel takes a little of the
/// others (up to 6%) after some saturation is drained (up to 30%). Mild
/// enough that every colour keeps its name.
#[derive(Debug, Clone)]
struct Cast {
    mix: [[f32; 3]; 3],
}

impl Cast {
    /// Half the pictures get one.
    fn random(rng: &mut impl Rng) -> Option<Cast> {
        if !rng.random_bool(0.5) {
            return None;
        }
        let drain = rng.random_range(0.0..0.3);
        let luma = [0.299, 0.587, 0.114];
        let mut mix = [[0.0; 3]; 3];
        for (i, row) in mix.iter_mut().enumerate() {
            for (j, m) in row.iter_mut().enumerate() {
                let keep = if i == j { 1.0 - drain } else { 0.0 };
                let cross = if i == j {
                    0.0
                } else {
                    rng.random_range(-0.06..0.06)
                };
                *m = keep + drain * luma[j] + cross;
            }
        }
        Some(Cast { mix })
    }

    fn apply(&self, c: [f32; 3]) -> [f32; 3] {
        self.mix
            .map(|row| (row[0] * c[0] + row[1] * c[1] + row[2] * c[2]).max(0.0))
    }
}

/// How one object is drawn: a variant of its shape's drawing, its paint, and
/// whether it has an outline.
#[derive(Debug, Clone)]
struct ObjectLook {
    paint: [f32; 3],
    variant: u8,
    /// A second shape parameter: the lip or rim width, in radii.
    rim: f32,
    /// Inside of a cup or bowl: brightness relative to the paint, or white.
    inside: f32,
    /// Outline width in table units (0 = none).
    outline: f32,
    grain: u32,
    finish: Finish,
}

/// What varies over every shape alike: flat or shaded, and markings.
#[derive(Debug, Clone, Default)]
struct Finish {
    /// Drawn flat: one brightness, the hollow of a cup or bowl a ring and a
    /// lighter or darker inside, a ball a plain disc.
    flat: bool,
    /// Brightness of a flat hollow relative to the paint.
    hollow: f32,
    marking: Option<Marking>,
}

#[derive(Debug, Clone)]
struct Marking {
    kind: MarkKind,
    /// Pattern period in radii.
    period: f32,
    /// Turn of the pattern against the object, radians.
    turn: f32,
    /// The marks' colour: `Some(white share)` towards white (1) or black (0),
    /// `None` a darker shade of the paint.
    ink: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MarkKind {
    Dots,
    Stripes,
    Checks,
    Specks,
}

impl Finish {
    fn random(rng: &mut impl Rng) -> Finish {
        let flat = rng.random_bool(0.25);
        let hollow = if rng.random_bool(0.5) {
            rng.random_range(0.35..0.7)
        } else {
            rng.random_range(1.2..1.6)
        };
        let marking = rng.random_bool(0.35).then(|| {
            let kind = match rng.random_range(0..4) {
                0 => MarkKind::Dots,
                1 => MarkKind::Stripes,
                2 => MarkKind::Checks,
                _ => MarkKind::Specks,
            };
            // Checks cover half the object, so they are only ever a shade of
            // the paint: the colour's name must still hold.
            let ink = match kind {
                MarkKind::Checks => None,
                _ => match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(rng.random_range(0.75..1.0)),
                    _ => Some(0.0),
                },
            };
            Marking {
                kind,
                period: rng.random_range(0.35..0.8),
                turn: rng.random_range(0.0..std::f32::consts::PI),
                ink,
            }
        });
        Finish {
            flat,
            hollow,
            marking,
        }
    }
}

impl Marking {
    /// Whether the point `(lx, ly)` (object frame, in radii) is marked.
    fn covers(&self, lx: f32, ly: f32, grain: u32) -> bool {
        let (s, c) = self.turn.sin_cos();
        let (u, v) = (
            (lx * c + ly * s) / self.period,
            (ly * c - lx * s) / self.period,
        );
        let (fu, fv) = (u - u.floor() - 0.5, v - v.floor() - 0.5);
        match self.kind {
            MarkKind::Dots => fu * fu + fv * fv < 0.2 * 0.2,
            MarkKind::Stripes => fu.abs() < 0.15,
            MarkKind::Checks => (u.floor() + v.floor()).rem_euclid(2.0) < 1.0,
            MarkKind::Specks => hash(grain, (u * 3.0) as i32, (v * 3.0) as i32) < 0.15,
        }
    }

    fn ink(&self, c: [f32; 3]) -> [f32; 3] {
        match self.ink {
            None => c.map(|v| v * 0.7),
            Some(t) => [255.0 * t; 3],
        }
    }
}

impl ObjectLook {
    fn random(o: &Object, rng: &mut impl Rng) -> ObjectLook {
        let variant = match o.shape {
            Shape::Cup => rng.random_range(0..6), // lip or not × empty, light, dark
            Shape::Block => rng.random_range(0..4), // bevelled, flat, outlined, cube
            Shape::Ball => rng.random_range(0..3), // glossy, matte, striped
            Shape::Bowl => rng.random_range(0..4), // thin or thick × shallow or deep
        };
        let rim = match o.shape {
            Shape::Bowl if variant % 2 == 0 => rng.random_range(0.78..0.88),
            Shape::Bowl => rng.random_range(0.55..0.72),
            _ => rng.random_range(0.78..0.9),
        };
        ObjectLook {
            paint: jitter(o.color, rng),
            variant,
            rim,
            inside: rng.random_range(0.0..1.0),
            outline: if rng.random_bool(0.3) {
                o.radius() * rng.random_range(0.05..0.12)
            } else {
                0.0
            },
            grain: rng.random(),
            finish: Finish::default(),
        }
    }

    /// Colour of a point `w` inside the object, `d` its (negative) distance to the edge.
    fn paint(&self, o: &Object, w: [f32; 2], d: f32, light: &Light, px: f32) -> [f32; 3] {
        let r = o.radius();
        let (dx, dy) = (w[0] - o.center[0], w[1] - o.center[1]);
        let rho = (dx * dx + dy * dy).sqrt() / r;
        let radial = if rho > 1e-6 {
            [dx / (rho * r), dy / (rho * r)]
        } else {
            [1.0, 0.0]
        };
        let flat = light.lambert([0.0, 0.0, 1.0]);
        let (k, white) = if self.finish.flat {
            self.flat(o, rho, flat)
        } else {
            self.shaded(o, w, d, light, flat, rho, radial)
        };
        let g = 1.0 + 0.04 * (hash(self.grain, (w[0] / px) as i32, (w[1] / px) as i32) - 0.5);
        let mut c = self.paint.map(|v| v * k * g);
        let m = c[0].max(c[1]).max(c[2]);
        if m > 255.0 {
            c = c.map(|v| v * 255.0 / m);
        }
        c = c.map(|v| v + (255.0 - v) * white);
        if let Some(mark) = &self.finish.marking {
            let (s, co) = o.angle.sin_cos();
            let (lx, ly) = ((dx * co + dy * s) / r, (dy * co - dx * s) / r);
            // A cup's handle stays plain.
            if (o.shape != Shape::Cup || rho < 1.0) && mark.covers(lx, ly, self.grain) {
                c = mark.ink(c);
            }
        }
        if -d < self.outline {
            c = c.map(|v| v * 0.25);
        }
        c
    }

    /// A flat drawing's brightness and white share: what is left is the
    /// outline, the handle and the hollow (a ring, then a lighter or darker
    /// inside).
    fn flat(&self, o: &Object, rho: f32, flat: f32) -> (f32, f32) {
        let ring = match o.shape {
            Shape::Cup | Shape::Bowl if rho < 1.0 => self.rim,
            _ => return (flat, 0.0),
        };
        let line = 0.06;
        if (rho - ring).abs() < line {
            (0.45 * flat, 0.0)
        } else if rho < ring {
            let h = self.finish.hollow;
            if h > 1.0 {
                (flat, (h - 1.0).min(0.6))
            } else {
                (h * flat, 0.0)
            }
        } else {
            (flat, 0.0)
        }
    }

    /// A shaded drawing's brightness and white share, per shape and variant.
    #[allow(clippy::too_many_arguments)]
    fn shaded(
        &self,
        o: &Object,
        w: [f32; 2],
        d: f32,
        light: &Light,
        flat: f32,
        rho: f32,
        radial: [f32; 2],
    ) -> (f32, f32) {
        let r = o.radius();
        let (dx, dy) = (w[0] - o.center[0], w[1] - o.center[1]);
        match o.shape {
            Shape::Ball => {
                let nz = (1.0 - rho * rho).max(0.0).sqrt();
                let n = [dx / r, dy / r, nz];
                let half = normalise([light.dir[0], light.dir[1], light.dir[2] + 1.0]);
                let spec = (n[0] * half[0] + n[1] * half[1] + n[2] * half[2]).max(0.0);
                match self.variant {
                    0 => (light.lambert(n), 0.85 * spec.powi(40)),
                    1 => (0.5 + 0.5 * light.lambert(n), 0.0),
                    _ => {
                        let (s, c) = o.angle.sin_cos();
                        let across = (dy * c - dx * s) / r;
                        let stripe = (across.abs() < 0.22) as u8 as f32;
                        (light.lambert(n), 0.75 * stripe)
                    }
                }
            }
            Shape::Block => {
                let e = -d / r; // depth inside the outline, in radii
                let (s, c) = o.angle.sin_cos();
                let (lx, ly) = (dx * c + dy * s, dy * c - dx * s);
                match self.variant {
                    0 if e < 0.18 => {
                        let (nx, ny) = if lx.abs() > ly.abs() {
                            (lx.signum(), 0.0)
                        } else {
                            (0.0, ly.signum())
                        };
                        let n = [0.55 * (nx * c - ny * s), 0.55 * (nx * s + ny * c), 0.835];
                        (light.lambert(n), 0.0)
                    }
                    2 if e < 0.12 => (0.45, 0.0),
                    // A cube seen a little from the side: two darker faces.
                    3 if lx > r * 0.62 || ly > r * 0.62 => {
                        (if lx > ly { 0.62 } else { 0.78 } * flat, 0.0)
                    }
                    _ => (flat, 0.0),
                }
            }
            Shape::Bowl => {
                let rim = self.rim;
                if rho >= rim {
                    (lip(light, radial, (rho - rim) / (1.0 - rim)), 0.0)
                } else {
                    let deep = self.variant < 2;
                    let q = if deep { 0.75 } else { 0.35 } * rho / rim;
                    let n = [-radial[0] * q, -radial[1] * q, (1.0 - q * q).sqrt()];
                    let base = if deep { 0.25 } else { 0.55 };
                    (
                        base + 0.4 * light.lambert(n) * if deep { 0.6 } else { 1.0 },
                        0.0,
                    )
                }
            }
            Shape::Cup => {
                let has_lip = self.variant.is_multiple_of(2);
                let inside = self.variant / 2; // 0 empty, 1 light, 2 dark
                if rho >= 1.0 {
                    (0.92 * flat, 0.0) // the handle
                } else if rho >= self.rim {
                    if has_lip {
                        (lip(light, radial, (rho - self.rim) / (1.0 - self.rim)), 0.0)
                    } else {
                        (flat, 0.0)
                    }
                } else {
                    match inside {
                        0 => (0.82, 0.0),
                        1 => (0.95, 0.35 + 0.3 * self.inside),
                        _ => (0.3 + 0.15 * self.inside, 0.0),
                    }
                }
            }
        }
    }
}

/// Brightness of a rounded lip: `t` runs from its inner edge (0) to its outer
/// edge (1), and the normal tilts from inwards to outwards across it.
fn lip(light: &Light, radial: [f32; 2], t: f32) -> f32 {
    let tilt = 0.7 * (2.0 * t - 1.0);
    light.lambert([
        radial[0] * tilt,
        radial[1] * tilt,
        (1.0 - tilt * tilt).sqrt(),
    ])
}

/// A colour's paint, jittered within its name: hue ±8°, saturation and value ±15%.
fn jitter(color: Color, rng: &mut impl Rng) -> [f32; 3] {
    let [r, g, b] = color.rgb().map(|v| v as f32 / 255.0);
    let (h, s, v) = to_hsv(r, g, b);
    hsv(
        h + rng.random_range(-8.0..8.0),
        (s * rng.random_range(0.8..1.1)).min(1.0),
        (v * rng.random_range(0.8..1.1)).min(1.0),
    )
}

/// HSV (hue in degrees, saturation and value in 0..1) to 8-bit-scale RGB.
pub(crate) fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

/// RGB in 0..1 to (hue in degrees, saturation, value).
pub(crate) fn to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    let s = if max == 0.0 { 0.0 } else { d / max };
    (h, s, max)
}

fn normalise(v: [f32; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|x| x / n)
}

#[cfg(test)]
mod tests {
    use super::super::camera::assert_masks_hold;
    use super::*;

    fn spec_without_damage(seed: u64) -> RandomScene {
        let mut s = RandomScene::generate(seed, &RandomSpec::default());
        s.damage = Damage::none();
        s
    }

    #[test]
    fn the_randomised_world_is_deterministic() {
        for seed in [1, 17, 400] {
            let a = RandomScene::generate(seed, &RandomSpec::default());
            let b = RandomScene::generate(seed, &RandomSpec::default());
            assert_eq!(a.layout, b.layout);
            assert_eq!(a.render().unwrap(), b.render().unwrap());
        }
    }

    #[test]
    fn masks_agree_with_pixels() {
        // Objects are drawn exactly on their masks: every pixel whose centre
        // lies on no object is unchanged when the objects are removed
        // (shadows off, since the bare scene would lack them).
        // Every finish is drawn: flat and shaded, each marking and none.
        let kinds = [
            MarkKind::Dots,
            MarkKind::Stripes,
            MarkKind::Checks,
            MarkKind::Specks,
        ];
        for seed in 0..6 {
            let mut scene = spec_without_damage(seed);
            scene.light.strength = 0.0;
            for (i, look) in scene.looks.iter_mut().enumerate() {
                look.finish.flat = (i + seed as usize).is_multiple_of(2);
                look.finish.marking = kinds.get((i + seed as usize) % 5).map(|&kind| Marking {
                    kind,
                    period: 0.5,
                    turn: 0.3,
                    ink: Some(0.0),
                });
            }
            let img = scene.render().unwrap();
            let mut bare = scene.clone();
            bare.layout.objects.clear();
            let table = bare.render().unwrap();
            assert_masks_hold(&scene.camera, &scene.layout, &img, &table, |_| false);
        }
    }

    #[test]
    fn training_never_draws_a_held_out_pair() {
        for seed in 0..300 {
            let s = RandomScene::generate(seed, &RandomSpec::default());
            for o in &s.layout.objects {
                assert!(!HELD_OUT_PAIRS.contains(&(o.color, o.shape)), "seed {seed}");
            }
            let n = s.layout.objects.len();
            assert!((2..=10).contains(&n) || n < 2, "seed {seed}: {n}");
        }
    }

    #[test]
    fn every_shape_is_drawn_flat_and_shaded_plain_and_marked() {
        // Shading and markings must not tell a shape: each shape comes in
        // every finish, in the scenes training draws.
        let spec = RandomSpec {
            extras: Extras {
                finishes: true,
                casts: false,
            },
            ..RandomSpec::default()
        };
        let mut seen = std::collections::HashSet::new();
        for seed in 0..400 {
            let s = RandomScene::generate(seed, &spec);
            let plain = RandomScene::generate(seed, &RandomSpec::default());
            // Off, the finishes leave every look plain, and on, they change
            // nothing else in the scene.
            assert_eq!(s.layout, plain.layout);
            for (a, b) in s.looks.iter().zip(&plain.looks) {
                assert!(!b.finish.flat && b.finish.marking.is_none());
                assert_eq!((a.paint, a.variant, a.rim), (b.paint, b.variant, b.rim));
            }
            for (o, look) in s.layout.objects.iter().zip(&s.looks) {
                let mark = look.finish.marking.as_ref().map(|m| m.kind as u8);
                seen.insert((o.shape, look.finish.flat, mark));
            }
        }
        for shape in Shape::ALL {
            for flat in [false, true] {
                for mark in [None, Some(0), Some(1), Some(2), Some(3)] {
                    assert!(
                        seen.contains(&(shape, flat, mark)),
                        "{shape:?} {flat} {mark:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_cast_keeps_every_colour_nearest_its_own_name() {
        // The cast changes the picture, not what its colours are called:
        // every paint, cast, is still nearer its own colour than any other.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut casts = 0;
        for _ in 0..400 {
            let Some(cast) = Cast::random(&mut rng) else {
                continue;
            };
            casts += 1;
            for c in Color::ALL {
                let rgb = cast.apply(c.rgb().map(|v| v as f32));
                let nearest = Color::ALL
                    .into_iter()
                    .min_by(|a, b| {
                        let d = |k: &Color| {
                            let plain = k.rgb().map(|v| v as f32);
                            (0..3).map(|i| (rgb[i] - plain[i]).powi(2)).sum::<f32>()
                        };
                        d(a).total_cmp(&d(b))
                    })
                    .unwrap();
                assert_eq!(nearest, c, "{c:?} cast to {rgb:?}");
            }
        }
        assert!((150..250).contains(&casts), "{casts}");
    }

    #[test]
    fn a_marking_covers_part_of_an_object_and_keeps_its_colour() {
        // Marks take a minority of the surface, so the colour's name holds;
        // checks, which take half, are only ever a shade of the paint.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let Some(m) = Finish::random(&mut rng).marking else {
                continue;
            };
            let n = 60;
            let mut hit = 0;
            let mut all = 0;
            for i in 0..n {
                for j in 0..n {
                    let (x, y) = (
                        2.0 * i as f32 / n as f32 - 1.0,
                        2.0 * j as f32 / n as f32 - 1.0,
                    );
                    if x * x + y * y < 1.0 {
                        all += 1;
                        hit += m.covers(x, y, 7) as usize;
                    }
                }
            }
            let share = hit as f32 / all as f32;
            match m.kind {
                MarkKind::Checks => {
                    assert!(m.ink.is_none());
                    assert!((0.3..0.7).contains(&share), "{share}");
                }
                _ => assert!(share < 0.45, "{:?} {share}", m.kind),
            }
        }
    }

    #[test]
    fn hsv_round_trips() {
        for c in Color::ALL {
            let [r, g, b] = c.rgb().map(|v| v as f32 / 255.0);
            let (h, s, v) = to_hsv(r, g, b);
            let back = hsv(h, s, v);
            for (x, y) in back.iter().zip([r, g, b]) {
                assert!((x / 255.0 - y).abs() < 1e-4);
            }
        }
    }
}
