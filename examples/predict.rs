//! The library API in about 30 lines: load the default model, predict an
//! action for an image and a command, and print it.
//!
//! `cargo run --release --example predict -- [IMAGE] [COMMAND]`

use vla_demo::checkpoint::Source;
use vla_demo::{maps, preprocess, Pipeline};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let image = args
        .next()
        .unwrap_or_else(|| "examples/scenes/red_cup.png".into());
    let command = args.next().unwrap_or_else(|| "pick up the red cup".into());

    let vla = Pipeline::load(&Source::Embedded, "auto")?;
    let img = preprocess::load_image(image.as_ref())?;
    let pred = vla
        .predict(&[img], &[command.as_str()], &Default::default(), false)?
        .remove(0);

    println!("{command:?} -> tokens {:?}", pred.command.tokens);
    for s in &pred.steps {
        println!("  {:<8} p = {:.3}", s.token.text(), s.prob);
    }
    for (i, w) in pred.waypoints.iter().enumerate() {
        println!(
            "  waypoint {}: ({:.1}, {:.1}) px, {:?}",
            i + 1,
            w.pixel[0],
            w.pixel[1],
            w.gripper
        );
    }
    let peak = maps::argmax(&pred.boa_attention);
    let grid = vla.config().grid();
    println!(
        "  <boa> looked hardest at patch row {}, column {}",
        peak / grid,
        peak % grid
    );
    Ok(())
}
