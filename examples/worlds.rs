//! The worlds side by side: a sheet of scenes from the plain renderer, the
//! randomised world that training draws from, and the held-out style that
//! only `vla-demo eval --split style` uses, each as the model sees it (160 px,
//! letterboxed).
//!
//! ```console
//! cargo run --release --example worlds -- worlds.png
//! ```

use anyhow::Result;
use image::RgbImage;
use vla_demo::eval::Split;
use vla_demo::model::Config;

fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "worlds.png".into());
    let cfg = Config::tiny();
    let s = cfg.image_size as u32;
    let per_row = 6u32;
    let rows = [
        Split::Iid,
        Split::Counterfactual,
        Split::Style,
        Split::Small,
        Split::Crowded,
    ];
    let mut sheet = RgbImage::from_pixel(
        per_row * (s + 4),
        rows.len() as u32 * (s + 4),
        image::Rgb([255; 3]),
    );
    for (r, split) in rows.iter().enumerate() {
        let mut col = 0;
        let mut seed = split.first_seed();
        while col < per_row {
            if let Some((drawn, _)) = split.scene(seed, &cfg)? {
                image::imageops::replace(
                    &mut sheet,
                    &drawn.view,
                    (col * (s + 4)) as i64,
                    (r as u32 * (s + 4)) as i64,
                );
                col += 1;
            }
            seed += 1;
        }
        println!("row {}: split {}", r + 1, split.name());
    }
    sheet.save(&out)?;
    println!("wrote {out}");
    Ok(())
}
