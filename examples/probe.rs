//! Where does the encoder bind colour to shape? A linear probe on each
//! layer's patch tokens.
//!
//! The patch head reads a held-out pair badly (an orange cup as orange on
//! about 60% of its patches, a purple ball as a ball on about 55%), though it
//! reads orange and balls right 99% of the time on the pairs training
//! showed. This asks each stage of the vision encoder in turn: fit one
//! linear layer to name the colour, and one the shape, of the object under
//! each patch, on scenes of seen pairs only (the `counterfactual` split's,
//! held-out pairs' patches left out); then read the patches of the
//! `unseen-combo` split's scenes with it. A stage where the held-out pairs
//! read as well as the seen ones still holds colour and shape apart.
//!
//! ```console
//! cargo run --release --example probe -- [MODEL_DIR] [SCENES]
//! ```
//!
//! Without `MODEL_DIR` it probes the embedded model; `SCENES` (default 300)
//! is the number of scenes to fit on and, apart, to read.

use anyhow::Result;
use candle::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use vla_demo::checkpoint::{Checkpoint, Source};
use vla_demo::eval::Split;
use vla_demo::grid::{patch_labels, PATCH_COLORS, PATCH_SHAPES};
use vla_demo::model::{Config, Vla};
use vla_demo::preprocess::to_pixels;
use vla_demo::scene::random::HELD_OUT_PAIRS;
use vla_demo::scene::{Color, Shape};

/// Object patches of a split: each stage's tokens, (P, C) per stage, and
/// each patch's `[colour, shape]` class (both ≥ 1: the table is left out).
struct Patches {
    stages: Vec<Tensor>,
    labels: Vec<[u32; 2]>,
}

fn collect(vla: &Vla, cfg: &Config, split: Split, scenes: usize) -> Result<Patches> {
    let dev = Device::Cpu;
    let (mut rows, mut labels): (Vec<Vec<Tensor>>, Vec<[u32; 2]>) = (Vec::new(), Vec::new());
    let mut seed = split.first_seed();
    let mut drawn_scenes = 0;
    while drawn_scenes < scenes {
        let scene = split.scene(seed, cfg)?;
        seed += 1;
        let Some((drawn, _)) = scene else { continue };
        drawn_scenes += 1;
        let keep: Vec<(u32, [u32; 2])> = patch_labels(&drawn.layout.objects, cfg.grid())
            .into_iter()
            .enumerate()
            .filter(|(_, [c, s])| *c > 0 && *s > 0)
            .map(|(i, l)| (i as u32, l))
            .collect();
        if keep.is_empty() {
            continue;
        }
        let idx: Vec<u32> = keep.iter().map(|k| k.0).collect();
        let idx = Tensor::new(idx.as_slice(), &dev)?;
        let stages = vla
            .vision()
            .layers(&to_pixels(&[&drawn.view], cfg, &dev)?)?;
        rows.push(
            stages
                .iter()
                .map(|t| t.squeeze(0)?.index_select(&idx, 0))
                .collect::<candle::Result<_>>()?,
        );
        labels.extend(keep.iter().map(|k| k.1));
    }
    let stages = (0..rows[0].len())
        .map(|s| Tensor::cat(&rows.iter().map(|r| &r[s]).collect::<Vec<_>>(), 0))
        .collect::<candle::Result<_>>()?;
    Ok(Patches { stages, labels })
}

fn is_held_out([c, s]: [u32; 2]) -> bool {
    let pair = (Color::ALL[c as usize - 1], Shape::ALL[s as usize - 1]);
    HELD_OUT_PAIRS.contains(&pair)
}

/// A linear probe from `x` (P, C) to `classes`, fitted to `y` by full-batch
/// AdamW on standardised features. Returns a function that predicts the
/// class of each row of new features.
fn fit(x: &Tensor, y: &[u32], classes: usize) -> Result<impl Fn(&Tensor) -> Result<Vec<u32>>> {
    let (mean, std) = (x.mean_keepdim(0)?, (x.var_keepdim(0)?.sqrt()? + 1e-5)?);
    let scale =
        move |t: &Tensor| -> candle::Result<Tensor> { t.broadcast_sub(&mean)?.broadcast_div(&std) };
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, x.device());
    // Zeros to start from: the fit is convex, so it needs no random start
    // and gives the same probe every run.
    let zeros = candle_nn::Init::Const(0.0);
    let probe = Linear::new(
        vb.get_with_hints((classes, x.dim(1)?), "weight", zeros)?,
        Some(vb.get_with_hints(classes, "bias", zeros)?),
    );
    let mut opt = AdamW::new(
        vars.all_vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let (xs, ys) = (scale(x)?, Tensor::new(y, x.device())?);
    for _ in 0..300 {
        let loss = candle_nn::loss::cross_entropy(&probe.forward(&xs)?, &ys)?;
        opt.backward_step(&loss)?;
    }
    Ok(move |t: &Tensor| -> Result<Vec<u32>> {
        Ok(probe.forward(&scale(t)?)?.argmax(D::Minus1)?.to_vec1()?)
    })
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let source = match args.next() {
        Some(dir) => Source::Dir(dir.into()),
        None => Source::Embedded,
    };
    let scenes: usize = args.next().map_or(Ok(300), |s| s.parse())?;
    anyhow::ensure!(scenes > 0, "SCENES must be at least 1");
    let vla = Checkpoint::open(&source)?.load(&Device::Cpu, DType::F32)?;
    let cfg = vla.config().clone();

    // Fit on seen pairs only.
    let fit_on = collect(&vla, &cfg, Split::Counterfactual, scenes)?;
    let seen: Vec<u32> = (0..fit_on.labels.len() as u32)
        .filter(|&i| !is_held_out(fit_on.labels[i as usize]))
        .collect();
    let seen_idx = Tensor::new(seen.as_slice(), &Device::Cpu)?;
    let read = collect(&vla, &cfg, Split::UnseenCombo, scenes)?;

    // Rows of the table: the seen pairs of the read scenes, then each held-out pair.
    let mut groups: Vec<(String, Vec<usize>)> = vec![("seen pairs".into(), vec![])];
    for (c, s) in HELD_OUT_PAIRS {
        groups.push((format!("{} {}", c.name_en(), s.name_en()), vec![]));
    }
    for (i, &l) in read.labels.iter().enumerate() {
        let pair = (Color::ALL[l[0] as usize - 1], Shape::ALL[l[1] as usize - 1]);
        let g = HELD_OUT_PAIRS
            .iter()
            .position(|p| *p == pair)
            .map_or(0, |k| k + 1);
        groups[g].1.push(i);
    }
    print!("| stage |");
    for (name, rows) in &groups {
        print!(" {name} ({}): colour, shape |", rows.len());
    }
    println!("\n|---|{}", "---|".repeat(groups.len()));
    let stages = fit_on.stages.len();
    for (s, (x_fit, x_read)) in fit_on.stages.iter().zip(&read.stages).enumerate() {
        let name = match s {
            0 => "embedding".to_string(),
            s if s + 1 == stages => "final norm".to_string(),
            s => format!("block {s}"),
        };
        let x = x_fit.index_select(&seen_idx, 0)?;
        let mut got = [vec![], vec![]];
        for (k, classes) in [PATCH_COLORS, PATCH_SHAPES].into_iter().enumerate() {
            let y: Vec<u32> = seen.iter().map(|&i| fit_on.labels[i as usize][k]).collect();
            got[k] = fit(&x, &y, classes)?(x_read)?;
        }
        print!("| {name} |");
        for (_, rows) in &groups {
            let share = |k: usize| {
                let right = rows
                    .iter()
                    .filter(|&&i| got[k][i] == read.labels[i][k])
                    .count();
                100.0 * right as f64 / rows.len().max(1) as f64
            };
            print!(" {:.1}, {:.1}% |", share(0), share(1));
        }
        println!();
    }
    Ok(())
}
