//! What the encoder sees. For a model trained with a patch head
//! (`patch_labels`), `vla-demo eval` also asks it what each patch of each
//! picture shows and scores that against the scene: the colour and the
//! shape of the object covering most of the patch, or the table (see
//! [`crate::grid::patch_labels`]). A split where the head still names the
//! objects but the actions miss is a grounding failure; one where the head
//! is lost too is the encoder's.

use std::collections::BTreeMap;

use anyhow::Result;
use candle::{DType, Tensor};
use serde::Serialize;

use crate::grid::{patch_label, patch_owners, read_patch_label, PATCH_COLORS, PATCH_SHAPES};
use crate::scene::{Color, Layout, Shape};

/// The patch head's reading of a split.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PatchScore {
    /// Patches an object covers.
    pub object_patches: usize,
    /// Of those, the share whose colour, shape, or both the head named.
    pub color: f64,
    pub shape: f64,
    pub both: f64,
    /// Patches of the table (distractors included).
    pub table_patches: usize,
    /// Of those, the share the head read as the table (both colour and shape).
    pub table: f64,
    /// Row `s`: of the patches on objects of shape `Shape::ALL[s]`, the
    /// share the head read as the table, then as each shape of `Shape::ALL`.
    pub shape_confusion: Vec<Vec<f64>>,
    /// The shape reading by the size of the object: one entry per bin of
    /// [`SIZE_BINS`], its object patches and the share of shapes named.
    pub shape_by_size: Vec<SizeShare>,
    /// The reading by colour × shape pair of the object ("purple ball"):
    /// its patches and the shares whose colour and whose shape were named.
    /// Only pairs the split drew; on `unseen-combo` this shows whether a
    /// held-out pair loses its colour or its shape.
    pub by_pair: BTreeMap<String, PairShare>,
}

/// One entry of [`PatchScore::by_pair`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PairShare {
    pub patches: usize,
    pub color: f64,
    pub shape: f64,
}

/// Upper edges of the size bins: an object's radius as a share of the
/// model's view side, so that a bin holds the same objects at any
/// resolution (at 160 px, 3% is a radius of 4.8 pixels).
pub const SIZE_BINS: [f32; 4] = [0.03, 0.05, 0.08, f32::INFINITY];

/// One bin of [`PatchScore::shape_by_size`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SizeShare {
    /// The radius, as a share of the view side, that the bin holds up to.
    pub radius_below: f32,
    pub patches: usize,
    pub shape: f64,
}

/// Counts, image by image, before [`PatchTally::score`].
#[derive(Debug, Default)]
pub struct PatchTally {
    objects: usize,
    color: usize,
    shape: usize,
    both: usize,
    tables: usize,
    table: usize,
    /// [true shape - 1][read shape], in patches.
    confusion: [[usize; PATCH_SHAPES]; PATCH_SHAPES - 1],
    /// Per bin of [`SIZE_BINS`]: object patches, and those whose shape was named.
    by_size: [[usize; 2]; SIZE_BINS.len()],
    /// [colour - 1][shape - 1]: object patches, colours named, shapes named.
    by_pair: [[[usize; 3]; PATCH_SHAPES - 1]; PATCH_COLORS - 1],
}

/// The head's reading of every patch of every image, `[colour, shape]` as
/// in [`crate::grid::patch_labels`], from its logits (I, N, PATCH_COLORS +
/// PATCH_SHAPES).
pub fn readings(logits: &Tensor) -> Result<Vec<Vec<[u8; 2]>>> {
    let logits = logits.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    Ok(logits
        .iter()
        .map(|image| {
            image
                .iter()
                .map(|row| read_patch_label(row).map(|v| v as u8))
                .collect()
        })
        .collect())
}

impl PatchTally {
    /// Scores the head's [`readings`] of I images against the objects of
    /// the I `layouts` (view coordinates).
    pub fn add(
        &mut self,
        readings: &[Vec<[u8; 2]>],
        layouts: &[Layout],
        grid: usize,
    ) -> Result<()> {
        anyhow::ensure!(readings.len() == layouts.len(), "one layout per image");
        for (image, layout) in readings.iter().zip(layouts) {
            for (&read, owner) in image.iter().zip(patch_owners(&layout.objects, grid)) {
                let [got_c, got_s] = read.map(u32::from);
                let Some(owner) = owner.map(|i| &layout.objects[i]) else {
                    self.tables += 1;
                    self.table += (got_c == 0 && got_s == 0) as usize;
                    continue;
                };
                let [c, s] = patch_label(owner);
                self.objects += 1;
                self.color += (got_c == c) as usize;
                self.shape += (got_s == s) as usize;
                self.both += (got_c == c && got_s == s) as usize;
                self.confusion[s as usize - 1][got_s as usize] += 1;
                let radius = owner.radius();
                let bin = SIZE_BINS
                    .iter()
                    .position(|&edge| radius < edge)
                    .unwrap_or(0);
                self.by_size[bin][0] += 1;
                self.by_size[bin][1] += (got_s == s) as usize;
                if c > 0 {
                    let pair = &mut self.by_pair[c as usize - 1][s as usize - 1];
                    pair[0] += 1;
                    pair[1] += (got_c == c) as usize;
                    pair[2] += (got_s == s) as usize;
                }
            }
        }
        Ok(())
    }

    /// The shares, or `None` when nothing was added (a model without a head).
    pub fn score(&self) -> Option<PatchScore> {
        let share = |k: usize, n: usize| k as f64 / n.max(1) as f64;
        (self.objects + self.tables > 0).then(|| PatchScore {
            object_patches: self.objects,
            color: share(self.color, self.objects),
            shape: share(self.shape, self.objects),
            both: share(self.both, self.objects),
            table_patches: self.tables,
            table: share(self.table, self.tables),
            shape_confusion: self
                .confusion
                .iter()
                .map(|row| {
                    let n = row.iter().sum();
                    row.iter().map(|&k| share(k, n)).collect()
                })
                .collect(),
            shape_by_size: SIZE_BINS
                .iter()
                .zip(&self.by_size)
                .map(|(&radius_below, &[n, k])| SizeShare {
                    radius_below,
                    patches: n,
                    shape: share(k, n),
                })
                .collect(),
            by_pair: Color::ALL
                .iter()
                .zip(&self.by_pair)
                .flat_map(|(colour, row)| {
                    Shape::ALL.iter().zip(row).filter(|(_, k)| k[0] > 0).map(
                        move |(shape, &[n, c, s])| {
                            let name = format!("{} {}", colour.name_en(), shape.name_en());
                            let share = PairShare {
                                patches: n,
                                color: share(c, n),
                                shape: share(s, n),
                            };
                            (name, share)
                        },
                    )
                })
                .collect(),
        })
    }
}

/// The score as Markdown tables: the shares, then how each shape was read.
pub fn table(p: &PatchScore) -> String {
    let mut s = format!(
        "\n| the patch head read | patches | right |\n|---|---|---|\n\
         | object: colour | {n} | {:.1}% |\n| object: shape | {n} | {:.1}% |\n\
         | object: both | {n} | {:.1}% |\n| table | {} | {:.1}% |\n",
        p.color * 100.0,
        p.shape * 100.0,
        p.both * 100.0,
        p.table_patches,
        p.table * 100.0,
        n = p.object_patches,
    );
    s += "\n| a patch of a ... read as | table |";
    for shape in Shape::ALL {
        s += &format!(" {} |", shape.name_en());
    }
    s += "\n|---|---|---|---|---|---|\n";
    for (shape, row) in Shape::ALL.iter().zip(&p.shape_confusion) {
        s += &format!("| {} |", shape.name_en());
        for share in row {
            s += &format!(" {:.1}% |", share * 100.0);
        }
        s += "\n";
    }
    s +=
        "\n| objects of radius (share of the view side) | patches | shape named |\n|---|---|---|\n";
    let mut from = 0.0;
    for bin in &p.shape_by_size {
        let (a, b) = (from * 100.0, bin.radius_below * 100.0);
        let label = match b.is_finite() {
            true => format!("{a:.0}% to {b:.0}%"),
            false => format!("{a:.0}% and more"),
        };
        s += &format!(
            "| {label} | {} | {:.1}% |\n",
            bin.patches,
            bin.shape * 100.0
        );
        from = bin.radius_below;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Object;

    #[test]
    fn the_tally_scores_colour_and_shape_apart_and_the_table_alone() {
        // A 2 × 2 grid with one blue ball filling patch 0.
        let ball = Object {
            id: 0,
            color: Color::Blue,
            shape: Shape::Ball,
            center: [0.25, 0.25],
            size: 0.5,
            angle: 0.0,
            tone: 1.0,
            handle: Default::default(),
        };
        let layout = Layout {
            seed: 0,
            objects: vec![ball],
        };
        let [c, s] = crate::grid::patch_labels(&layout.objects, 2)[0];
        let k = PATCH_COLORS + PATCH_SHAPES;
        let one_hot = |color: usize, shape: usize| {
            let mut row = vec![0f32; k];
            row[color] = 1.0;
            row[PATCH_COLORS + shape] = 1.0;
            row
        };
        // Patch 0: right colour, wrong shape. Patches 1–3: the table, the
        // last read as a red something.
        let rows = [
            one_hot(c as usize, (s as usize % 4) + 1),
            one_hot(0, 0),
            one_hot(0, 0),
            one_hot(1, 0),
        ];
        let logits = Tensor::from_vec(rows.concat(), (1, 4, k), &candle::Device::Cpu).unwrap();
        let mut tally = PatchTally::default();
        assert_eq!(tally.score(), None);
        tally
            .add(&readings(&logits).unwrap(), &[layout], 2)
            .unwrap();
        let p = tally.score().unwrap();
        assert_eq!((p.object_patches, p.table_patches), (1, 3));
        assert_eq!((p.color, p.shape, p.both), (1.0, 0.0, 0.0));
        assert!((p.table - 2.0 / 3.0).abs() < 1e-9);
        assert!(table(&p).contains("| table | 3 | 66.7% |"));
        // The ball's one patch was read as the next shape; no other shape
        // was seen, so its rows are empty.
        let ball = Shape::ALL.iter().position(|x| *x == Shape::Ball).unwrap();
        let mut want = vec![0.0; PATCH_SHAPES];
        want[s as usize % 4 + 1] = 1.0;
        assert_eq!(p.shape_confusion[ball], want);
        assert_eq!(p.shape_confusion[0], vec![0.0; PATCH_SHAPES]);
        assert!(table(&p).contains("| ball | 0.0% |"));
        // A radius of a quarter of the view: the last size bin, shape missed.
        let sizes: Vec<_> = p
            .shape_by_size
            .iter()
            .map(|b| (b.patches, b.shape))
            .collect();
        assert_eq!(sizes, [(0, 0.0), (0, 0.0), (0, 0.0), (1, 0.0)]);
        assert!(table(&p).contains("| 8% and more | 1 | 0.0% |"));
        // By pair: only the blue ball, colour named, shape missed.
        let pairs: Vec<_> = p.by_pair.iter().collect();
        let want = PairShare {
            patches: 1,
            color: 1.0,
            shape: 0.0,
        };
        assert_eq!(pairs, [(&"blue ball".to_string(), &want)]);
    }
}
