//! Image decode and preprocess: any bytes either decode to an image within
//! the pixel limit, which letterboxes into the model's view, or give an
//! error. Never a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vla_demo::limits::MAX_PIXELS;
use vla_demo::model::Config;
use vla_demo::preprocess::{decode_image, letterbox, to_pixels};

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode_image(data, None) else {
        return;
    };
    let (w, h) = (img.width() as u64, img.height() as u64);
    assert!(w >= 1 && h >= 1 && w * h <= MAX_PIXELS);
    let cfg = Config::tiny();
    let (square, frame) = letterbox(&img, &cfg);
    assert_eq!(square.width() as usize, cfg.image_size);
    assert!(frame.scale.is_finite() && frame.scale > 0.0);
    let pixels = to_pixels(&[&square], &cfg, &candle::Device::Cpu).expect("preprocess");
    let max = pixels.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(max.is_finite());
});
