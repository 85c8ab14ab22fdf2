//! Attention by hand, through the project's real attention code
//! (`vla_demo::model::attention`), on numbers small enough to check on paper.
//!
//! 1. Score -> Align -> Attend on the worked example, scores [2, 5, 1];
//! 2. the three score functions (dot, scaled dot, additive) side by side;
//! 3. a causal mask, and what it does to the weights.
//!
//! `cargo run --release --example attention_basics`

use anyhow::Result;
use candle::{Device, Tensor};
use vla_demo::model::attention::{align, attend, causal_mask, score, ScoreFn};

fn row(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1()?)
}

fn show(xs: &[f32]) -> String {
    xs.iter()
        .map(|x| format!("{x:7.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> Result<()> {
    let dev = Device::Cpu;

    println!("1. One query, three keys: Score -> Align -> Attend");
    // The model's tensors are (batch, heads, queries, keys): here (1, 1, 1, 3).
    let e = Tensor::new(&[2f32, 5., 1.], &dev)?.reshape((1, 1, 1, 3))?;
    let alpha = align(&e)?;
    let a = row(&alpha)?;
    println!("   scores e        = {}", show(&row(&e)?));
    println!(
        "   weights softmax = {}   (sum {:.4})",
        show(&a),
        a.iter().sum::<f32>()
    );
    // Three values, one per key: (1, 1, 3, 2).
    let v = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev)?.reshape((1, 1, 3, 2))?;
    let c = row(&attend(&alpha, &v)?)?;
    println!("   values v        = [1, 0], [0, 1], [1, 1]");
    println!(
        "   context Σ α v   = [{:.4}, {:.4}]  (mostly the second value: its key scored 5)",
        c[0], c[1]
    );

    println!("\n2. Three ways to score one query against three keys (d = 4)");
    let q = Tensor::new(&[1f32, 0., 1., 0.], &dev)?.reshape((1, 1, 1, 4))?;
    let k = Tensor::new(
        &[[1f32, 1., 0., 0.], [0., 1., 1., 1.], [2., 0., 2., 0.]],
        &dev,
    )?
    .reshape((1, 1, 3, 4))?;
    // The additive score's learned vector w (one per head): e = wᵀ tanh(q + k).
    let w = Tensor::new(&[[0.5f32, -0.5, 1.0, 0.25]], &dev)?;
    println!(
        "   {:<34} {:>23}   {:>23}",
        "score function", "scores e", "weights α"
    );
    for (name, kind) in [
        ("dot, Luong 2015: q·k", ScoreFn::Dot),
        ("scaled dot, Vaswani 2017: q·k/√d", ScoreFn::ScaledDot),
        ("additive, Bahdanau 2014", ScoreFn::Additive),
    ] {
        let e = score(kind, &q, &k, Some(&w))?;
        println!(
            "   {name:<34} {}   {}",
            show(&row(&e)?),
            show(&row(&align(&e)?)?)
        );
    }
    println!(
        "   (dividing by √d keeps the scores, and so the softmax, from getting sharper as d grows)"
    );

    println!("\n3. A causal mask: each word sees itself and the words before it");
    let words = ["pick", "up", "the", "cup"];
    let mask = causal_mask(words.len(), &dev)?;
    print!("   {:<6}", "q \\ k");
    for w in words {
        print!("{w:<6}");
    }
    println!();
    for (i, r) in mask.to_vec2::<f32>()?.iter().enumerate() {
        print!("   {:<6}", words[i]);
        for x in r {
            print!("{:<6}", if x.is_finite() { "○" } else { "×" });
        }
        println!();
    }
    // Equal scores everywhere, masked: row i spreads its weight over i + 1 words.
    let flat = Tensor::zeros((1, 1, 4, 4), candle::DType::F32, &dev)?;
    let weights = align(&flat.broadcast_add(&mask)?)?;
    println!("   equal scores + mask -> softmax, row by row:");
    for (i, r) in weights
        .squeeze(0)?
        .squeeze(0)?
        .to_vec2::<f32>()?
        .iter()
        .enumerate()
    {
        println!("   {:<6}{}", words[i], show(r));
    }
    Ok(())
}
