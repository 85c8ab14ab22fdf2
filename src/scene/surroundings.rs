//! The surroundings of the randomised world: the table, the light, and the
//! distractors (things on the table that no command names). See
//! [`super::random`] for how a scene puts them together.

use rand::Rng;
use std::f32::consts::TAU;

use super::layout::{distance, Layout};
use super::object::Color;
use super::random::hsv;
use super::render::{hash, lerp, smoothstep, value_noise};

/// One light: its direction, how much it lights, how shadows fall, and the
/// colour and vignette of the whole picture.
#[derive(Debug, Clone)]
pub(super) struct Light {
    /// Unit vector towards the light (x right, y down, z up).
    pub(super) dir: [f32; 3],
    ambient: f32,
    diffuse: f32,
    /// Where shadows fall, table units, and how soft and dark they are.
    pub(super) offset: [f32; 2],
    pub(super) softness: f32,
    pub(super) strength: f32,
    /// Per-channel gain (colour temperature and exposure).
    gain: [f32; 3],
    vignette: f32,
}

impl Light {
    pub(super) fn random(rng: &mut impl Rng) -> Light {
        let azimuth = rng.random_range(0.0..TAU);
        let elevation: f32 = rng.random_range(0.5..1.3);
        let (sa, ca) = azimuth.sin_cos();
        let dir = [ca * elevation.cos(), sa * elevation.cos(), elevation.sin()];
        let length = rng.random_range(0.004..0.025);
        let (softness, strength) = match rng.random_range(0..3) {
            0 => (0.0005, rng.random_range(0.25..0.5)), // hard
            1 => (rng.random_range(0.005..0.015), rng.random_range(0.2..0.45)), // soft
            _ => (0.001, 0.0),                          // none
        };
        let warm = rng.random_range(-0.12f32..0.12);
        let exposure = rng.random_range(0.8f32..1.15);
        Light {
            dir,
            ambient: rng.random_range(0.2..0.45),
            diffuse: rng.random_range(0.55..0.85),
            offset: [-ca * length, -sa * length],
            softness,
            strength,
            gain: [exposure * (1.0 + warm), exposure, exposure * (1.0 - warm)],
            vignette: if rng.random_bool(0.5) {
                rng.random_range(0.1..0.45)
            } else {
                0.0
            },
        }
    }

    /// Brightness of a surface with normal `n`, 1 for a flat top under the default light.
    pub(super) fn lambert(&self, n: [f32; 3]) -> f32 {
        let d = n[0] * self.dir[0] + n[1] * self.dir[1] + n[2] * self.dir[2];
        (self.ambient + self.diffuse * d.max(0.0)) / (self.ambient + self.diffuse * self.dir[2])
    }

    /// Darkening of the table by a caster at signed distance `d` from the point.
    pub(super) fn shadow(&self, d: f32) -> f32 {
        if self.strength == 0.0 {
            return 1.0;
        }
        1.0 - self.strength * (1.0 - smoothstep(-self.softness, self.softness, d))
    }

    /// Colour temperature, exposure and vignette on a finished pixel.
    pub(super) fn finish(&self, c: [f32; 3], w: [f32; 2]) -> [f32; 3] {
        let r2 = (w[0] - 0.5).powi(2) + (w[1] - 0.5).powi(2);
        let v = 1.0 - self.vignette * (r2 / 0.5).min(1.5);
        [
            c[0] * self.gain[0] * v,
            c[1] * self.gain[1] * v,
            c[2] * self.gain[2] * v,
        ]
    }
}

#[derive(Debug, Clone, Copy)]
enum TableKind {
    Wood,
    Cloth,
    Paper,
    Marble,
    Plain,
    Noise,
    Gradient,
}

#[derive(Debug, Clone)]
pub(super) struct RandomTable {
    kind: TableKind,
    base: [f32; 3],
    other: [f32; 3],
    angle: (f32, f32),
    freq: f32,
    seed: u32,
}

impl RandomTable {
    pub(super) fn random(rng: &mut impl Rng) -> RandomTable {
        const KINDS: [TableKind; 7] = [
            TableKind::Wood,
            TableKind::Cloth,
            TableKind::Paper,
            TableKind::Marble,
            TableKind::Plain,
            TableKind::Noise,
            TableKind::Gradient,
        ];
        let kind = KINDS[rng.random_range(0..KINDS.len())];
        // Tables are mostly greys, creams and browns, sometimes a muted colour.
        let colour = |rng: &mut dyn rand::RngCore| {
            let hue = rng.random_range(0.0..360.0);
            let sat = if rng.random_bool(0.8) {
                rng.random_range(0.0..0.25)
            } else {
                rng.random_range(0.25..0.45)
            };
            let val = rng.random_range(0.35..0.95);
            hsv(hue, sat, val)
        };
        let base = colour(rng);
        let other = colour(rng);
        RandomTable {
            kind,
            base,
            other,
            angle: rng.random_range(0.0..TAU).sin_cos(),
            freq: rng.random_range(8.0..40.0),
            seed: rng.random(),
        }
    }

    pub(super) fn at(&self, w: [f32; 2], px: u32, py: u32) -> [f32; 3] {
        let (s, c) = self.angle;
        let along = w[0] * c + w[1] * s;
        let across = w[1] * c - w[0] * s;
        let speck = hash(self.seed ^ 0xAA, px as i32, py as i32) - 0.5;
        let k = match self.kind {
            TableKind::Wood => {
                let warp = value_noise(self.seed, along * 3.0, across * 10.0);
                let grain = ((across * self.freq + warp * 2.5) * TAU).sin();
                1.0 + 0.06 * grain + 0.03 * speck
            }
            TableKind::Cloth => {
                let weave =
                    (along * self.freq * 8.0 * TAU).sin() * (across * self.freq * 8.0 * TAU).sin();
                1.0 + 0.08 * weave + 0.04 * speck
            }
            TableKind::Paper => {
                let fibre = value_noise(self.seed, w[0] * 60.0, w[1] * 60.0) - 0.5;
                1.0 + 0.05 * fibre + 0.03 * speck
            }
            TableKind::Marble => {
                let n = value_noise(self.seed, w[0] * 4.0, w[1] * 4.0)
                    + 0.5 * value_noise(self.seed ^ 1, w[0] * 9.0, w[1] * 9.0);
                let vein = ((along * 6.0 + n * 4.0) * TAU).sin().abs().powf(0.15);
                return lerp3(self.other, self.base, vein);
            }
            TableKind::Plain => 1.0 + 0.01 * speck,
            TableKind::Noise => {
                let n = value_noise(self.seed, w[0] * self.freq * 0.5, w[1] * self.freq * 0.5);
                1.0 + 0.25 * (n - 0.5) + 0.06 * speck
            }
            TableKind::Gradient => {
                return lerp3(self.base, self.other, (along + 0.5).clamp(0.0, 1.5) / 1.5);
            }
        };
        self.base.map(|v| v * k)
    }
}

/// Things on the table that are none of the four shapes, which no command names.
#[derive(Debug, Clone)]
pub(super) struct Distractor {
    pub(super) kind: DistractorKind,
    pub(super) center: [f32; 2],
    /// Half length and half width (a pen, a cloth) or radius (a coin).
    half: [f32; 2],
    angle: (f32, f32),
    pub(super) colour: [f32; 3],
    /// Drawn under the objects, like a cloth.
    pub(super) under: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DistractorKind {
    Pen,
    Coin,
    Cloth,
}

impl Distractor {
    /// Up to three distractors, clear of the objects (a cloth may lie under
    /// them). With `grey_pens`, a pen that would take a named colour is a
    /// grey instead, from the same draws, so nothing else in the scene moves.
    pub(super) fn scatter(
        layout: &Layout,
        visible: &[f32; 4],
        short: f32,
        grey_pens: bool,
        rng: &mut impl Rng,
    ) -> Vec<Distractor> {
        let n = [0, 0, 1, 1, 2, 3][rng.random_range(0..6)];
        let mut out = Vec::new();
        for _ in 0..n {
            let kind = [
                DistractorKind::Pen,
                DistractorKind::Coin,
                DistractorKind::Cloth,
            ][rng.random_range(0..3)];
            let half = match kind {
                DistractorKind::Pen => [
                    short * rng.random_range(0.06..0.13),
                    short * rng.random_range(0.008..0.014),
                ],
                DistractorKind::Coin => {
                    let r = short * rng.random_range(0.015..0.03);
                    [r, r]
                }
                DistractorKind::Cloth => [
                    short * rng.random_range(0.08..0.16),
                    short * rng.random_range(0.06..0.12),
                ],
            };
            let colour = match kind {
                DistractorKind::Pen if rng.random_bool(0.5) => {
                    let i = rng.random_range(0..Color::ALL.len());
                    if grey_pens {
                        hsv(0.0, 0.0, 0.1 + 0.08 * i as f32)
                    } else {
                        Color::ALL[i].rgb().map(|v| v as f32 * 0.8)
                    }
                }
                DistractorKind::Pen => hsv(0.0, 0.0, rng.random_range(0.05..0.3)),
                DistractorKind::Coin => {
                    if rng.random_bool(0.5) {
                        [190.0, 190.0, 185.0]
                    } else {
                        [200.0, 160.0, 70.0]
                    }
                }
                DistractorKind::Cloth => hsv(
                    rng.random_range(0.0..360.0),
                    rng.random_range(0.05..0.3),
                    rng.random_range(0.5..0.95),
                ),
            };
            let e = half[0].max(half[1]);
            let [x0, y0, x1, y1] = *visible;
            if x1 - x0 <= 2.0 * e || y1 - y0 <= 2.0 * e {
                continue;
            }
            for _ in 0..50 {
                let c = [
                    rng.random_range(x0 + e..x1 - e),
                    rng.random_range(y0 + e..y1 - e),
                ];
                let under = kind == DistractorKind::Cloth;
                let clear = under
                    || (layout
                        .objects
                        .iter()
                        .all(|o| distance(o.center, c) > o.extent() + e + 0.01)
                        && out
                            .iter()
                            .all(|d: &Distractor| distance(d.center, c) > e + d.half[0] + 0.01));
                if clear {
                    out.push(Distractor {
                        kind,
                        center: c,
                        half,
                        angle: rng.random_range(0.0..TAU).sin_cos(),
                        colour,
                        under,
                    });
                    break;
                }
            }
        }
        out
    }

    /// Radius of the circle around the centre that holds the whole thing.
    fn reach(&self) -> f32 {
        let [a, b] = self.half;
        match self.kind {
            DistractorKind::Coin => a,
            DistractorKind::Pen => a + b,
            DistractorKind::Cloth => a.hypot(b),
        }
    }

    /// Whether the point `w` may lie within `margin` of the outline: `false`
    /// only where [`Distractor::sdf`] is surely above `margin`, so that
    /// skipping such points changes no pixel.
    pub(super) fn reaches(&self, w: [f32; 2], margin: f32) -> bool {
        let (dx, dy) = (w[0] - self.center[0], w[1] - self.center[1]);
        // 1e-4 of slack: far more than the rounding of either side.
        let r = self.reach() + margin + 1e-4;
        dx * dx + dy * dy <= r * r
    }

    pub(super) fn sdf(&self, w: [f32; 2]) -> f32 {
        let (s, c) = self.angle;
        let (dx, dy) = (w[0] - self.center[0], w[1] - self.center[1]);
        let (lx, ly) = (dx * c + dy * s, dy * c - dx * s);
        match self.kind {
            DistractorKind::Coin => (dx * dx + dy * dy).sqrt() - self.half[0],
            DistractorKind::Pen => {
                let t = lx.clamp(-self.half[0], self.half[0]);
                ((lx - t).powi(2) + ly * ly).sqrt() - self.half[1]
            }
            DistractorKind::Cloth => {
                let round = 0.3 * self.half[1];
                let qx = lx.abs() - self.half[0] + round;
                let qy = ly.abs() - self.half[1] + round;
                (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt() + qx.max(qy).min(0.0) - round
            }
        }
    }

    pub(super) fn paint(&self, w: [f32; 2], under: [f32; 3], light: &Light) -> [f32; 3] {
        if !self.reaches(w, 0.0) {
            return under;
        }
        let d = self.sdf(w);
        if d >= 0.0 {
            return under;
        }
        let flat = light.lambert([0.0, 0.0, 1.0]);
        match self.kind {
            DistractorKind::Coin => {
                let ring = (-d < 0.2 * self.half[0]) as u8 as f32;
                self.colour.map(|v| v * flat * (1.0 - 0.25 * ring))
            }
            DistractorKind::Pen => self.colour.map(|v| v * flat),
            DistractorKind::Cloth => {
                let (s, c) = self.angle;
                let weave =
                    ((w[0] * c + w[1] * s) * 400.0).sin() * ((w[1] * c - w[0] * s) * 400.0).sin();
                self.colour.map(|v| v * (1.0 + 0.06 * weave))
            }
        }
    }
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        lerp(a[0], b[0], t),
        lerp(a[1], b[1], t),
        lerp(a[2], b[2], t),
    ]
}
