//! Objects on the table: their colours, shapes and exact geometry.
//!
//! Every shape is a signed distance function (SDF) in normalised image
//! coordinates: negative inside, positive outside, and (close to) the Euclidean
//! distance to the outline, which the renderer also uses for soft shadows and
//! bevels. The renderer and the hit test call the same functions with the same
//! arguments, so a pixel `(px, py)` of an `S`×`S` render shows the object exactly
//! when `contains((px + 0.5) / S, (py + 0.5) / S)`.

use serde::{Deserialize, Serialize};
use std::f32::consts::{PI, TAU};

/// The six paint colours that commands name. Their hues are far apart so
/// that the model can tell them from pixel colour alone (red 0°, orange ~27°,
/// yellow ~49°, green ~131°, blue ~222°, purple ~281°). Three more, without
/// hue, are never named ([`Color::UNNAMED`]): training paints some objects in
/// them so that a shape has to be read from its outline, not its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
    White,
    Grey,
    Black,
}

impl Color {
    pub const ALL: [Color; 6] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Purple,
        Color::Orange,
    ];

    /// The colours no command names: an object painted in one is a
    /// candidate for "the cup", but never "the grey cup".
    pub const UNNAMED: [Color; 3] = [Color::White, Color::Grey, Color::Black];

    /// Whether commands name this colour (it is one of [`Color::ALL`]).
    pub fn is_named(&self) -> bool {
        Color::ALL.contains(self)
    }

    pub fn name_en(&self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Purple => "purple",
            Color::Orange => "orange",
            Color::White => "white",
            Color::Grey => "grey",
            Color::Black => "black",
        }
    }

    /// The canonical Korean modifier (`빨간 컵`); [`super::grammar`] also uses variants.
    pub fn name_ko(&self) -> &'static str {
        match self {
            Color::Red => "빨간",
            Color::Green => "초록",
            Color::Blue => "파란",
            Color::Yellow => "노란",
            Color::Purple => "보라색",
            Color::Orange => "주황색",
            Color::White => "흰",
            Color::Grey => "회색",
            Color::Black => "검은",
        }
    }

    /// The fully lit paint colour. Shading only scales it, so the hue survives.
    pub fn rgb(&self) -> [u8; 3] {
        match self {
            Color::Red => [214, 38, 38],
            Color::Green => [40, 164, 64],
            Color::Blue => [40, 92, 216],
            Color::Yellow => [236, 200, 36],
            Color::Purple => [140, 62, 186],
            Color::Orange => [242, 126, 26],
            Color::White => [232, 232, 228],
            Color::Grey => [140, 140, 140],
            Color::Black => [52, 52, 56],
        }
    }
}

/// The four shapes, each recognisable from straight above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A disk (the rim and the inside, seen from above) with a handle.
    Cup,
    /// A square with bevelled edges; `size` is its side.
    Block,
    /// A shaded sphere with a specular highlight.
    Ball,
    /// A ring with a darker hollow; the hollow is part of the object.
    Bowl,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Cup, Shape::Block, Shape::Ball, Shape::Bowl];

    pub fn name_en(&self) -> &'static str {
        match self {
            Shape::Cup => "cup",
            Shape::Block => "block",
            Shape::Ball => "ball",
            Shape::Bowl => "bowl",
        }
    }

    pub fn name_ko(&self) -> &'static str {
        match self {
            Shape::Cup => "컵",
            Shape::Block => "블록",
            Shape::Ball => "공",
            Shape::Bowl => "그릇",
        }
    }

    /// Radius of the circle around the centre that holds the whole shape, for a
    /// given `size`; the layout keeps these circles apart.
    pub fn extent(&self, size: f32) -> f32 {
        let r = 0.5 * size;
        match self {
            Shape::Cup => r * Handle::REACH,
            Shape::Block => r * std::f32::consts::SQRT_2,
            Shape::Ball | Shape::Bowl => r,
        }
    }
}

/// A cup's handle: a capsule along the object's angle, from
/// [`Handle::START`] to `end` body radii out from the centre, `radius` body
/// radii thick. The default world draws every handle alike; the randomised
/// one varies length and thickness within [`Handle::REACH`], so a cup's
/// extent, and with it every layout, is the same whatever its handle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    pub end: f32,
    pub radius: f32,
}

impl Handle {
    pub const START: f32 = 0.75;
    const DEFAULT: Handle = Handle {
        end: 1.36,
        radius: 0.22,
    };
    /// The farthest any handle reaches, its end cap included, in body radii.
    pub const REACH: f32 = Self::DEFAULT.end + Self::DEFAULT.radius;

    /// A random handle: 0.12 to 0.3 radii thick, reaching 1.1 radii out or
    /// as far as [`Handle::REACH`] allows.
    pub fn random(rng: &mut impl rand::Rng) -> Handle {
        let radius = rng.random_range(0.12..0.3);
        Handle {
            end: rng.random_range(1.1..Self::REACH - radius),
            radius,
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }

    /// Whether the handle leaves the body and stays within [`Handle::REACH`]
    /// (a scene file may say anything).
    pub fn is_valid(&self) -> bool {
        self.radius > 0.0 && self.end > Self::START && self.end + self.radius <= Self::REACH
    }

    /// SDF of the handle (a capsule along the local x axis) for body radius `r`.
    pub(crate) fn sdf(&self, r: f32, lx: f32, ly: f32) -> f32 {
        let a = Self::START * r;
        let len = (self.end - Self::START) * r;
        let t = ((lx - a) / len).clamp(0.0, 1.0);
        let px = lx - (a + t * len);
        (px * px + ly * ly).sqrt() - self.radius * r
    }
}

impl Default for Handle {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One object on the table. Coordinates are normalised to `[0, 1]` in the image
/// frame (x right, y down), so they do not depend on the render size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub id: usize,
    pub color: Color,
    pub shape: Shape,
    /// Centre of the body (for a cup: of the disk, not counting the handle).
    pub center: [f32; 2],
    /// Diameter of a ball, bowl or cup body; side of a block.
    pub size: f32,
    /// Rotation in radians (the cup's handle points along it; a block turns by it).
    pub angle: f32,
    /// Brightness of this object's paint, around 1.0, so that shading varies.
    pub tone: f32,
    /// A cup's handle (other shapes keep the default, unused).
    #[serde(default, skip_serializing_if = "Handle::is_default")]
    pub handle: Handle,
}

impl Object {
    /// Half the size: the radius of a ball, bowl or cup body, half a block side.
    pub fn radius(&self) -> f32 {
        0.5 * self.size
    }

    /// Radius of the circle around `center` that holds the whole object.
    pub fn extent(&self) -> f32 {
        self.shape.extent(self.size)
    }

    /// Exact hit test in normalised coordinates, the same test the renderer uses.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        self.sdf(x, y) < 0.0
    }

    /// Signed distance from `(x, y)` to the outline: negative inside.
    pub fn sdf(&self, x: f32, y: f32) -> f32 {
        let (lx, ly) = self.local(self.angle.sin_cos(), x, y);
        self.sdf_local(lx, ly)
    }

    /// `(x, y)` in the object's own frame: centred, turned by `-angle`.
    /// `sin_cos` is `self.angle.sin_cos()`, passed in so the renderer computes it once.
    pub(crate) fn local(&self, sin_cos: (f32, f32), x: f32, y: f32) -> (f32, f32) {
        let (s, c) = sin_cos;
        let dx = x - self.center[0];
        let dy = y - self.center[1];
        (dx * c + dy * s, dy * c - dx * s)
    }

    /// The SDF in the object's own frame.
    pub(crate) fn sdf_local(&self, lx: f32, ly: f32) -> f32 {
        let r = self.radius();
        match self.shape {
            Shape::Ball | Shape::Bowl => (lx * lx + ly * ly).sqrt() - r,
            Shape::Block => {
                let qx = lx.abs() - r;
                let qy = ly.abs() - r;
                let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
                outside + qx.max(qy).min(0.0)
            }
            Shape::Cup => {
                let body = (lx * lx + ly * ly).sqrt() - r;
                body.min(self.handle.sdf(r, lx, ly))
            }
        }
    }

    /// Normalised bounding box `[x0, y0, x1, y1]` (exact for every shape).
    pub fn bbox(&self) -> [f32; 4] {
        let [cx, cy] = self.center;
        let r = self.radius();
        let (s, c) = self.angle.sin_cos();
        match self.shape {
            Shape::Ball | Shape::Bowl => [cx - r, cy - r, cx + r, cy + r],
            Shape::Block => {
                let h = r * (c.abs() + s.abs());
                [cx - h, cy - h, cx + h, cy + h]
            }
            Shape::Cup => {
                let hr = self.handle.radius * r;
                let (ax, ay) = (cx + Handle::START * r * c, cy + Handle::START * r * s);
                let (bx, by) = (cx + self.handle.end * r * c, cy + self.handle.end * r * s);
                [
                    (cx - r).min(ax.min(bx) - hr),
                    (cy - r).min(ay.min(by) - hr),
                    (cx + r).max(ax.max(bx) + hr),
                    (cy + r).max(ay.max(by) + hr),
                ]
            }
        }
    }

    /// The outline as a polygon in normalised coordinates, in order around the
    /// shape. Corners are exact; arcs are sampled finely enough that the chord
    /// strays at most `tolerance` from the true curve.
    pub fn outline(&self, tolerance: f32) -> Vec<[f32; 2]> {
        let r = self.radius();
        let (s, c) = self.angle.sin_cos();
        let [cx, cy] = self.center;
        let world = |lx: f32, ly: f32| [cx + lx * c - ly * s, cy + lx * s + ly * c];
        let steps = |radius: f32, sweep: f32| -> usize {
            // A chord over angle `a` strays radius * (1 - cos(a / 2)) from the arc.
            let cos = (1.0 - tolerance / radius.max(1e-6)).clamp(-1.0, 1.0);
            let max_step = 2.0 * cos.acos();
            ((sweep / max_step.max(1e-3)).ceil() as usize).clamp(4, 720)
        };
        let arc = |out: &mut Vec<[f32; 2]>, ox: f32, radius: f32, from: f32, to: f32| {
            let n = steps(radius, (to - from).abs());
            for i in 0..=n {
                let a = from + (to - from) * i as f32 / n as f32;
                out.push(world(ox + radius * a.cos(), radius * a.sin()));
            }
        };
        let mut out = Vec::new();
        match self.shape {
            Shape::Ball | Shape::Bowl => {
                arc(&mut out, 0.0, r, 0.0, TAU);
                out.pop(); // the last point repeats the first
            }
            Shape::Block => {
                for (lx, ly) in [(r, r), (-r, r), (-r, -r), (r, -r)] {
                    out.push(world(lx, ly));
                }
            }
            Shape::Cup => {
                // The handle's straight sides cross the body circle at angle ±alpha.
                let h = self.handle.radius * r;
                let alpha = (h / r).asin();
                // Body arc, then the handle's far cap; the straight sides are the
                // closing edges between them.
                arc(&mut out, 0.0, r, alpha, TAU - alpha);
                arc(&mut out, self.handle.end * r, h, -0.5 * PI, 0.5 * PI);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(shape: Shape, angle: f32) -> Object {
        Object {
            id: 0,
            color: Color::Red,
            shape,
            center: [0.5, 0.5],
            size: 0.2,
            angle,
            tone: 1.0,
            handle: Default::default(),
        }
    }

    #[test]
    fn hit_test_matches_the_geometry() {
        let ball = object(Shape::Ball, 0.0);
        assert!(ball.contains(0.5, 0.5));
        assert!(ball.contains(0.59, 0.5));
        assert!(!ball.contains(0.61, 0.5));
        // A block turned by 45° reaches out along the axes to r * sqrt(2).
        let block = object(Shape::Block, PI / 4.0);
        assert!(block.contains(0.5 + 0.13, 0.5));
        assert!(!block.contains(0.5 + 0.09, 0.5 + 0.09));
        // The handle points along the angle: +x here, and is part of the cup.
        let cup = object(Shape::Cup, 0.0);
        assert!(cup.contains(0.5 + 0.125, 0.5));
        assert!(!cup.contains(0.5 - 0.125, 0.5));
        assert!(!cup.contains(0.5 + 0.125, 0.5 + 0.03));
    }

    #[test]
    fn bbox_and_extent_hold_the_shape() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for shape in Shape::ALL {
            for k in 0..16 {
                let mut o = object(shape, k as f32 * 0.4);
                // Every other cup gets a random handle: it too stays inside
                // the extent, and its outline on the SDF's zero set.
                if k % 2 == 1 {
                    o.handle = Handle::random(&mut rng);
                    assert!(o.handle.end + o.handle.radius <= Handle::REACH);
                    assert!(o.handle.end > Handle::START + 0.3, "{:?}", o.handle);
                }
                let b = o.bbox();
                for p in o.outline(1e-4) {
                    assert!(p[0] >= b[0] - 1e-5 && p[0] <= b[2] + 1e-5, "{shape:?}");
                    assert!(p[1] >= b[1] - 1e-5 && p[1] <= b[3] + 1e-5, "{shape:?}");
                    let d = ((p[0] - 0.5).powi(2) + (p[1] - 0.5).powi(2)).sqrt();
                    assert!(d <= o.extent() + 1e-5, "{shape:?}");
                    // Outline points lie on the zero set of the SDF.
                    assert!(
                        o.sdf(p[0], p[1]).abs() < 1e-4,
                        "{shape:?} {}",
                        o.sdf(p[0], p[1])
                    );
                }
            }
        }
    }
}
