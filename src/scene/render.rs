//! Pixels: a wooden table, soft shadows and shaded objects, seen from above.
//!
//! Rendering goes table -> shadows -> objects, into a float buffer that is
//! rounded to 8 bits at the end. An object pixel is drawn exactly where
//! [`Object::contains`] holds at the pixel centre (no antialiasing), so the
//! ground-truth masks and the pixels agree by construction.
//!
//! Shading is Lambert (ambient + diffuse) under one light from the top left,
//! with a specular spot on balls. It only scales the paint colour (and the
//! spot mixes in white), so every object keeps its hue: the model can read
//! colour from pixels, and the tests can check it.

use super::layout::Layout;
use super::object::{Object, Shape};
use anyhow::{bail, Result};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{FRAC_PI_2, TAU};

/// Render sizes that work, in pixels per side.
pub const MIN_RENDER_SIZE: u32 = 64;
pub const MAX_RENDER_SIZE: u32 = 1024;

/// Unit vector towards the light (x right, y down, z up to the camera).
const LIGHT: [f32; 3] = [-0.4511, -0.5514, 0.7018];
/// Half-way between the light and the camera, for the specular spot.
const HALF: [f32; 3] = [-0.2445, -0.2989, 0.9224];
/// Length of the light's table-plane part, `|LIGHT.xy|`.
const LIGHT_XY: f32 = 0.7124;
/// Shadows fall away from the light, blurred over this distance.
const SHADOW_OFFSET: [f32; 2] = [0.008, 0.011];
const SHADOW_BLUR: f32 = 0.007;
const SHADOW_STRENGTH: f32 = 0.35;
/// Where the lip of a bowl and of a cup begins, in body radii.
const BOWL_RIM: f32 = 0.7;
const CUP_RIM: f32 = 0.84;

/// An error unless `size` is a render size that works.
pub fn check_size(size: u32) -> Result<()> {
    if !(MIN_RENDER_SIZE..=MAX_RENDER_SIZE).contains(&size) {
        bail!("scene size {size} px is out of range: use {MIN_RENDER_SIZE}..={MAX_RENDER_SIZE} pixels per side");
    }
    Ok(())
}

impl Layout {
    /// Render the scene as a `size`×`size` RGB image (`size` in 64..=1024).
    /// The same layout and size always give the same pixels.
    pub fn render(&self, size: u32) -> Result<RgbImage> {
        check_size(size)?;
        let n = size as usize;
        let mut buf = vec![[0f32; 3]; n * n];
        WoodTable::new(self.seed).paint(&mut buf, n);
        for o in &self.objects {
            shadow(o, &mut buf, n);
        }
        for o in &self.objects {
            paint(o, &mut buf, n, self.seed as u32);
        }
        let mut img = RgbImage::new(size, size);
        for (dst, src) in img.pixels_mut().zip(&buf) {
            dst.0 = src.map(to_u8);
        }
        Ok(img)
    }
}

/// The unit vector from an object's centre (radius `r`) out through
/// (dx, dy), `rho` radii away; any unit vector at the very centre.
pub(crate) fn outward(dx: f32, dy: f32, rho: f32, r: f32) -> [f32; 2] {
    if rho > 1e-6 {
        [dx / (rho * r), dy / (rho * r)]
    } else {
        [1.0, 0.0]
    }
}

/// A channel value to 8 bits: clamped to 0..=255 and rounded half away
/// from zero, as `v.clamp(0.0, 255.0).round() as u8` (NaN gives 0), without
/// the call to `roundf` that kept the pixel loops from vectorising.
pub(crate) fn to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let t = v as u8; // truncation; the fraction v − t is exact
    if v - t as f32 >= 0.5 {
        t + 1
    } else {
        t
    }
}

/// Normalised coordinate of the centre of pixel `p` in a render of `n` pixels.
/// This exact expression is the contract with [`Object::contains`].
fn centre(p: usize, n: usize) -> f32 {
    (p as f32 + 0.5) / n as f32
}

/// The pixel range `[lo, hi)` along one axis that can hold `[a, b]`, with a
/// pixel of slack for rounding.
fn pixel_range(a: f32, b: f32, n: usize) -> std::ops::Range<usize> {
    let lo = ((a * n as f32).floor() - 1.0).max(0.0) as usize;
    let hi = ((b * n as f32).ceil() + 1.0).clamp(0.0, n as f32) as usize;
    lo..hi.max(lo)
}

/// The table: a pale, low-saturation wood with grain, noise and a broad light
/// gradient. Low saturation keeps it apart from every paint colour.
struct WoodTable {
    base: [f32; 3],
    light: [f32; 2],
    grain: (f32, f32),
    stripes: f32,
    seed: u32,
}

impl WoodTable {
    fn new(seed: u64) -> WoodTable {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7AB1_E000_7AB1_E000);
        const WOODS: [[f32; 3]; 4] = [
            [186.0, 172.0, 150.0],
            [176.0, 170.0, 160.0],
            [196.0, 186.0, 168.0],
            [170.0, 160.0, 146.0],
        ];
        let wood = WOODS[rng.random_range(0..WOODS.len())];
        let jitter = rng.random_range(-6.0f32..6.0);
        // The grain runs roughly along one of the image axes.
        let wobble = rng.random_range(-0.25f32..0.25);
        let turn = if rng.random_bool(0.5) { 0.0 } else { FRAC_PI_2 };
        let angle = wobble + turn;
        WoodTable {
            base: wood.map(|v| v + jitter),
            light: [rng.random_range(0.0..0.5), rng.random_range(-0.2..0.4)],
            grain: angle.sin_cos(),
            stripes: rng.random_range(14.0..26.0),
            seed: rng.random(),
        }
    }

    fn paint(&self, buf: &mut [[f32; 3]], n: usize) {
        let (s, c) = self.grain;
        for py in 0..n {
            let v = centre(py, n);
            for px in 0..n {
                let u = centre(px, n);
                let along = u * c + v * s;
                let across = v * c - u * s;
                let warp = value_noise(self.seed, along * 3.0, across * 10.0);
                let grain = ((across * self.stripes + warp * 2.5) * TAU).sin();
                let blotch = value_noise(self.seed ^ 0x55, u * 6.0, v * 6.0);
                let speck = hash(self.seed ^ 0xAA, px as i32, py as i32);
                let dl = ((u - self.light[0]).powi(2) + (v - self.light[1]).powi(2)).sqrt();
                let light = 1.08 - 0.2 * dl;
                let k =
                    light * (1.0 + 0.035 * grain + 0.05 * (blotch - 0.5) + 0.025 * (speck - 0.5));
                buf[py * n + px] = self.base.map(|b| b * k);
            }
        }
    }
}

/// Darken the table under a soft copy of the object's outline, moved away from the light.
fn shadow(o: &Object, buf: &mut [[f32; 3]], n: usize) {
    let sc = o.angle.sin_cos();
    let [ox, oy] = SHADOW_OFFSET;
    let b = o.bbox();
    for py in pixel_range(b[1] + oy - SHADOW_BLUR, b[3] + oy + SHADOW_BLUR, n) {
        let v = centre(py, n);
        for px in pixel_range(b[0] + ox - SHADOW_BLUR, b[2] + ox + SHADOW_BLUR, n) {
            let u = centre(px, n);
            let (lx, ly) = o.local(sc, u - ox, v - oy);
            let d = o.sdf_local(lx, ly);
            let a = SHADOW_STRENGTH * (1.0 - smoothstep(-SHADOW_BLUR, SHADOW_BLUR, d));
            if a > 0.0 {
                let p = &mut buf[py * n + px];
                *p = p.map(|c| c * (1.0 - a));
            }
        }
    }
}

/// Draw the object over every pixel whose centre it contains.
fn paint(o: &Object, buf: &mut [[f32; 3]], n: usize, seed: u32) {
    let sc = o.angle.sin_cos();
    let base = o.color.rgb().map(|c| c as f32 * o.tone);
    let b = o.bbox();
    for py in pixel_range(b[1], b[3], n) {
        let v = centre(py, n);
        for px in pixel_range(b[0], b[2], n) {
            let u = centre(px, n);
            // The same two calls as `Object::contains`, so pixels and masks agree.
            let (lx, ly) = o.local(sc, u, v);
            let d = o.sdf_local(lx, ly);
            if d >= 0.0 {
                continue;
            }
            let (k, spec) = shade(o, sc, [u - o.center[0], v - o.center[1]], (lx, ly), d);
            let grain = 1.0 + 0.04 * (hash(seed ^ 0x0B1E, px as i32, py as i32) - 0.5);
            buf[py * n + px] = lit(base, k * grain, spec);
        }
    }
}

/// Brightness factor and specular weight of one object point. `world` is the
/// offset from the centre in image axes, `local` the same in the object's frame,
/// `d` the (negative) signed distance to the outline.
fn shade(o: &Object, (s, c): (f32, f32), world: [f32; 2], local: (f32, f32), d: f32) -> (f32, f32) {
    let r = o.radius();
    let [dx, dy] = world;
    let rho = (dx * dx + dy * dy).sqrt() / r;
    let radial = outward(dx, dy, rho, r);
    match o.shape {
        Shape::Ball => {
            let nz = (1.0 - rho * rho).max(0.0).sqrt();
            let nrm = [dx / r, dy / r, nz];
            let spec = dot(nrm, HALF).max(0.0).powi(40);
            (0.28 + 0.9 * dot(nrm, LIGHT).max(0.0), 0.85 * spec)
        }
        Shape::Block => {
            let e = -d; // depth inside the outline
            let bevel = 0.18 * r;
            if e >= bevel {
                // Flat top, a touch brighter towards the light.
                return (
                    0.97 + 0.05 * (dx * LIGHT[0] + dy * LIGHT[1]) / (r * LIGHT_XY),
                    0.0,
                );
            }
            let (lx, ly) = local;
            let (nlx, nly) = if lx.abs() > ly.abs() {
                (lx.signum(), 0.0)
            } else {
                (0.0, ly.signum())
            };
            let nw = [nlx * c - nly * s, nlx * s + nly * c];
            let nrm = [0.55 * nw[0], 0.55 * nw[1], 0.835];
            let edge = if e < 0.05 * r { 0.8 } else { 1.0 };
            (edge * lambert(nrm), 0.0)
        }
        Shape::Bowl => {
            if rho >= BOWL_RIM {
                (lip(radial, (rho - BOWL_RIM) / (1.0 - BOWL_RIM)), 0.0)
            } else {
                // Concave hollow: normals lean towards the centre, and the wall
                // nearest the light shades the inside next to it.
                let q = 0.75 * rho / BOWL_RIM;
                let nrm = [-radial[0] * q, -radial[1] * q, (1.0 - q * q).sqrt()];
                let shaded = in_wall_shadow(world, r * BOWL_RIM, 0.3 * r);
                let k = 0.2 + 0.45 * dot(nrm, LIGHT).max(0.0);
                (if shaded { 0.75 * k } else { k }, 0.0)
            }
        }
        Shape::Cup => {
            if rho >= 1.0 {
                // The handle, outside the body: a small cylinder across its width.
                let t = (local.1 / (o.handle.radius * r)).clamp(-1.0, 1.0);
                let nrm = [-s * t, c * t, (1.0 - t * t).sqrt()];
                let rim = if o.handle.sdf(r, local.0, local.1) > -0.04 * r {
                    0.85
                } else {
                    1.0
                };
                (rim * lambert(nrm), 0.0)
            } else if rho >= CUP_RIM {
                (lip(radial, (rho - CUP_RIM) / (1.0 - CUP_RIM)), 0.0)
            } else {
                // The inside of a deep cup: evenly lit, with a crescent of shadow.
                let shaded = in_wall_shadow(world, r * CUP_RIM, 0.4 * r);
                (if shaded { 0.55 } else { 0.86 }, 0.0)
            }
        }
    }
}

/// A rounded lip: `t` runs from its inner edge (0) to its outer edge (1), and
/// the normal tilts from inwards to outwards across it.
fn lip(radial: [f32; 2], t: f32) -> f32 {
    let tilt = 0.7 * (2.0 * t - 1.0);
    lambert([
        radial[0] * tilt,
        radial[1] * tilt,
        (1.0 - tilt * tilt).sqrt(),
    ])
}

/// Whether a point inside a hollow of radius `hollow` is shaded by its wall:
/// stepping `depth` towards the light leaves the hollow.
fn in_wall_shadow(world: [f32; 2], hollow: f32, depth: f32) -> bool {
    let x = world[0] + LIGHT[0] / LIGHT_XY * depth;
    let y = world[1] + LIGHT[1] / LIGHT_XY * depth;
    x * x + y * y > hollow * hollow
}

/// Ambient plus diffuse, scaled so that a flat, upward face gets 1.0.
fn lambert(nrm: [f32; 3]) -> f32 {
    0.3 + 0.7 / LIGHT[2] * dot(nrm, LIGHT).max(0.0)
}

/// Paint scaled by `k` without clipping a channel (which would shift the hue),
/// then mixed towards white by the specular weight.
fn lit(base: [f32; 3], k: f32, spec: f32) -> [f32; 3] {
    let mut c = base.map(|v| v * k);
    let m = c[0].max(c[1]).max(c[2]);
    if m > 255.0 {
        c = c.map(|v| v * 255.0 / m);
    }
    c.map(|v| v + (255.0 - v) * spec)
}

fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A hash of a lattice point to `[0, 1)`.
pub(crate) fn hash(seed: u32, x: i32, y: i32) -> f32 {
    let mut h = seed ^ (x as u32).wrapping_mul(0x27d4_eb2d) ^ (y as u32).wrapping_mul(0x1656_67b1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in `[0, 1)`, one lattice cell per unit.
pub(crate) fn value_noise(seed: u32, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (smoothstep(0.0, 1.0, x - fx), smoothstep(0.0, 1.0, y - fy));
    let top = lerp(hash(seed, ix, iy), hash(seed, ix + 1, iy), tx);
    let bottom = lerp(hash(seed, ix, iy + 1), hash(seed, ix + 1, iy + 1), tx);
    lerp(top, bottom, ty)
}

pub(crate) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_u8_rounds_as_clamp_then_round_does() {
        let halves = (0..=512).map(|i| i as f32 * 0.5);
        let steps = (-4096..=280 * 4096).map(|i| i as f32 / 4096.0);
        let nudged = (0..=256).flat_map(|i| {
            let h = i as f32 + 0.5;
            [h.next_down(), h.next_up()]
        });
        let odd = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1e30,
            -1e30,
        ];
        for v in halves.chain(steps).chain(nudged).chain(odd) {
            assert_eq!(to_u8(v), v.clamp(0.0, 255.0).round() as u8, "{v}");
        }
    }

    #[test]
    fn sizes_outside_the_range_are_errors() {
        let layout = Layout::generate(1);
        for bad in [0, 63, 1025] {
            let err = layout.render(bad).unwrap_err().to_string();
            assert!(
                err.contains(&bad.to_string()) && err.contains("64..=1024"),
                "{err}"
            );
        }
        assert_eq!(layout.render(64).unwrap().dimensions(), (64, 64));
    }

    #[test]
    fn pixels_follow_the_hit_test() {
        let layout = Layout::generate(3);
        let n = 96;
        let img = layout.render(n).unwrap();
        let table = Layout {
            seed: 3,
            objects: vec![],
        }
        .render(n)
        .unwrap();
        for py in 0..n {
            for px in 0..n {
                let (u, v) = ((px as f32 + 0.5) / n as f32, (py as f32 + 0.5) / n as f32);
                if layout.object_at(u, v).is_some() {
                    // Object pixels are painted over the table (shadows aside).
                    assert_ne!(img.get_pixel(px, py), table.get_pixel(px, py));
                }
            }
        }
    }
}
