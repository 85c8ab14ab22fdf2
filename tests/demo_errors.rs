//! End-to-end tests of the demo's input handling: every image format, size
//! and aspect ratio, unknown words, and every error case (one `error:` line,
//! a non-zero exit, no panic, no file left behind).
//!
//! Run with `cargo test --release --test demo_errors`.

mod demo_common;

use std::path::Path;

use demo_common::*;

#[test]
fn any_format_size_and_aspect_ratio_works() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::open(red_cup()).unwrap();
    let wide = image::DynamicImage::ImageRgb8(image::imageops::resize(
        &img.to_rgb8(),
        400,
        150,
        image::imageops::FilterType::Triangle,
    ));
    let grey16 = image::DynamicImage::ImageLuma16(img.to_luma16());
    let rgba = image::DynamicImage::ImageRgba8(img.to_rgba8());
    let cases: [(&str, &image::DynamicImage); 6] = [
        ("a.jpg", &img),
        ("a.webp", &rgba),
        ("a.bmp", &img),
        ("grey16.png", &grey16),
        ("rgba.png", &rgba),
        ("wide.png", &wide),
    ];
    for (name, im) in cases {
        let path = dir.path().join(name);
        im.save(&path).unwrap();
        let j = json(&run_in(
            dir.path(),
            &[
                "--image",
                s(&path),
                "--cmd",
                "pick up the red cup",
                "--json",
            ],
        ));
        let (w, h) = (im.width() as f64, im.height() as f64);
        assert_eq!(j["image"]["width"].as_f64(), Some(w), "{name}");
        let p = &j["attention"]["peak_pixel"];
        assert!(
            p[0].as_f64().unwrap() <= w && p[1].as_f64().unwrap() <= h,
            "{name}"
        );
        let o = &j["overlay"];
        assert_eq!(
            o["image_region"],
            serde_json::json!([0, 0, im.width(), im.height()]),
            "{name}"
        );
        let png = image::open(o["path"].as_str().map(|p| dir.path().join(p)).unwrap()).unwrap();
        assert_eq!(
            (png.width() as u64, png.height() as u64),
            (o["width"].as_u64().unwrap(), o["height"].as_u64().unwrap())
        );
    }
}

#[test]
fn unknown_words_run_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &[
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the zorblax",
            "--no-overlay",
        ],
    );
    ok(&r);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("zorblax")),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_inputs_get_one_error_line_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cup = s(&red_cup()).to_string();
    let run = |args: &[&str]| run_in(d, args);

    fails_with(
        &run(&["--image", "missing.png", "--cmd", "pick up the red cup"]),
        "does not exist",
    );
    std::fs::write(d.join("notes.txt"), "this is not an image").unwrap();
    fails_with(
        &run(&["--image", "notes.txt", "--cmd", "pick up the red cup"]),
        "not an image",
    );
    std::fs::write(d.join("text.png"), "this is not an image").unwrap();
    fails_with(
        &run(&["--image", "text.png", "--cmd", "pick up the red cup"]),
        "not a readable image",
    );
    let bytes = std::fs::read(red_cup()).unwrap();
    std::fs::write(d.join("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &run(&["--image", "cut.png", "--cmd", "pick up the red cup"]),
        "truncated",
    );
    // A BMP header that claims 20000 × 20000 pixels: refused before decoding.
    let mut bomb = b"BM".to_vec();
    bomb.extend(0u32.to_le_bytes()); // file size (ignored)
    bomb.extend(0u32.to_le_bytes());
    bomb.extend(54u32.to_le_bytes()); // pixel data offset
    bomb.extend(40u32.to_le_bytes()); // BITMAPINFOHEADER
    bomb.extend(20000i32.to_le_bytes());
    bomb.extend(20000i32.to_le_bytes());
    bomb.extend(1u16.to_le_bytes());
    bomb.extend(24u16.to_le_bytes());
    bomb.extend([0u8; 24]);
    std::fs::write(d.join("bomb.bmp"), &bomb).unwrap();
    fails_with(
        &run(&["--image", "bomb.bmp", "--cmd", "pick up the red cup"]),
        "over the limit",
    );

    fails_with(&run(&["--image", &cup, "--cmd", "   "]), "empty");
    let long = vec!["red"; 80].join(" ");
    fails_with(&run(&["--image", &cup, "--cmd", &long]), "at most");
    fails_with(
        &run(&[
            "--image",
            &cup,
            "--cmd",
            "pick up the red cup",
            "--model-dir",
            "no-such-model",
        ]),
        "does not exist",
    );
    std::fs::create_dir(d.join("broken")).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(d.join("broken").join(f), "garbage").unwrap();
    }
    fails_with(
        &run(&[
            "--image",
            &cup,
            "--cmd",
            "pick up the red cup",
            "--model-dir",
            "broken",
        ]),
        "config.json",
    );
    // A real config and tokenizer with truncated weights.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(vla_demo::checkpoint::SHIPPED_DIR);
    if shipped.is_dir() {
        std::fs::create_dir(d.join("cut-model")).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(shipped.join(f), d.join("cut-model").join(f)).unwrap();
        }
        let w = std::fs::read(shipped.join("model.safetensors")).unwrap();
        std::fs::write(d.join("cut-model/model.safetensors"), &w[..w.len() / 3]).unwrap();
        fails_with(
            &run(&[
                "--image",
                &cup,
                "--cmd",
                "pick up the red cup",
                "--model-dir",
                "cut-model",
            ]),
            "model.safetensors",
        );
    }
    fails_with(
        &run(&[
            "--image",
            &cup,
            "--cmd",
            "pick up the red cup",
            "--overlay",
            "no-such-dir/o.png",
        ]),
        "cannot write",
    );
    // A later file that cannot be written takes the earlier ones with it.
    fails_with(
        &run(&[
            "--image",
            &cup,
            "--cmd",
            "pick up the red cup",
            "--export",
            "no-such-dir/a.npz",
        ]),
        "cannot write",
    );
    #[cfg(not(feature = "cuda"))]
    fails_with(
        &run(&[
            "--image",
            &cup,
            "--cmd",
            "pick up the red cup",
            "--device",
            "cuda",
        ]),
        "without CUDA",
    );
    // The input is never overwritten.
    std::fs::copy(red_cup(), d.join("scene.png")).unwrap();
    fails_with(
        &run(&[
            "--image",
            "scene.png",
            "--cmd",
            "pick up the red cup",
            "--overlay",
            "scene.png",
        ]),
        "refusing to overwrite",
    );
    assert_eq!(std::fs::read(d.join("scene.png")).unwrap(), bytes);

    // No output file was left behind by any failure.
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("overlay") || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
