//! The patch grid: where the model's patches lie on the input image, and
//! which patches an object or a map occupies.
//!
//! The model sees a square view of `grid` × `grid` patches of `patch_size`
//! pixels; patch `n` is row `n / grid`, column `n % grid`. The input image
//! sits in that view through the letterbox [`Frame`], so every patch maps
//! back to a box of input pixels ([`PatchGrid`]), and every object of a
//! scene covers some share of every patch ([`patch_coverage`]). Grounding,
//! the report, the export, explain, eval and the overlay all read the grid
//! from here.

use serde::Serialize;

use crate::maps::argmax;
use crate::model::Config;
use crate::scene::{Color, Object, Shape};

/// A patch belongs to an object when at least this share of it is covered.
pub const PATCH_COVER: f32 = 0.1;

/// How the input image sits inside the model's square view.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Frame {
    /// Input image size, pixels.
    pub width: u32,
    pub height: u32,
    /// Model pixels per input pixel.
    pub scale: f32,
    /// Where the input's top-left corner lands in the model's view, model pixels.
    pub pad_x: f32,
    pub pad_y: f32,
    /// Side of the model's square view, pixels.
    pub size: u32,
}

impl Frame {
    /// Model-normalised (u, v) in [0, 1] -> input pixels (x, y), continuous:
    /// pixel (i, j) covers [i, i+1) × [j, j+1).
    pub fn to_input_px(&self, u: f32, v: f32) -> (f32, f32) {
        let s = self.size as f32;
        (
            (u * s - self.pad_x) / self.scale,
            (v * s - self.pad_y) / self.scale,
        )
    }

    /// Model-normalised (u, v) -> normalised in the input image's own frame.
    pub fn to_input_norm(&self, u: f32, v: f32) -> (f32, f32) {
        let (x, y) = self.to_input_px(u, v);
        (x / self.width as f32, y / self.height as f32)
    }

    /// Input-normalised (x, y) -> model-normalised (u, v).
    pub fn from_input_norm(&self, x: f32, y: f32) -> (f32, f32) {
        let s = self.size as f32;
        let u = (x * self.width as f32 * self.scale + self.pad_x) / s;
        let v = (y * self.height as f32 * self.scale + self.pad_y) / s;
        (u, v)
    }
}

/// How the patch grid sits on an image of some size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchGrid {
    pub frame: Frame,
    pub grid: usize,
    pub patch_size: usize,
}

/// One patch's box, in the model's view and in the input image.
#[derive(Debug, Clone, Serialize)]
pub struct PatchBox {
    pub index: usize,
    pub row: usize,
    pub col: usize,
    /// `[x0, y0, x1, y1]` in the model's square view, pixels.
    pub model_px: [f32; 4],
    /// The same box in input pixels (may extend past the image where the
    /// patch covers letterbox padding).
    pub input_px: [f32; 4],
    /// Whether any of the patch lies on the image (not only on padding).
    pub on_image: bool,
}

impl PatchGrid {
    /// The patch grid of a model on an image letterboxed into `frame`.
    pub fn new(frame: Frame, cfg: &Config) -> Self {
        Self {
            frame,
            grid: cfg.grid(),
            patch_size: cfg.patch_size,
        }
    }

    /// Continuous patch coordinates (column, row) of an input pixel's centre.
    pub fn patch_coords(&self, x: u32, y: u32) -> (f32, f32) {
        let f = &self.frame;
        let mx = (x as f32 + 0.5) * f.scale + f.pad_x;
        let my = (y as f32 + 0.5) * f.scale + f.pad_y;
        (mx / self.patch_size as f32, my / self.patch_size as f32)
    }

    /// A patch boundary (in patches from the model's left/top edge) in input pixels.
    pub fn boundary_px(&self, col: usize, row: usize) -> (f32, f32) {
        let f = &self.frame;
        let p = self.patch_size as f32;
        (
            (col as f32 * p - f.pad_x) / f.scale,
            (row as f32 * p - f.pad_y) / f.scale,
        )
    }

    /// The same grid on a copy of the image resized to `width` × `height`.
    pub fn resized(&self, width: u32, height: u32) -> PatchGrid {
        let k = width as f32 / self.frame.width as f32;
        PatchGrid {
            frame: Frame {
                width,
                height,
                scale: self.frame.scale / k,
                ..self.frame
            },
            ..*self
        }
    }

    /// Centre of patch `n` in input pixels (may lie in the letterbox padding).
    pub fn patch_centre_px(&self, n: usize) -> [f32; 2] {
        let (row, col) = (n / self.grid, n % self.grid);
        let (x0, y0) = self.boundary_px(col, row);
        let (x1, y1) = self.boundary_px(col + 1, row + 1);
        [(x0 + x1) / 2.0, (y0 + y1) / 2.0]
    }

    /// Every patch's box in model and input pixels, row by row.
    pub fn patch_boxes(&self) -> Vec<PatchBox> {
        let p = self.patch_size as f32;
        (0..self.grid * self.grid)
            .map(|index| {
                let (row, col) = (index / self.grid, index % self.grid);
                let (x0, y0) = self.boundary_px(col, row);
                let (x1, y1) = self.boundary_px(col + 1, row + 1);
                let on_image = x1 > 0.0
                    && y1 > 0.0
                    && x0 < self.frame.width as f32
                    && y0 < self.frame.height as f32;
                PatchBox {
                    index,
                    row,
                    col,
                    model_px: [
                        col as f32 * p,
                        row as f32 * p,
                        (col + 1) as f32 * p,
                        (row + 1) as f32 * p,
                    ],
                    input_px: [x0, y0, x1, y1],
                    on_image,
                }
            })
            .collect()
    }
}

/// Share of each patch (row by row, `grid` × `grid`) covered by `obj`,
/// measured on an 8 × 8 grid of sample points per patch.
pub fn patch_coverage(obj: &Object, grid: usize) -> Vec<f32> {
    const SUB: usize = 8;
    let n = (grid * SUB) as f32;
    let mut cover = vec![0f32; grid * grid];
    let [x0, y0, x1, y1] = obj.bbox();
    for (p, c) in cover.iter_mut().enumerate() {
        let (gy, gx) = (p / grid, p % grid);
        // Skip patches outside the bounding box.
        let (px0, py0) = (gx as f32 / grid as f32, gy as f32 / grid as f32);
        let (px1, py1) = ((gx + 1) as f32 / grid as f32, (gy + 1) as f32 / grid as f32);
        if px1 < x0 || px0 > x1 || py1 < y0 || py0 > y1 {
            continue;
        }
        let mut hits = 0;
        for sy in 0..SUB {
            for sx in 0..SUB {
                let x = ((gx * SUB + sx) as f32 + 0.5) / n;
                let y = ((gy * SUB + sy) as f32 + 0.5) / n;
                hits += obj.contains(x, y) as usize;
            }
        }
        *c = hits as f32 / (SUB * SUB) as f32;
    }
    cover
}

/// 1 for the patches that belong to `obj` (covered at least [`PATCH_COVER`]), 0 elsewhere.
pub fn target_patches(obj: &Object, grid: usize) -> Vec<f32> {
    patch_coverage(obj, grid)
        .into_iter()
        .map(|c| (c >= PATCH_COVER) as u8 as f32)
        .collect()
}

/// Classes of the patch labels: "the table", then each colour
/// ([`Color::ALL`]), then each shape ([`Shape::ALL`]).
pub const PATCH_COLORS: usize = 1 + Color::ALL.len();
pub const PATCH_SHAPES: usize = 1 + Shape::ALL.len();

/// What each patch shows, as training's patch head learns it: per patch,
/// `[colour, shape]` of the object covering most of it (at least
/// [`PATCH_COVER`]), as 1 + its index in [`Color::ALL`] and
/// [`Shape::ALL`], or `[0, 0]` for the table (and for distractors, which
/// are not among `objects`).
pub fn patch_labels(objects: &[Object], grid: usize) -> Vec<[u32; 2]> {
    patch_owners(objects, grid)
        .into_iter()
        .map(|owner| owner.map_or([0, 0], |i| patch_label(&objects[i])))
        .collect()
}

/// The label of a patch that `obj` covers: `[colour, shape]` as 1 + their
/// indices in [`Color::ALL`] and [`Shape::ALL`]. A colour no command names
/// is labelled 0, like the table: the patch head learns its shape only.
pub fn patch_label(obj: &Object) -> [u32; 2] {
    let color = Color::ALL
        .iter()
        .position(|c| *c == obj.color)
        .map_or(0, |i| i + 1);
    let shape = Shape::ALL
        .iter()
        .position(|s| *s == obj.shape)
        .map_or(0, |i| i + 1);
    [color as u32, shape as u32]
}

/// Per patch, the index in `objects` of the object covering most of it (at
/// least [`PATCH_COVER`]; the later object on a tie, as it is drawn on top),
/// or `None` for the table.
pub fn patch_owners(objects: &[Object], grid: usize) -> Vec<Option<usize>> {
    let mut best = vec![(PATCH_COVER, None); grid * grid];
    for (i, obj) in objects.iter().enumerate() {
        for (b, c) in best.iter_mut().zip(patch_coverage(obj, grid)) {
            if c >= b.0 {
                *b = (c, Some(i));
            }
        }
    }
    best.into_iter().map(|(_, owner)| owner).collect()
}

/// The patch head's reading of one patch from its logits (colours, then
/// shapes), as `[colour, shape]` in the labels of [`patch_labels`].
pub fn read_patch_label(logits: &[f32]) -> [u32; 2] {
    let (colors, shapes) = logits.split_at(PATCH_COLORS);
    [argmax(colors) as u32, argmax(shapes) as u32]
}

/// A reading in words: "red cup", "the table", or what was read of the two.
pub fn patch_label_name([c, s]: [u32; 2]) -> String {
    let color = (c as usize).checked_sub(1).and_then(|i| Color::ALL.get(i));
    let shape = (s as usize).checked_sub(1).and_then(|i| Shape::ALL.get(i));
    match (color, shape) {
        (Some(c), Some(s)) => format!("{} {}", c.name_en(), s.name_en()),
        (Some(c), None) => format!("{}, no shape", c.name_en()),
        (None, Some(s)) => format!("{}, no colour", s.name_en()),
        (None, None) => "the table".to_string(),
    }
}

/// An object of the scene and how much of each patch it covers.
#[derive(Debug, Clone)]
pub struct SceneObject {
    pub id: usize,
    pub name: String,
    /// Per patch, the share covered (see [`patch_coverage`]).
    pub coverage: Vec<f32>,
}

/// What a patch lies on: the object covering most of it (at least
/// [`PATCH_COVER`]), or the table.
pub fn object_at(objects: &[SceneObject], patch: usize) -> String {
    objects
        .iter()
        .filter(|o| o.coverage.get(patch).copied().unwrap_or(0.0) >= PATCH_COVER)
        .max_by(|a, b| a.coverage[patch].total_cmp(&b.coverage[patch]))
        .map_or_else(|| "table".to_string(), |o| o.name.clone())
}

/// The smallest set of patches holding at least `share` of the map's mass
/// (DINO's "attention mass" contour): take patches from the largest down
/// until their sum reaches `share` of the total.
pub fn mass_set(values: &[f32], share: f32) -> Vec<bool> {
    let total: f32 = values.iter().map(|v| v.max(0.0)).sum();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut keep = vec![false; values.len()];
    let mut acc = 0.0;
    for i in order {
        if total <= 0.0 || acc >= share * total {
            break;
        }
        keep[i] = true;
        acc += values[i].max(0.0);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 224 px view of 14 × 14 patches, which the numbers below assume.
    fn patch_grid(w: u32, h: u32) -> PatchGrid {
        let mut cfg = Config::tiny();
        cfg.image_size = 224;
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(w, h));
        let (_, frame) = crate::preprocess::letterbox(&img, &cfg);
        PatchGrid::new(frame, &cfg)
    }

    fn object(shape: Shape, center: [f32; 2], size: f32) -> Object {
        Object {
            id: 0,
            color: Color::Red,
            shape,
            center,
            size,
            angle: 0.0,
            tone: 1.0,
            handle: Default::default(),
        }
    }

    #[test]
    fn patch_labels_name_the_colour_and_shape_covering_most_of_each_patch() {
        // A 4 × 4 grid: a blue ball filling patch (1, 1) and a red block
        // reaching into it a little, which alone covers patch (1, 2).
        let mut ball = object(Shape::Ball, [0.375, 0.375], 0.25);
        ball.color = Color::Blue;
        let block = object(Shape::Block, [0.55, 0.375], 0.2);
        let labels = patch_labels(&[block.clone(), ball.clone()], 4);
        let blue = 1 + Color::ALL.iter().position(|c| *c == Color::Blue).unwrap() as u32;
        let ball_id = 1 + Shape::ALL.iter().position(|s| *s == Shape::Ball).unwrap() as u32;
        let block_id = 1 + Shape::ALL.iter().position(|s| *s == Shape::Block).unwrap() as u32;
        assert_eq!(labels[4 + 1], [blue, ball_id]);
        assert_eq!(labels[4 + 2], [1, block_id], "red is Color::ALL[0]");
        assert_eq!(labels[0], [0, 0], "the table");
        assert_eq!(labels[15], [0, 0]);
        // The order of the objects does not matter.
        assert_eq!(patch_labels(&[ball, block], 4), labels);
        assert_eq!(labels.iter().filter(|l| **l != [0, 0]).count(), 2);
        // Read back from logits, and in words.
        let mut logits = vec![0f32; PATCH_COLORS + PATCH_SHAPES];
        logits[blue as usize] = 2.0;
        logits[PATCH_COLORS + ball_id as usize] = 1.0;
        assert_eq!(read_patch_label(&logits), [blue, ball_id]);
        assert_eq!(patch_label_name([blue, ball_id]), "blue ball");
        assert_eq!(patch_label_name([0, 0]), "the table");
        assert_eq!(patch_label_name([blue, 0]), "blue, no shape");
    }

    #[test]
    fn pixels_find_their_patch_through_the_letterbox() {
        // 448×224: scale 0.5, padded 56 model pixels at the top.
        let g = patch_grid(448, 224);
        assert_eq!(g.patch_coords(0, 0), (0.25 / 16.0, (0.25 + 56.0) / 16.0));
        // The last input column is in the last patch column.
        assert_eq!(g.patch_coords(447, 0).0 as usize, 13);
        // The first input row lies in patch row 3 (rows 0-2 are all padding, row 3 half).
        assert_eq!(g.patch_coords(0, 0).1 as usize, 3);
        // Boundaries map back: patch column 7 starts at input x 224.
        assert_eq!(g.boundary_px(7, 0).0, 224.0);
    }

    #[test]
    fn patch_centres_and_boxes_in_input_pixels() {
        // 224×224: no letterbox, 16 px patches; patch 15 is row 1, column 1.
        let g = patch_grid(224, 224);
        assert_eq!(g.patch_centre_px(15), [24.0, 24.0]);
        let b = &g.patch_boxes()[15];
        assert_eq!((b.row, b.col), (1, 1));
        assert_eq!(b.input_px, [16.0, 16.0, 32.0, 32.0]);
        assert_eq!(b.model_px, b.input_px);
        // 448×224: patch row 0 lies wholly in the padding above the image.
        let g = patch_grid(448, 224);
        let boxes = g.patch_boxes();
        assert!(!boxes[0].on_image && boxes[3 * 14].on_image);
        assert_eq!(boxes[3 * 14].input_px, [0.0, -16.0, 32.0, 16.0]);
    }

    #[test]
    fn a_frame_maps_there_and_back() {
        // A 100×50 image in a 200 px view: scale 2, padded 50 px top and bottom.
        let f = Frame {
            width: 100,
            height: 50,
            scale: 2.0,
            pad_x: 0.0,
            pad_y: 50.0,
            size: 200,
        };
        assert_eq!(f.to_input_px(0.5, 0.5), (50.0, 25.0));
        assert_eq!(f.to_input_norm(0.0, 0.25), (0.0, 0.0));
        assert_eq!(f.from_input_norm(1.0, 1.0), (1.0, 0.75));
        let (u, v) = f.from_input_norm(0.3, 0.6);
        let (x, y) = f.to_input_norm(u, v);
        assert!((x - 0.3).abs() < 1e-6 && (y - 0.6).abs() < 1e-6);
    }

    #[test]
    fn coverage_of_a_square_and_a_disk_by_hand() {
        // A block of side 0.5 at the centre of a 2 × 2 grid covers a quarter of
        // every patch: 4 of each patch's 8 sample columns and 4 of its 8 rows.
        let block = object(Shape::Block, [0.5, 0.5], 0.5);
        assert_eq!(patch_coverage(&block, 2), vec![0.25; 4]);
        assert_eq!(target_patches(&block, 2), vec![1.0; 4]);
        // A ball of radius 0.1 at (0.25, 0.25): of the samples at offsets
        // ±1/32 and ±3/32 from its centre, the 4 with both offsets 1/32 and
        // the 8 with one of each lie inside (1/32² + 3/32² < 0.1²): 12 of 64.
        let ball = object(Shape::Ball, [0.25, 0.25], 0.2);
        assert_eq!(patch_coverage(&ball, 2), vec![0.1875, 0.0, 0.0, 0.0]);
        assert_eq!(target_patches(&ball, 2), vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn objects_need_a_real_share_of_a_patch() {
        let objs = vec![
            SceneObject {
                id: 0,
                name: "red cup".into(),
                coverage: vec![0.05, 0.6, 0.3],
            },
            SceneObject {
                id: 1,
                name: "blue ball".into(),
                coverage: vec![0.0, 0.3, 0.4],
            },
        ];
        assert_eq!(object_at(&objs, 0), "table");
        assert_eq!(object_at(&objs, 1), "red cup");
        assert_eq!(object_at(&objs, 2), "blue ball");
    }

    #[test]
    fn mass_set_is_the_smallest_set_reaching_the_share() {
        let v = [0.05, 0.5, 0.05, 0.3, 0.1];
        assert_eq!(mass_set(&v, 0.6), vec![false, true, false, true, false]);
        assert_eq!(mass_set(&v, 0.5), vec![false, true, false, false, false]);
        assert_eq!(mass_set(&[0.0; 3], 0.6), vec![false; 3]);
    }
}
