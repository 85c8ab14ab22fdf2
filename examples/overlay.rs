//! Draw overlays through the library API: the default one (the first action
//! token's attention), and a custom one (where the word "red" looked), in
//! another colour map with bilinear upsampling.
//!
//! `cargo run --release --example overlay -- [IMAGE] [COMMAND]`
//! writes `example.overlay.png` and `example.red.png` in the current directory.

use vla_demo::checkpoint::{write_atomic, Source};
use vla_demo::maps::{self, Positions};
use vla_demo::overlay::{self, Colormap, Style, Upsample};
use vla_demo::{preprocess, Pipeline};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let image = args
        .next()
        .unwrap_or_else(|| "examples/scenes/red_cup.png".into());
    let command = args.next().unwrap_or_else(|| "pick up the red cup".into());

    let vla = Pipeline::load(&Source::Embedded, "auto")?;
    let img = preprocess::load_image(image.as_ref())?;
    // capture = true keeps every attention map, not only the first action token's.
    let pred = vla
        .predict(
            std::slice::from_ref(&img),
            &[command.as_str()],
            &Default::default(),
            true,
        )?
        .remove(0);

    // 1. The default overlay.
    let fig = overlay::draw_prediction(&img, &pred, vla.config(), &Style::default())?;
    write_atomic("example.overlay.png".as_ref(), &overlay::png_bytes(&fig)?)?;

    // 2. Any per-patch map: here the query of the word "red", last fusion layer.
    let maps_ = pred
        .maps
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no maps captured"))?;
    let word = pred
        .command
        .words
        .iter()
        .position(|w| w == "red")
        .unwrap_or(0);
    let token = pred
        .command
        .word_ids
        .iter()
        .position(|&w| w == word)
        .unwrap_or(0);
    let at = Positions::new(maps_, pred.command.ids.len()).token(token);
    let red = maps::cross_mean(maps_, maps_.fusion_cross.len() - 1, at)?;
    let style = Style {
        colormap: Colormap::Viridis,
        upsample: Upsample::Bilinear,
        ..Style::default()
    };
    let caption = vec![format!(
        "where the word \"{}\" looked, last fusion layer, mean of the heads",
        pred.command.words[word]
    )];
    let fig = overlay::overlay(
        &img.to_rgb8(),
        &vla_demo::grid::PatchGrid::new(pred.frame, vla.config()),
        &red,
        &overlay::markers(&pred),
        &caption,
        &style,
    )?;
    write_atomic("example.red.png".as_ref(), &overlay::png_bytes(&fig)?)?;
    println!("wrote example.overlay.png and example.red.png");
    Ok(())
}
