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
//!   only its outline, its handle and its hollow do; colour casts; and
//!   objects painted white, grey or black, colours no command names, so
//!   that a shape cannot be told from its colour either.
//!
//! Masks stay exact: an object covers a pixel exactly when its hit test holds
//! at the table point under the pixel's centre, whatever its drawing.

use anyhow::Result;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::camera::{Camera, Damage, MAX_ROLL, MAX_SIDE, MIN_SIDE};
use super::cast::Cast;
use super::layout::{Layout, LayoutSpec};
use super::looks::{Finish, ObjectLook};
use super::object::{Color, Handle, Object, Shape};
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
/// And which objects are painted in a colour no command names.
const UNNAMED_SEED: u64 = 0x5EED_10C4_0000_0005;
/// The share of objects painted white, grey or black when that extra is on.
pub const UNNAMED_SHARE: f64 = 0.2;
/// The smallest diameter (in short sides) the `small_sizes` extra draws:
/// radius 3%.
const SMALL_SIZES_FROM: f32 = 0.06;

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
    /// Objects drawn flat or marked too (`looks::Finish`).
    #[serde(default)]
    pub finishes: bool,
    /// A colour cast that mixes the channels and drains some saturation, as
    /// a camera's white balance and colour response can (`cast::Cast`).
    #[serde(default)]
    pub casts: bool,
    /// The casts up to about twice as strong, as far as every named colour
    /// keeps its name (`cast::Cast::strong`). Needs `casts`.
    #[serde(default)]
    pub strong_casts: bool,
    /// Some objects painted white, grey or black ([`Color::UNNAMED`]): only
    /// their shape can name them, and their shape is all the patch head is
    /// told of them. Unlike the others, this extra changes the layouts.
    #[serde(default)]
    pub unnamed: bool,
    /// Object sizes drawn log-uniformly over the same range, so that small
    /// objects come up more often. Like `unnamed`, it changes the layouts.
    #[serde(default)]
    pub log_sizes: bool,
    /// The smallest objects' radius 3% of the short side, not 4%: the
    /// `small` split's lower end (3–5%), which the default range never
    /// draws. Changes the layouts too.
    #[serde(default)]
    pub small_sizes: bool,
    /// Longest side a picture is rendered at, pixels: a camera above it
    /// renders the same scene at this size instead, with fewer pixels to
    /// paint (see [`Camera::capped`]). The model sees a square view of
    /// `image_size` px either way.
    #[serde(default)]
    pub max_side: Option<u32>,
    /// The bowls as drawn until 2026-12-04: a shallow bowl a plain disc, much
    /// like a matte ball. Every model trained before then saw these, so their
    /// configs name it to draw the world they were trained on; the
    /// evaluation splits draw today's bowls.
    #[serde(default)]
    pub disc_bowls: bool,
    /// Pens in greys only: without it half of them take one of the colours
    /// commands name, so a green pen is a green straight-edged thing no
    /// command is ever about, while a green block is held out. Changes
    /// only those pens' paint.
    #[serde(default)]
    pub grey_pens: bool,
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
        layout_spec.log_sizes |= spec.extras.log_sizes;
        if spec.extras.small_sizes {
            layout_spec.sizes = layout_spec.sizes.map(|(_, hi)| (SMALL_SIZES_FROM, hi));
        }
        layout_spec.size_scale = (
            spec.layout.size_scale.0 * short,
            spec.layout.size_scale.1 * short,
        );
        let mut layout = Layout::generate_with(seed, &layout_spec);
        if spec.extras.unnamed {
            let mut paints = ChaCha8Rng::seed_from_u64(seed ^ UNNAMED_SEED);
            for o in layout.objects.iter_mut() {
                if paints.random_bool(UNNAMED_SHARE) {
                    o.color = Color::UNNAMED[paints.random_range(0..Color::UNNAMED.len())];
                }
            }
        }
        let mut handles = ChaCha8Rng::seed_from_u64(seed ^ HANDLE_SEED);
        for o in layout.objects.iter_mut().filter(|o| o.shape == Shape::Cup) {
            o.handle = Handle::random(&mut handles);
        }
        let mut finishes = ChaCha8Rng::seed_from_u64(seed ^ FINISH_SEED);
        let looks = layout
            .objects
            .iter()
            .map(|o| {
                let mut look = ObjectLook::random(o, spec.extras.disc_bowls, &mut rng);
                if spec.extras.finishes {
                    look.finish = Finish::random(&mut finishes);
                }
                look
            })
            .collect();
        let distractors = Distractor::scatter(
            &layout,
            &layout_spec.visible,
            short,
            spec.extras.grey_pens,
            &mut rng,
        );
        RandomScene {
            layout,
            // The scene is laid out for the camera drawn; a cap only lowers
            // the resolution it is painted at.
            camera: spec
                .extras
                .max_side
                .map_or(camera, |cap| camera.capped(cap)),
            looks,
            distractors,
            table: RandomTable::random(&mut rng),
            light: Light::random(&mut rng),
            cast: spec
                .extras
                .casts
                .then(|| {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ CAST_SEED);
                    if spec.extras.strong_casts {
                        Cast::strong(&mut rng)
                    } else {
                        Cast::random(&mut rng)
                    }
                })
                .flatten(),
            damage: Damage::random(&mut rng),
        }
    }

    /// The picture, damage included. The same scene always gives the same bytes.
    pub fn render(&self) -> Result<RgbImage> {
        let light = &self.light;
        let px_size = 1.0 / self.camera.scale;
        // Each object's box and turn, worked out once for the whole picture.
        let objects: Vec<(&Object, [f32; 4], (f32, f32))> = self
            .layout
            .objects
            .iter()
            .map(|o| (o, o.bbox(), o.angle.sin_cos()))
            .collect();
        let sdf = |(o, _, turn): &(&Object, [f32; 4], (f32, f32)), p: [f32; 2]| {
            let (lx, ly) = o.local(*turn, p[0], p[1]);
            o.sdf_local(lx, ly)
        };
        // A light of no strength casts no shadow: every factor would be 1.
        let shadows = light.strength > 0.0;
        let (under, over): (Vec<&Distractor>, Vec<&Distractor>) =
            self.distractors.iter().partition(|d| d.under);
        let img = self.camera.paint(|w, px, py| {
            let mut c = self.table.at(w, px, py);
            for d in &under {
                c = d.paint(w, c, light);
            }
            if shadows {
                let mut shade = 1.0;
                let caster = [w[0] - light.offset[0], w[1] - light.offset[1]];
                let m = light.softness;
                for object in &objects {
                    let b = object.1;
                    if caster[0] < b[0] - m
                        || caster[0] > b[2] + m
                        || caster[1] < b[1] - m
                        || caster[1] > b[3] + m
                    {
                        continue;
                    }
                    shade *= light.shadow(sdf(object, caster));
                }
                for d in over.iter().filter(|d| d.reaches(caster, m)) {
                    shade *= light.shadow(d.sdf(caster));
                }
                c = c.map(|v| v * shade);
            }
            for d in &over {
                c = d.paint(w, c, light);
            }
            for (object, look) in objects.iter().zip(&self.looks) {
                let b = object.1;
                if w[0] < b[0] || w[0] > b[2] || w[1] < b[1] || w[1] > b[3] {
                    continue;
                }
                let d = sdf(object, w);
                if d < 0.0 {
                    c = look.paint(object.0, w, d, light, px_size);
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

#[cfg(test)]
mod tests;
