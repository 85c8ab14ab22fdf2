//! How the randomised world draws one object: a variant of its shape's
//! drawing, its jittered paint and outline (see [`super::random`]), and the
//! finishes extra (flat, marked). The colour cast over the whole picture is
//! in [`super::cast`].

use rand::Rng;

use super::object::{Color, Object, Shape};
use super::random::{hsv, to_hsv};
use super::render::{hash, outward};
use super::surroundings::Light;

/// How one object is drawn: a variant of its shape's drawing, its paint, and
/// whether it has an outline.
#[derive(Debug, Clone)]
pub(super) struct ObjectLook {
    pub(super) paint: [f32; 3],
    pub(super) variant: u8,
    /// A second shape parameter: the lip or rim width, in radii.
    pub(super) rim: f32,
    /// Inside of a cup or bowl: brightness relative to the paint, or white.
    inside: f32,
    /// Outline width in table units (0 = none).
    outline: f32,
    grain: u32,
    pub(super) finish: Finish,
    /// A bowl drawn as before 2026-12-04 (`Extras::disc_bowls`).
    disc_bowl: bool,
}

/// What varies over every shape alike: flat or shaded, and markings.
#[derive(Debug, Clone, Default)]
pub(super) struct Finish {
    /// Drawn flat: one brightness, the hollow of a cup or bowl a ring and a
    /// lighter or darker inside, a ball a plain disc.
    pub(super) flat: bool,
    /// Brightness of a flat hollow relative to the paint.
    pub(super) hollow: f32,
    pub(super) marking: Option<Marking>,
}

#[derive(Debug, Clone)]
pub(super) struct Marking {
    pub(super) kind: MarkKind,
    /// Pattern period in radii.
    pub(super) period: f32,
    /// Turn of the pattern against the object, radians.
    pub(super) turn: f32,
    /// The marks' colour: `Some(white share)` towards white (1) or black (0),
    /// `None` a darker shade of the paint.
    pub(super) ink: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum MarkKind {
    Dots,
    Stripes,
    Checks,
    Specks,
}

impl Finish {
    pub(super) fn random(rng: &mut impl Rng) -> Finish {
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
    pub(super) fn random(o: &Object, disc_bowl: bool, rng: &mut impl Rng) -> ObjectLook {
        let variant = match o.shape {
            Shape::Cup => rng.random_range(0..6), // lip or not × empty, light, dark
            Shape::Block => rng.random_range(0..4), // bevelled, flat, outlined, cube
            Shape::Ball => rng.random_range(0..3), // glossy, matte, striped
            Shape::Bowl => rng.random_range(0..4), // thin or thick × shallow or deep
        };
        let rim = match o.shape {
            Shape::Bowl if variant % 2 == 0 && disc_bowl => rng.random_range(0.78..0.88),
            Shape::Bowl if variant % 2 == 0 => rng.random_range(0.72..0.82),
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
            disc_bowl,
        }
    }

    /// Colour of a point `w` inside the object, `d` its (negative) distance to the edge.
    pub(super) fn paint(
        &self,
        o: &Object,
        w: [f32; 2],
        d: f32,
        light: &Light,
        px: f32,
    ) -> [f32; 3] {
        let r = o.radius();
        let (dx, dy) = (w[0] - o.center[0], w[1] - o.center[1]);
        let rho = (dx * dx + dy * dy).sqrt() / r;
        let flat = light.lambert([0.0, 0.0, 1.0]);
        let (k, white) = if self.finish.flat {
            self.flat(o, rho, flat)
        } else {
            self.shaded(o, w, d, light, flat, rho)
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
    fn shaded(
        &self,
        o: &Object,
        w: [f32; 2],
        d: f32,
        light: &Light,
        flat: f32,
        rho: f32,
    ) -> (f32, f32) {
        let r = o.radius();
        let (dx, dy) = (w[0] - o.center[0], w[1] - o.center[1]);
        let radial = outward(dx, dy, rho, r);
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
                let deep = self.variant < 2;
                if rho >= rim {
                    (lip(light, radial, (rho - rim) / (1.0 - rim)), 0.0)
                } else if self.disc_bowl {
                    let q = if deep { 0.75 } else { 0.35 } * rho / rim;
                    let n = [-radial[0] * q, -radial[1] * q, (1.0 - q * q).sqrt()];
                    let base = if deep { 0.25 } else { 0.55 };
                    (
                        base + 0.4 * light.lambert(n) * if deep { 0.6 } else { 1.0 },
                        0.0,
                    )
                } else if rho > rim - 0.1 {
                    // Where the hollow drops from the lip: a dark line, so
                    // that even a small bowl reads as a ring around a hollow.
                    (0.35 * flat, 0.0)
                } else {
                    // The hollow's wall, tilted inwards: dark on the side
                    // towards the light and lit on the far side, the reverse
                    // of a ball's shading.
                    let q = if deep { 0.8 } else { 0.6 } * rho / rim;
                    let n = [-radial[0] * q, -radial[1] * q, (1.0 - q * q).sqrt()];
                    let base = if deep { 0.2 } else { 0.35 };
                    (base + 0.45 * light.lambert(n), 0.0)
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

fn normalise(v: [f32; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|x| x / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
    fn a_bowl_is_a_ring_around_its_hollow() {
        // The cue that tells a bowl from a matte ball at a few pixels wide:
        // going inwards, the brightness dips at the hollow's edge and rises
        // again inside, whatever the variant and the light.
        let bowl = Object {
            id: 0,
            color: Color::Blue,
            shape: Shape::Bowl,
            center: [0.5, 0.5],
            size: 0.2,
            angle: 0.0,
            tone: 1.0,
            handle: Default::default(),
        };
        let r = bowl.radius();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let look = ObjectLook::random(&bowl, false, &mut rng);
            let light = Light::random(&mut rng);
            seen[look.variant as usize] = true;
            let flat = light.lambert([0.0, 0.0, 1.0]);
            let ring_mean = |rho: f32| {
                (0..16)
                    .map(|i| {
                        let (s, c) = (i as f32 * std::f32::consts::TAU / 16.0).sin_cos();
                        let w = [0.5 + rho * r * c, 0.5 + rho * r * s];
                        look.shaded(&bowl, w, -r * (1.0 - rho), &light, flat, rho).0
                    })
                    .sum::<f32>()
                    / 16.0
            };
            let lip = ring_mean(0.5 * (1.0 + look.rim));
            let edge = ring_mean(look.rim - 0.05);
            let inside = ring_mean(0.3 * look.rim);
            assert!(
                edge < 0.6 * lip && edge < 0.6 * inside,
                "{lip} {edge} {inside}"
            );
        }
        assert_eq!(seen, [true; 4]);
    }
}
