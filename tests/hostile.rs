//! The hostile corpus: several hundred bad, odd or borderline inputs across
//! every subcommand, generated here (nothing large is committed). For each,
//! the real binary runs in its own directory with its own TMPDIR, and the
//! test checks the promise of docs/RELIABILITY.md: exit code 2 with exactly
//! one `error:` line for a refusal (exit 0 and no `error:` line for
//! success), never a panic, a signal or a hang, no temporary file left
//! anywhere, and no file added or changed by a failed run.
//!
//! Run with `cargo test --release --test hostile`; it prints how many cases
//! ran and how long they took.

mod demo_common;
mod hostile_cases;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hostile_cases::{copy_dir, run_all, snapshot, Case, Expect, Out, Safetensors};
use image::{DynamicImage, ImageFormat};

const CUP: &str = "pick up the red cup";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vla-demo"))
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(vla_demo::checkpoint::SHIPPED_DIR)
}

/// Shared, read-only inputs: images, model directories, a training run.
struct Fixtures {
    root: PathBuf,
    cup: PathBuf,
    /// Encoded images by extension.
    encoded: Vec<(&'static str, Vec<u8>)>,
    tiny_train: PathBuf,
    run: PathBuf,
}

/// A needle for `Expect::Fail` made at run time.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The red-cup scene, made smaller so decoding is quick, in every format
/// the image crate can write here.
fn encodings(img: &DynamicImage) -> Vec<(&'static str, Vec<u8>)> {
    let small = img.resize_exact(96, 96, image::imageops::FilterType::Triangle);
    let rgb = DynamicImage::ImageRgb8(small.to_rgb8());
    let rgba = DynamicImage::ImageRgba8(small.to_rgba8());
    let formats: [(&str, ImageFormat, &DynamicImage); 11] = [
        ("png", ImageFormat::Png, &rgb),
        ("jpg", ImageFormat::Jpeg, &rgb),
        ("gif", ImageFormat::Gif, &rgba),
        ("bmp", ImageFormat::Bmp, &rgb),
        ("tiff", ImageFormat::Tiff, &rgb),
        ("webp", ImageFormat::WebP, &rgba),
        ("ico", ImageFormat::Ico, &rgba),
        ("ppm", ImageFormat::Pnm, &rgb),
        ("tga", ImageFormat::Tga, &rgb),
        ("qoi", ImageFormat::Qoi, &rgb),
        (
            "ff",
            ImageFormat::Farbfeld,
            &DynamicImage::ImageRgba16(small.to_rgba16()),
        ),
    ];
    formats
        .into_iter()
        .map(|(ext, f, im)| {
            let mut buf = std::io::Cursor::new(Vec::new());
            im.write_to(&mut buf, f).unwrap();
            (ext, buf.into_inner())
        })
        .collect()
}

fn fixtures(root: &Path) -> Fixtures {
    let cup = root.join("red_cup.png");
    std::fs::copy(demo_common::red_cup(), &cup).unwrap();
    let encoded = encodings(&image::open(&cup).unwrap());
    for (ext, bytes) in &encoded {
        std::fs::write(root.join(format!("small.{ext}")), bytes).unwrap();
    }
    let cfg = demo_common::tiny_train_config();
    let tiny_train = root.join("tiny-train.json");
    std::fs::write(&tiny_train, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let run = root.join("run");
    let out = std::process::Command::new(bin())
        .args(["train", "--quiet", "--steps", "1", "--config"])
        .arg(&tiny_train)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the fixture run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Fixtures {
        root: root.to_path_buf(),
        cup,
        encoded,
        tiny_train,
        run,
    }
}

fn demo(name: impl Into<String>, image: &str, cmd: &str, expect: Expect) -> Case {
    Case::new(
        name,
        &["--image", image, "--cmd", cmd, "--no-overlay"],
        expect,
    )
}

/// Images: every format whole, cut, corrupted, oversized, empty, and
/// things that are not image files at all.
fn image_cases(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    for (ext, bytes) in &fx.encoded {
        let name = format!("x.{ext}");
        cases.push(demo(format!("{ext} whole"), &name, CUP, Expect::Ok).file(&name, bytes.clone()));
        // Cut anywhere before the end: the pixels are incomplete.
        for frac in [0.02, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.97] {
            let n = ((bytes.len() as f64 * frac) as usize).max(1);
            cases.push(
                demo(
                    format!("{ext} cut at {frac}"),
                    &name,
                    CUP,
                    Expect::Fail(leak(&name)),
                )
                .file(&name, bytes[..n].to_vec()),
            );
        }
        // One byte changed: may still be an image, or not.
        for k in 0..6 {
            let mut b = bytes.clone();
            let at = (b.len() - 1) * k / 5;
            b[at] ^= 0x5A;
            cases.push(
                demo(
                    format!("{ext} byte {at} flipped"),
                    &name,
                    CUP,
                    Expect::Either,
                )
                .file(&name, b),
            );
        }
    }
    // Images from another encoder (the fuzzers' seeds, made with Pillow):
    // progressive and CMYK JPEG, lossy WebP, grey and RGBA PNG, QOI, ICO.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/image");
    let mut seed_files: Vec<PathBuf> = std::fs::read_dir(&seeds)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    seed_files.sort();
    for path in seed_files {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The image crate reads only RGBA PNGs inside an ICO; Pillow writes
        // RGB ones: a clean refusal is fine there.
        let whole = if name.ends_with(".ico") {
            Expect::Either
        } else {
            Expect::Ok
        };
        cases
            .push(demo(format!("seed {name} whole"), &name, CUP, whole).file(&name, bytes.clone()));
        cases.push(
            demo(
                format!("seed {name} cut in half"),
                &name,
                CUP,
                Expect::Fail(leak(&name)),
            )
            .file(&name, bytes[..bytes.len() / 2].to_vec()),
        );
        if name.ends_with(".jpg") {
            // Cut halfway through the first scan's data, the end marker put
            // back: the decoder alone would fill the rest with grey (or,
            // progressive, stop at a blur).
            let sos = bytes.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
            let data = sos + 2 + u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]) as usize;
            let mut cut = bytes[..data + (bytes.len() - 2 - data) / 2].to_vec();
            cut.extend([0xFF, 0xD9]);
            cases.push(
                demo(
                    format!("seed {name} cut in its scan, end marker put back"),
                    &name,
                    CUP,
                    Expect::Fail("could not be decoded"),
                )
                .file(&name, cut),
            );
        }
    }
    // The right bytes under the wrong extension: the bytes decide.
    let png = &fx.encoded[0].1;
    cases.push(demo("png named .jpg", "p.jpg", CUP, Expect::Ok).file("p.jpg", png.clone()));
    cases.push(demo("png without extension", "p", CUP, Expect::Ok).file("p", png.clone()));
    for (name, bytes) in bombs() {
        cases.push(demo(format!("{name} bomb"), &name, CUP, Expect::Fail("")).file(&name, bytes));
    }
    for (name, bytes) in tiny_images() {
        let expect = if name.starts_with("ok") {
            Expect::Ok
        } else if name.starts_with("strip") {
            Expect::Fail("16:1")
        } else {
            Expect::Fail("")
        };
        cases.push(demo(format!("tiny {name}"), &name, CUP, expect).file(&name, bytes));
    }
    let not_images: [(&str, &[u8]); 6] = [
        ("empty.png", b""),
        ("one.png", &[0x89]),
        ("text.png", b"not an image"),
        ("notes.txt", b"hello"),
        ("html.png", b"<html><body>404</body></html>"),
        ("svg.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
    ];
    for (name, bytes) in not_images {
        cases.push(
            demo(
                format!("not an image: {name}"),
                name,
                CUP,
                Expect::Fail(name),
            )
            .file(name, bytes.to_vec()),
        );
    }
    // Formats the image crate knows but vla-demo is not built to read: an
    // OpenEXR with rows missing used to decode as black rows.
    let exr = [&[0x76, 0x2f, 0x31, 0x01, 2, 0, 0, 0][..], &[0u8; 64]].concat();
    for (name, bytes) in [
        ("scan.exr", exr.clone()),
        ("exr-named.png", exr),
        (
            "sky.hdr",
            b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n".to_vec(),
        ),
        (
            "tex.dds",
            [b"DDS ".as_slice(), &[124, 0, 0, 0], &[0u8; 120]].concat(),
        ),
    ] {
        cases.push(
            demo(
                format!("unsupported format: {name}"),
                name,
                CUP,
                Expect::Fail("format"),
            )
            .file(name, bytes),
        );
    }
    for (what, path) in [
        ("missing", "missing.png"),
        ("a directory", "."),
        ("a directory with a slash", "sub/"),
        ("dev null", "/dev/null"),
        ("dev zero", "/dev/zero"),
        ("a fifo", "fifo.png"),
        ("a dangling symlink", "dangling.png"),
        ("a symlink loop", "loop.png"),
        ("a file as a directory", "sub/keep/x.png"),
        ("an empty path", ""),
        ("over the file size limit", "sparse.png"),
    ] {
        cases.push(
            demo(format!("image is {what}"), path, CUP, Expect::Fail(""))
                .file("sub/keep", b"x".to_vec())
                .fifo("fifo.png")
                .symlink("dangling.png", "nowhere.png")
                .symlink("loop.png", "loop.png")
                .sparse("sparse.png", 300 << 20),
        );
    }
    cases
}

/// A PNG signature, a real IHDR (with its CRC) and an IDAT that holds
/// next to nothing: the size is read, the pixels are not there.
fn png_header(w: u32, h: u32, colour: u8) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, colour, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    for chunk in [b"IDAT\x78\x9c\x00".as_slice(), b"IEND"] {
        png.extend((chunk.len() as u32 - 4).to_be_bytes());
        png.extend(chunk);
        png.extend(crc32(chunk).to_be_bytes());
    }
    png
}

/// Headers that claim enormous images, in each format.
fn bombs() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    // PNG: 100000 × 100000.
    v.push(("bomb.png".to_string(), png_header(100_000, 100_000, 2)));
    // BMP: 20000 × 20000, 24 bit.
    let mut bmp = b"BM".to_vec();
    bmp.extend(0u32.to_le_bytes());
    bmp.extend(0u32.to_le_bytes());
    bmp.extend(54u32.to_le_bytes());
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(20000i32.to_le_bytes());
    bmp.extend(20000i32.to_le_bytes());
    bmp.extend(1u16.to_le_bytes());
    bmp.extend(24u16.to_le_bytes());
    bmp.extend([0u8; 24]);
    v.push(("bomb.bmp".to_string(), bmp));
    // GIF: a 65535 × 65535 screen and frame.
    let mut gif = b"GIF89a".to_vec();
    gif.extend(65535u16.to_le_bytes());
    gif.extend(65535u16.to_le_bytes());
    gif.extend([0, 0, 0]);
    gif.push(0x2C);
    gif.extend([0, 0, 0, 0]);
    gif.extend(65535u16.to_le_bytes());
    gif.extend(65535u16.to_le_bytes());
    gif.extend([0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    v.push(("bomb.gif".to_string(), gif));
    // JPEG: SOF0 of 65500 × 65500.
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8];
    jpg.extend(65500u16.to_be_bytes());
    jpg.extend(65500u16.to_be_bytes());
    jpg.extend([1, 1, 0x11, 0]);
    jpg.extend([0xFF, 0xD9]);
    v.push(("bomb.jpg".to_string(), jpg));
    // PNM, QOI, farbfeld, TGA: sizes in plain headers.
    v.push(("bomb.ppm".to_string(), b"P6\n100000 100000\n255\n".to_vec()));
    let mut qoi = b"qoif".to_vec();
    qoi.extend(100_000u32.to_be_bytes());
    qoi.extend(100_000u32.to_be_bytes());
    qoi.extend([3, 0]);
    v.push(("bomb.qoi".to_string(), qoi));
    let mut ff = b"farbfeld".to_vec();
    ff.extend(100_000u32.to_be_bytes());
    ff.extend(100_000u32.to_be_bytes());
    v.push(("bomb.ff".to_string(), ff));
    let mut tga = vec![0u8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    tga.extend(65535u16.to_le_bytes());
    tga.extend(65535u16.to_le_bytes());
    tga.extend([24, 0]);
    v.push(("bomb.tga".to_string(), tga));
    // TIFF: one strip of 100000 × 100000.
    let mut tif = b"II*\0".to_vec();
    tif.extend(8u32.to_le_bytes());
    let entries: [(u16, u16, u32, u32); 6] = [
        (256, 4, 1, 100_000),
        (257, 4, 1, 100_000),
        (258, 3, 1, 8),
        (262, 3, 1, 1),
        (273, 4, 1, 0),
        (279, 4, 1, 1),
    ];
    tif.extend((entries.len() as u16).to_le_bytes());
    for (tag, ty, n, val) in entries {
        tif.extend(tag.to_le_bytes());
        tif.extend(ty.to_le_bytes());
        tif.extend(n.to_le_bytes());
        tif.extend(val.to_le_bytes());
    }
    tif.extend(0u32.to_le_bytes());
    v.push(("bomb.tiff".to_string(), tif));
    // WebP lossless: 16384 × 16384.
    let mut vp8l = vec![0x2F];
    let bits: u32 = 16383 | (16383 << 14);
    vp8l.extend(bits.to_le_bytes());
    vp8l.extend([0u8; 8]);
    let mut webp = b"RIFF".to_vec();
    webp.extend(((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    webp.extend(b"WEBPVP8L");
    webp.extend((vp8l.len() as u32).to_le_bytes());
    webp.extend(vp8l);
    v.push(("bomb.webp".to_string(), webp));
    v
}

/// Zero-sized, one-pixel and needle-thin images.
fn tiny_images() -> Vec<(String, Vec<u8>)> {
    let enc = |img: DynamicImage, f: ImageFormat| {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, f).unwrap();
        buf.into_inner()
    };
    vec![
        (
            "ok-1x1.png".into(),
            enc(DynamicImage::new_rgb8(1, 1), ImageFormat::Png),
        ),
        (
            "ok-16x1.png".into(),
            enc(DynamicImage::new_rgb8(16, 1), ImageFormat::Png),
        ),
        (
            "ok-2x32.bmp".into(),
            enc(DynamicImage::new_rgb8(2, 32), ImageFormat::Bmp),
        ),
        // Strips: sides more than 16:1 apart (a 40000000×1 strip is within
        // the pixel limit, but its overlay would need tens of GB).
        (
            "strip-4000x1.png".into(),
            enc(DynamicImage::new_rgb8(4000, 1), ImageFormat::Png),
        ),
        (
            "strip-1x3000.bmp".into(),
            enc(DynamicImage::new_rgb8(1, 3000), ImageFormat::Bmp),
        ),
        (
            "strip-17x1.png".into(),
            enc(DynamicImage::new_luma8(17, 1), ImageFormat::Png),
        ),
        ("strip-40000000x1.png".into(), png_header(40_000_000, 1, 0)),
        ("strip-1x1000000.png".into(), png_header(1, 1_000_000, 0)),
        (
            "ok-grey16.png".into(),
            enc(DynamicImage::new_luma16(50, 40), ImageFormat::Png),
        ),
        (
            "ok-la8.png".into(),
            enc(DynamicImage::new_luma_a8(30, 30), ImageFormat::Png),
        ),
        ("zero.ppm".into(), b"P6\n0 0\n255\n".to_vec()),
        ("zero-width.ppm".into(), b"P6\n0 10\n255\n".to_vec()),
        ("negative.ppm".into(), b"P6\n-5 10\n255\n".to_vec()),
        ("short.ppm".into(), b"P6\n10 10\n255\nabc".to_vec()),
        ("maxval0.ppm".into(), b"P6\n1 1\n0\nabc".to_vec()),
    ]
}

/// PNG damage its decoder lets through as a picture (src/damage/png.rs):
/// indices past the palette, and APNGs whose second frame is cut, missing,
/// corrupt or past the palette; beside paletted files and APNGs made right.
fn png_damage() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, file: &str, bytes: Vec<u8>, expect: Expect| {
        cases.push(demo(name, file, CUP, expect).file(file, bytes));
    };

    // PNG: indexed pixels (8 × 8, 4 colours) with one past the palette.
    let pixels = |bad: Option<u8>| {
        let mut p: Vec<u8> = (0..64).map(|i| (i % 4) as u8).collect();
        if let Some(b) = bad {
            p[29] = b;
        }
        p
    };
    let eight = png::BitDepth::Eight;
    add(
        "png paletted",
        "p.png",
        png_indexed(8, 8, eight, 4, &[&pixels(None)], false),
        Expect::Ok,
    );
    add(
        "png palette index past PLTE",
        "p.png",
        png_indexed(8, 8, eight, 4, &[&pixels(Some(9))], false),
        Expect::Fail("palette"),
    );
    // 4-bit, 5 wide: three bytes a row, the last nibble padding (set: not a pixel).
    let rows = |last: u8| [[0x01, 0x20, 0x0F], [0x10, 0x02, last]].concat();
    let four = png::BitDepth::Four;
    add(
        "png paletted 4-bit, padding set",
        "p.png",
        png_indexed(5, 2, four, 3, &[&rows(0x1F)], false),
        Expect::Ok,
    );
    add(
        "png palette index past PLTE, 4-bit",
        "p.png",
        png_indexed(5, 2, four, 3, &[&rows(0x5F)], false),
        Expect::Fail("palette"),
    );
    add(
        "png paletted 1-bit",
        "p.png",
        png_indexed(8, 2, png::BitDepth::One, 2, &[&[0xA5, 0x0F]], false),
        Expect::Ok,
    );

    // APNG: two frames; the second cut, missing, or past the palette.
    let rgb: Vec<u8> = (0..16 * 16 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let apng = png_rgb_animated(16, 16, &[&rgb, &rgb], false);
    add("apng whole", "a.png", apng.clone(), Expect::Ok);
    add(
        "apng, its IDAT not a frame",
        "a.png",
        png_rgb_animated(16, 16, &[&rgb, &rgb, &rgb], true),
        Expect::Ok,
    );
    let fdat = chunk_at(&apng, b"fdAT").unwrap();
    let len = u32::from_be_bytes(apng[fdat - 4..fdat].try_into().unwrap()) as usize;
    add(
        "apng second frame cut",
        "a.png",
        apng[..fdat + 4 + len / 2].to_vec(),
        Expect::Fail("PNG"),
    );
    let fctl2 = chunk_at(&apng[chunk_at(&apng, b"IDAT").unwrap()..], b"fcTL").unwrap()
        + chunk_at(&apng, b"IDAT").unwrap();
    let mut missing = apng[..fctl2 - 4].to_vec();
    missing.extend(png_chunk(b"IEND", &[]));
    add(
        "apng second frame missing",
        "a.png",
        missing,
        Expect::Fail("PNG"),
    );
    let mut flipped = apng.clone();
    flipped[fdat + 4 + len / 2] ^= 0x5A;
    add(
        "apng second frame byte flipped",
        "a.png",
        flipped,
        Expect::Fail("PNG"),
    );
    add(
        "apng paletted whole",
        "a.png",
        png_indexed(8, 8, eight, 4, &[&pixels(None), &pixels(None)], true),
        Expect::Ok,
    );
    add(
        "apng second frame past PLTE",
        "a.png",
        png_indexed(8, 8, eight, 4, &[&pixels(None), &pixels(Some(200))], true),
        Expect::Fail("palette"),
    );
    cases
}

/// A PNG chunk: length, type, data, CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let body = [kind.as_slice(), data].concat();
    [
        &(data.len() as u32).to_be_bytes()[..],
        &body,
        &crc32(&body).to_be_bytes(),
    ]
    .concat()
}

/// Where the first chunk of this type starts its type bytes.
fn chunk_at(png: &[u8], kind: &[u8; 4]) -> Option<usize> {
    png.windows(4).position(|w| w == kind)
}

/// An indexed PNG with `colours` palette entries, from its packed rows; with
/// `animated`, each of `frames` is a frame of an APNG.
fn png_indexed(
    w: u32,
    h: u32,
    depth: png::BitDepth,
    colours: u8,
    frames: &[&[u8]],
    animated: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(depth);
    enc.set_palette(
        (0..colours as u32 * 3)
            .map(|i| (i * 37) as u8)
            .collect::<Vec<u8>>(),
    );
    if animated {
        enc.set_animated(frames.len() as u32, 0).unwrap();
    }
    let mut wr = enc.write_header().unwrap();
    for f in frames {
        wr.write_image_data(f).unwrap();
    }
    wr.finish().unwrap();
    out
}

/// An RGB APNG; with `separate`, its first image is a default image that is not one of the frames.
fn png_rgb_animated(w: u32, h: u32, frames: &[&[u8]], separate: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_animated(frames.len() as u32 - separate as u32, 0)
        .unwrap();
    enc.set_sep_def_img(separate).unwrap();
    let mut wr = enc.write_header().unwrap();
    for f in frames {
        wr.write_image_data(f).unwrap();
    }
    wr.finish().unwrap();
    out
}

/// GIF damage its decoder lets through as a picture (src/damage/gif.rs):
/// frames off the screen, a second frame cut or missing, indices past the
/// palette; beside frames within the screen and whole animations.
fn gif_damage() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, file: &str, bytes: Vec<u8>, expect: Expect| {
        cases.push(demo(name, file, CUP, expect).file(file, bytes));
    };

    // GIF: a 16 × 16 screen, 4 colours.
    let frame = |left: u16, top: u16, w: u16, h: u16| {
        let px: Vec<u8> = (0..w as usize * h as usize)
            .map(|i| (i * 5 / 3 % 4) as u8)
            .collect();
        (left, top, w, h, px)
    };
    add(
        "gif whole frame",
        "g.gif",
        gif_frames(16, 16, 4, None, &[frame(0, 0, 16, 16)]),
        Expect::Ok,
    );
    add(
        "gif frame inside the screen",
        "g.gif",
        gif_frames(16, 16, 4, None, &[frame(4, 4, 8, 8)]),
        Expect::Ok,
    );
    for (what, f) in [
        ("partly off the right of", frame(8, 0, 16, 16)),
        ("partly off the bottom of", frame(0, 12, 16, 8)),
        ("wholly off", frame(20, 20, 8, 8)),
        ("larger than", frame(0, 0, 24, 24)),
    ] {
        add(
            &format!("gif frame {what} the screen"),
            "g.gif",
            gif_frames(16, 16, 4, None, &[f]),
            Expect::Fail("screen"),
        );
    }
    let two = gif_frames(16, 16, 4, None, &[frame(0, 0, 16, 16), frame(0, 0, 16, 16)]);
    let one = gif_frames(16, 16, 4, None, &[frame(0, 0, 16, 16)]);
    add("gif two frames whole", "g.gif", two.clone(), Expect::Ok);
    add(
        "gif second frame off the screen",
        "g.gif",
        gif_frames(16, 16, 4, None, &[frame(0, 0, 16, 16), frame(10, 10, 8, 8)]),
        Expect::Fail("screen"),
    );
    // The second frame starts where the first one's file has its trailer.
    let second = one.len() - 1;
    let cut = second + (two.len() - second) * 2 / 3;
    add(
        "gif second frame cut",
        "g.gif",
        two[..cut].to_vec(),
        Expect::Fail("GIF"),
    );
    add(
        "gif second frame cut, trailer put back",
        "g.gif",
        [&two[..cut], &[0x3B]].concat(),
        Expect::Fail("GIF"),
    );
    add(
        "gif cut after its first frame",
        "g.gif",
        two[..second].to_vec(),
        Expect::Fail("GIF"),
    );
    // 2 colours, pixels up to 3: past the palette, unless transparent.
    let high = |t: Option<u8>| {
        let px: Vec<u8> = (0..64)
            .map(|i| if i == 9 { 3 } else { (i % 2) as u8 })
            .collect();
        gif_frames(8, 8, 2, t, &[(0, 0, 8, 8, px)])
    };
    // Every frame is decoded to check it, up to 200000000 pixels over an
    // animation's frames together, a frame counting as at least 64 × 64.
    let dots = |n: usize| gif_frames(16, 16, 4, None, &vec![(0, 0, 1, 1, vec![1]); n]);
    add(
        "gif of 40000 one-pixel frames",
        "g.gif",
        dots(40_000),
        Expect::Ok,
    );
    add(
        "gif of 50000 one-pixel frames",
        "g.gif",
        dots(50_000),
        Expect::Fail("limit"),
    );
    add(
        "gif index past the palette",
        "g.gif",
        high(None),
        Expect::Fail("palette"),
    );
    add(
        "gif transparent index past the palette",
        "g.gif",
        high(Some(3)),
        Expect::Ok,
    );
    cases
}

/// A GIF of a `w` × `h` screen with a global palette of `colours`, and these
/// frames (left, top, width, height, indices).
fn gif_frames(
    w: u16,
    h: u16,
    colours: u8,
    transparent: Option<u8>,
    frames: &[(u16, u16, u16, u16, Vec<u8>)],
) -> Vec<u8> {
    let palette: Vec<u8> = (0..colours as u32 * 3).map(|i| (i * 53) as u8).collect();
    let mut out = Vec::new();
    let mut enc = gif::Encoder::new(&mut out, w, h, &palette).unwrap();
    for (left, top, fw, fh, px) in frames {
        let mut f = gif::Frame::from_indexed_pixels(*fw, *fh, px.clone(), transparent);
        (f.left, f.top) = (*left, *top);
        enc.write_frame(&f).unwrap();
    }
    drop(enc);
    out
}

/// BMP damage its decoder lets through as a picture (src/damage/bmp.rs):
/// RLE runs past the row's end (and its padding) or past the last row,
/// indices past the palette; beside valid RLE8, RLE4 and paletted files.
fn bmp_damage() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, file: &str, bytes: Vec<u8>, expect: Expect| {
        cases.push(demo(name, file, CUP, expect).file(file, bytes));
    };

    // BMP RLE: 4 × 2, 4 colours; rows bottom-up.
    let rle8 = |data: &[u8]| bmp_indexed(4, 2, 8, 1, 4, data);
    let rle4 = |data: &[u8]| bmp_indexed(4, 2, 4, 2, 4, data);
    add(
        "bmp rle8",
        "b.bmp",
        rle8(&[4, 1, 0, 0, 0, 3, 2, 3, 1, 0, 1, 2, 0, 0, 0, 1]),
        Expect::Ok,
    );
    add(
        "bmp rle8 with a delta, no end of bitmap",
        "b.bmp",
        rle8(&[0, 2, 1, 1, 3, 2, 0, 0]),
        Expect::Ok,
    );
    add(
        "bmp rle8 ending early",
        "b.bmp",
        rle8(&[2, 1, 0, 1]),
        Expect::Ok,
    );
    add(
        "bmp rle4",
        "b.bmp",
        rle4(&[4, 0x12, 0, 0, 0, 4, 0x30, 0x12, 0, 1]),
        Expect::Ok,
    );
    for (what, bytes) in [
        ("rle8 run past the row end", rle8(&[6, 1, 0, 0, 4, 2, 0, 1])),
        (
            "rle8 absolute run past the row end",
            rle8(&[0, 5, 1, 2, 3, 1, 2, 0, 0, 0, 4, 2, 0, 1]),
        ),
        (
            "rle8 past the last row",
            rle8(&[4, 1, 0, 0, 4, 2, 0, 0, 4, 3, 0, 0, 0, 1]),
        ),
        (
            "rle8 delta past the last row",
            rle8(&[4, 1, 0, 0, 0, 2, 0, 3, 0, 1]),
        ),
        (
            "rle4 run past the row end",
            rle4(&[10, 0x12, 0, 0, 4, 0x33, 0, 1]),
        ),
        (
            "rle8 run past the row's padding",
            bmp_indexed(5, 2, 8, 1, 4, &[9, 1, 0, 0, 5, 2, 0, 1]),
        ),
        (
            "rle4 past the last row",
            rle4(&[4, 0x12, 0, 0, 4, 0x12, 0, 0, 2, 0x11, 0, 1]),
        ),
    ] {
        add(&format!("bmp {what}"), "b.bmp", bytes, Expect::Fail("RLE"));
    }
    add(
        "bmp rle8 index past the palette",
        "b.bmp",
        rle8(&[4, 7, 0, 0, 4, 1, 0, 1]),
        Expect::Fail("palette"),
    );
    // 5 wide: a run may fill the row's padding to 4 bytes (8 pixels), as
    // ImageMagick writes every such row; nothing of the picture is lost.
    add(
        "bmp rle8 runs into the row's padding",
        "b.bmp",
        bmp_indexed(5, 2, 8, 1, 4, &[8, 1, 0, 0, 5, 2, 3, 3, 0, 1]),
        Expect::Ok,
    );
    // Uncompressed, 4-bit, 5 wide: 4 bytes a row, the last 1.5 padding.
    let rows = |last: u8| [[0x01, 0x23, 0x0F, 0xFF], [0x32, 0x10, last, 0xFF]].concat();
    add(
        "bmp paletted 4-bit, padding set",
        "b.bmp",
        bmp_indexed(5, 2, 4, 0, 4, &rows(0x3F)),
        Expect::Ok,
    );
    add(
        "bmp paletted index past the palette",
        "b.bmp",
        bmp_indexed(5, 2, 4, 0, 4, &rows(0x5F)),
        Expect::Fail("palette"),
    );
    cases
}

/// A bottom-up BMP of `bits` a pixel with a palette of `colours`; its
/// `compression` 0 (none), 1 (RLE8) or 2 (RLE4).
fn bmp_indexed(w: i32, h: i32, bits: u16, compression: u32, colours: u32, data: &[u8]) -> Vec<u8> {
    let offset = 14 + 40 + 4 * colours;
    let mut b = b"BM".to_vec();
    b.extend((offset + data.len() as u32).to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b.extend(40u32.to_le_bytes());
    b.extend(w.to_le_bytes());
    b.extend(h.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(bits.to_le_bytes());
    b.extend(compression.to_le_bytes());
    b.extend((data.len() as u32).to_le_bytes());
    b.extend([0u8; 8]);
    b.extend(colours.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    for i in 0..colours {
        b.extend([(i * 60) as u8, (i * 30) as u8, (255 - i * 60) as u8, 0]);
    }
    b.extend(data);
    b
}

/// Animated WebPs whose second frame is cut or missing (src/damage/webp.rs),
/// beside a whole one.
fn webp_damage() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, file: &str, bytes: Vec<u8>, expect: Expect| {
        cases.push(demo(name, file, CUP, expect).file(file, bytes));
    };

    // Animated WebP: two lossless 16 × 16 frames.
    let img = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(16, 16, |x, y| {
        image::Rgba([(x * 16) as u8, (y * 16) as u8, ((x * y) % 256) as u8, 255])
    }));
    let mut still = std::io::Cursor::new(Vec::new());
    img.write_to(&mut still, ImageFormat::WebP).unwrap();
    let still = still.into_inner();
    let at = still.windows(4).position(|w| w == b"VP8L").unwrap();
    let n = u32::from_le_bytes(still[at + 4..at + 8].try_into().unwrap()) as usize;
    let vp8l = still[at + 8..at + 8 + n].to_vec();
    let webp = webp_animated(16, 16, &[&vp8l, &vp8l]);
    add("webp animated whole", "w.webp", webp.clone(), Expect::Ok);
    let anmf2 = webp.windows(4).rposition(|w| w == b"ANMF").unwrap();
    add(
        "webp animated second frame cut",
        "w.webp",
        webp[..anmf2 + (webp.len() - anmf2) / 2].to_vec(),
        Expect::Fail("WebP"),
    );
    add(
        "webp animated second frame missing",
        "w.webp",
        webp[..anmf2].to_vec(),
        Expect::Fail("WebP"),
    );
    add(
        "webp animated second frame cut, sizes mended",
        "w.webp",
        webp_animated(16, 16, &[&vp8l, &vp8l[..vp8l.len() / 2]]),
        Expect::Fail("WebP"),
    );
    cases
}

/// An animated WebP of lossless frames (each a VP8L payload) covering the canvas.
fn webp_animated(w: u32, h: u32, frames: &[&[u8]]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend(kind);
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    }
    let u24 = |v: u32| v.to_le_bytes()[..3].to_vec();
    let mut body = b"WEBP".to_vec();
    // Flags: alpha and animation.
    chunk(
        &mut body,
        b"VP8X",
        &[vec![0x12, 0, 0, 0], u24(w - 1), u24(h - 1)].concat(),
    );
    chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]);
    for f in frames {
        let mut anmf = [u24(0), u24(0), u24(w - 1), u24(h - 1), u24(100), vec![0]].concat();
        chunk(&mut anmf, b"VP8L", f);
        chunk(&mut body, b"ANMF", &anmf);
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The command's tokens never include a special token's id.
fn no_special_tokens(stdout: &str) {
    let j: serde_json::Value = serde_json::from_str(stdout).expect("JSON on stdout");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped().join("config.json")).unwrap())
            .unwrap();
    let offset = cfg["action_offset"].as_u64().unwrap();
    let control = [
        cfg["boa_token_id"].as_u64().unwrap(),
        cfg["pad_token_id"].as_u64().unwrap(),
    ];
    for t in j["command_tokens"].as_array().unwrap() {
        let id = t["id"].as_u64().unwrap();
        assert!(
            !control.contains(&id) && !(offset..offset + 515).contains(&id),
            "the command was encoded with special token {t}"
        );
    }
    let valid = j["action"]["error"].is_null();
    assert!(valid, "not a valid action: {}", j["action"]);
}

/// Commands: empty, overlong, special-token text, odd Unicode.
fn command_cases(fx: &Fixtures) -> Vec<Case> {
    let cup = s(&fx.cup);
    let mut cases = Vec::new();
    let long_tokens = vec!["red"; 40].join(" ");
    let over_bytes = "a ".repeat(513);
    let huge = "x".repeat(100_000);
    let fail: [(&str, &str); 28] = [
        ("", "empty"),
        ("   ", "empty"),
        ("\t\n ", "empty"),
        (".", "empty"),
        ("?!.", "empty"),
        ("<pad>", "none of the words"),
        ("<pad> <pad> <pad> <pad>", "none of the words"),
        ("<boa>", "none of the words"),
        ("<eoa>", "none of the words"),
        ("<x_100>", "none of the words"),
        ("<y_255> <close>", "none of the words"),
        ("<unk>", "none of the words"),
        ("<0x41>", "none of the words"),
        ("<PAD><BOA>", "none of the words"),
        ("zorblax", "none of the words"),
        ("🍵🍵", "none of the words"),
        ("\u{200b}", "none of the words"),
        // Control characters are not words, and a terminal would act on them.
        ("\u{1}", "control character"),
        ("\u{1b}", "control character"),
        ("\u{7f}", "control character"),
        ("\u{1f}", "control character"),
        ("\u{9b}", "control character"),
        ("\u{1b}[2J\u{1b}[H", "control character"),
        ("pick up the red cup\u{7}", "control character"),
        ("pick up the red cup\u{7f}\u{1b}[31m", "control character"),
        (&long_tokens, "at most"),
        (&over_bytes, "bytes"),
        (&huge, "bytes"),
    ];
    for (cmd, needle) in fail {
        cases.push(demo(
            format!("command {:?}", trunc(cmd)),
            &cup,
            cmd,
            Expect::Fail(needle),
        ));
    }
    let ok = [
        "pick up the red cup <eoa>",
        "pick up the <boa> red cup",
        "<pad> pick up the red cup <pad>",
        "pick up the red cup <x_100> <y_200> <close>",
        "PICK UP THE RED CUP",
        "pick up the red cup!!!",
        "pick up the red cup\u{0301}",
        "pick\u{00a0}up the red cup",
        "pick up the red cup \u{202e}",
        "pick up the red cup 🍵",
        "빨간 컵을 집어라",
        "빨간 컵을 집어라 <boa>",
        "pick\tup the red cup\r\n",
    ];
    for cmd in ok {
        cases.push(
            Case::new(
                format!("command {cmd:?} is text"),
                &["--image", &cup, "--cmd", cmd, "--no-overlay", "--json"],
                Expect::Ok,
            )
            .check(no_special_tokens),
        );
    }
    cases
}

fn trunc(s: &str) -> String {
    if s.len() > 40 {
        format!("{}… ({} bytes)", &s[..s.floor_char_boundary(40)], s.len())
    } else {
        s.to_string()
    }
}

/// Flags of the demo: values out of range, conflicts, output paths.
fn flag_cases(fx: &Fixtures) -> Vec<Case> {
    let cup = s(&fx.cup);
    let base = ["--image", cup.as_str(), "--cmd", CUP];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let mut cases = Vec::new();
    let fail: Vec<(&str, Vec<&str>)> = vec![
        ("method unknown", vec!["--method", "saliency"]),
        ("method empty", vec!["--method", ""]),
        ("alpha 2", vec!["--alpha", "2"]),
        ("alpha -0.1", vec!["--alpha", "-0.1"]),
        ("alpha NaN", vec!["--alpha", "NaN"]),
        ("alpha inf", vec!["--alpha", "inf"]),
        ("temperature -1", vec!["--temperature", "-1"]),
        ("temperature NaN", vec!["--temperature", "NaN"]),
        ("temperature inf", vec!["--temperature", "inf"]),
        ("temperature 101", vec!["--temperature", "101"]),
        ("temperature 1e308", vec!["--temperature", "1e308"]),
        ("top-k 0", vec!["--top-k", "0"]),
        ("top-k 100001", vec!["--top-k", "100001"]),
        ("top-k -1", vec!["--top-k", "-1"]),
        ("top-k huge", vec!["--top-k", "18446744073709551616"]),
        ("seed -1", vec!["--seed", "-1"]),
        ("seed 2^64", vec!["--seed", "18446744073709551616"]),
        (
            "rollout-patch outside",
            vec!["--rollout", "--rollout-patch", "10,0"],
        ),
        (
            "rollout-patch huge",
            vec!["--rollout", "--rollout-patch", "99999999999999999999,0"],
        ),
        (
            "rollout-patch text",
            vec!["--rollout", "--rollout-patch", "a,b"],
        ),
        (
            "rollout-patch without rollout",
            vec!["--rollout-patch", "1,1"],
        ),
        ("colormap bogus", vec!["--colormap", "rainbow"]),
        ("unknown flag", vec!["--frobnicate"]),
        ("device cuda:99", vec!["--device", "cuda:99"]),
        ("device bogus", vec!["--device", "tpu"]),
        ("dtype f16 on cpu", vec!["--dtype", "f16"]),
        ("dtype bogus", vec!["--dtype", "f64"]),
        ("overlay not png", vec!["--overlay", "o.jpg"]),
        ("overlay missing dir", vec!["--overlay", "no/such/o.png"]),
        ("overlay is the input", vec!["--overlay", cup.as_str()]),
        ("overlay a file as dir", vec!["--overlay", "file.txt/o.png"]),
        ("export not npz", vec!["--export", "a.txt"]),
        ("export missing dir", vec!["--export", "no/a.npz"]),
        (
            "sheet into missing dir",
            vec!["--overlay", "no/o.png", "--per-head"],
        ),
        (
            "overlay and no-overlay",
            vec!["--overlay", "o.png", "--no-overlay"],
        ),
        ("batch with image", vec!["--batch", "pairs.jsonl"]),
        ("overlay-dir without batch", vec!["--overlay-dir", "d"]),
        ("model-id offline", vec!["--model-id", "nobody/nothing"]),
        (
            "model-dir and model-id",
            vec!["--model-dir", "m", "--model-id", "a/b"],
        ),
        ("revision without model-id", vec!["--revision", "v1"]),
    ];
    for (name, extra) in fail {
        let args = with(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cases.push(
            Case::new(format!("flag {name}"), &args, Expect::Fail(""))
                .file("file.txt", b"x".to_vec()),
        );
    }
    // No image or no command at all.
    cases.push(Case::new(
        "no arguments",
        &[],
        Expect::Fail("give an image"),
    ));
    cases.push(Case::new(
        "only a command",
        &["--cmd", CUP],
        Expect::Fail("give an image"),
    ));
    cases.push(Case::new(
        "only an image",
        &["--image", &cup],
        Expect::Fail("give an image"),
    ));
    // A non-UTF-8 argument.
    {
        use std::os::unix::ffi::OsStringExt;
        let c = Case::new(
            "non-UTF-8 command",
            &["--image", &cup, "--no-overlay", "--cmd"],
            Expect::Fail(""),
        );
        let c = c.arg(OsString::from_vec(vec![0x70, 0xff, 0xfe]));
        cases.push(c);
    }
    // Overwriting the input through a symlink and through `..`.
    let c = Case::new(
        "overlay through a symlink to the input",
        &["--image", "in.png", "--cmd", CUP, "--overlay", "link.png"],
        Expect::Fail("refusing to overwrite"),
    )
    .file("in.png", std::fs::read(&fx.cup).unwrap());
    cases.push(c.symlink("link.png", "in.png"));
    cases.push(
        Case::new(
            "overlay through .. to the input",
            &[
                "--image",
                "in.png",
                "--cmd",
                CUP,
                "--overlay",
                "sub/../in.png",
            ],
            Expect::Fail("refusing to overwrite"),
        )
        .file("in.png", std::fs::read(&fx.cup).unwrap())
        .file("sub/k", vec![]),
    );
    // Successful runs with every output: all of them appear.
    cases.push(Case::new(
        "every output",
        &[
            "--image",
            &cup,
            "--cmd",
            CUP,
            "--per-head",
            "--per-layer",
            "--per-token",
            "--rollout",
            "--export",
            "a.npz",
            "--json",
        ],
        Expect::Ok,
    ));
    let sampling = with(&[
        "--temperature",
        "100",
        "--top-k",
        "100000",
        "--seed",
        "18446744073709551615",
        "--no-overlay",
        "--json",
    ]);
    let sampling: Vec<&str> = sampling.iter().map(String::as_str).collect();
    cases.push(Case::new("sampling at the bounds", &sampling, Expect::Ok).check(no_special_tokens));
    // Temperatures so small that logits / temperature would overflow decode
    // as their limit, greedily.
    for t in ["1e-45", "1e-40", "1e-38", "1e-7", "1e-6"] {
        let args = with(&["--temperature", t, "--top-k", "3", "--no-overlay", "--json"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cases.push(
            Case::new(format!("temperature {t}"), &args, Expect::Ok).check(no_special_tokens),
        );
    }
    // Outputs that exist but are named pipes: refused, left as they are
    // (the snapshot would see a pipe turned into a file).
    for (name, extra) in [
        ("overlay", vec!["--overlay", "p.png"]),
        ("export", vec!["--no-overlay", "--export", "p.npz"]),
        ("export manifest", vec!["--no-overlay", "--export", "q.npz"]),
        ("sheet", vec!["--overlay", "o.png", "--rollout"]),
    ] {
        let args = with(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cases.push(
            Case::new(
                format!("{name} over a named pipe"),
                &args,
                Expect::Fail("not a regular file"),
            )
            .fifo("p.png")
            .fifo("p.npz")
            .fifo("q.manifest.json")
            .fifo("o.rollout.png"),
        );
    }
    // An image path with an escape sequence: shown escaped, never raw.
    let esc = "red\u{1b}[2J\u{1b}[31m.png";
    cases.push(
        Case::new(
            "image path with an escape sequence",
            &["--image", esc, "--cmd", CUP, "--no-overlay"],
            Expect::Ok,
        )
        .file(esc, std::fs::read(&fx.cup).unwrap())
        .check(no_raw_controls),
    );
    cases.push(Case::new(
        "missing image path with an escape sequence",
        &["--image", esc, "--cmd", CUP],
        Expect::Fail("red\\u{1b}[2J"),
    ));
    cases
}

/// A printout with no control character but line breaks.
fn no_raw_controls(stdout: &str) {
    let raw = stdout.chars().find(|c| c.is_control() && *c != '\n');
    assert!(raw.is_none(), "a raw {raw:?} in the printout:\n{stdout}");
}

/// `--batch`: malformed files and lines, limits, odd files.
fn batch_cases(fx: &Fixtures) -> Vec<Case> {
    let cup = s(&fx.cup);
    let line = |img: &str, cmd: &str| serde_json::json!({"image": img, "cmd": cmd}).to_string();
    let good = line(&cup, CUP);
    let mut cases = Vec::new();
    let fail: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "holds no pairs"),
        ("blank lines", b"\n\n  \n".to_vec(), "holds no pairs"),
        ("not JSON", b"hello\n".to_vec(), "line 1"),
        ("empty object", b"{}\n".to_vec(), "line 1"),
        (
            "image is a number",
            br#"{"image": 1, "cmd": "x"}"#.to_vec(),
            "line 1",
        ),
        (
            "missing cmd",
            format!("{{\"image\": {cup:?}}}").into_bytes(),
            "line 1",
        ),
        ("an array", b"[1, 2]\n".to_vec(), "line 1"),
        ("null", b"null\n".to_vec(), "line 1"),
        (
            "truncated JSON",
            br#"{"image": "a.png", "cmd": "pick"#.to_vec(),
            "line 1",
        ),
        ("not UTF-8", vec![0xff, 0xfe, b'{', b'}'], "UTF-8"),
        (
            "byte order mark",
            format!("\u{feff}{good}").into_bytes(),
            "line 1",
        ),
        (
            "bad line 3",
            format!("{good}\n{good}\n{{oops\n").into_bytes(),
            "line 3",
        ),
        (
            "missing image line 2",
            format!("{good}\n{}\n", line("missing.png", CUP)).into_bytes(),
            "line 2",
        ),
        (
            "image a directory",
            format!("{}\n", line(".", CUP)).into_bytes(),
            "line 1",
        ),
        (
            "empty command",
            format!("{}\n", line(&cup, "  ")).into_bytes(),
            "empty",
        ),
        (
            "special command",
            format!("{}\n", line(&cup, "<pad> <boa>")).into_bytes(),
            "none of the words",
        ),
        (
            "40-token command",
            format!("{}\n", line(&cup, &vec!["red"; 40].join(" "))).into_bytes(),
            "at most",
        ),
        (
            "1 MB command",
            format!("{}\n", line(&cup, &"pick ".repeat(200_000))).into_bytes(),
            "bytes",
        ),
        (
            "257 pairs",
            (0..257)
                .map(|_| good.clone() + "\n")
                .collect::<String>()
                .into_bytes(),
            "at most 256",
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "line 1",
        ),
        ("a NUL line", b"\0\n".to_vec(), "line 1"),
        (
            "a NUL command",
            format!("{}\n", line(&cup, "\0")).into_bytes(),
            "control character",
        ),
        (
            "an escape in the command",
            format!("{good}\n{}\n", line(&cup, "pick up the \u{1b}[31mred cup")).into_bytes(),
            "line 2",
        ),
        // The error line shows the NUL escaped, never the raw byte.
        (
            "a NUL in the image path",
            format!("{}\n", line("a\0b.png", CUP)).into_bytes(),
            "a\\0b.png",
        ),
        (
            "an escape in the image path",
            format!("{}\n", line("a\u{1b}[2Jb.png", CUP)).into_bytes(),
            "a\\u{1b}[2Jb.png",
        ),
    ];
    for (name, bytes, needle) in fail {
        cases.push(
            Case::new(
                format!("batch {name}"),
                &["--batch", "pairs.jsonl"],
                Expect::Fail(needle),
            )
            .file("pairs.jsonl", bytes),
        );
    }
    cases.push(
        Case::new(
            "batch file over 4 MiB",
            &["--batch", "big.jsonl"],
            Expect::Fail("limit"),
        )
        .sparse("big.jsonl", 5 << 20),
    );
    for (what, path) in [
        ("missing", "none.jsonl"),
        ("a directory", "."),
        ("a fifo", "fifo.jsonl"),
        ("dev zero", "/dev/zero"),
    ] {
        cases.push(
            Case::new(
                format!("batch file is {what}"),
                &["--batch", path],
                Expect::Fail("batch file"),
            )
            .fifo("fifo.jsonl"),
        );
    }
    let two = format!("{good}\n{good}\n");
    cases.push(
        Case::new(
            "batch overlay-dir missing",
            &["--batch", "p.jsonl", "--overlay-dir", "nope"],
            Expect::Fail("nope"),
        )
        .file("p.jsonl", two.clone()),
    );
    cases.push(
        Case::new(
            "batch overlay-dir is a file",
            &["--batch", "p.jsonl", "--overlay-dir", "f"],
            Expect::Fail(""),
        )
        .file("p.jsonl", two.clone())
        .file("f", b"x".to_vec()),
    );
    // The second overlay cannot be renamed into place (a directory holds
    // its name): the first one must not stay.
    cases.push(
        Case::new(
            "batch overlay blocked",
            &["--batch", "p.jsonl", "--overlay-dir", "o"],
            Expect::Fail(""),
        )
        .file("p.jsonl", two.clone())
        .file("o/002-red_cup.overlay.png/keep", b"x".to_vec()),
    );
    cases.push(
        Case::new("batch two pairs", &["--batch", "p.jsonl"], Expect::Ok)
            .file("p.jsonl", two.clone()),
    );
    cases.push(
        Case::new(
            "batch CRLF and extra keys",
            &["--batch", "p.jsonl", "--overlay-dir", "o"],
            Expect::Ok,
        )
        .file(
            "p.jsonl",
            format!(
                "{}\r\n\r\n{{\"cmd\": \"{CUP}\", \"image\": {cup:?}, \"note\": 1}}\r\n",
                good
            ),
        )
        .file("o/keep", vec![]),
    );
    cases
}

/// A copy of the shipped checkpoint with its config changed.
fn model_with_config(
    root: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let dir = root.join("models").join(name);
    copy_dir(&shipped(), &dir);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    dir
}

fn model_with_file(root: &Path, name: &str, file: &str, bytes: Vec<u8>) -> PathBuf {
    let dir = root.join("models").join(name);
    copy_dir(&shipped(), &dir);
    std::fs::write(dir.join(file), bytes).unwrap();
    dir
}

/// Broken checkpoints: every config field out of bounds, weights that are
/// not finite, do not fit, or are corrupt, and mismatched tokenizers.
fn model_dirs(root: &Path) -> Vec<(String, PathBuf, &'static str)> {
    let mut out = Vec::new();
    let ints = [
        "image_size",
        "patch_size",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "vision_layers",
        "text_layers",
        "fusion_layers",
        "max_text_len",
        "vocab_size",
        "action_offset",
        "boa_token_id",
        "pad_token_id",
    ];
    let bad_values: [(&str, serde_json::Value); 6] = [
        ("0", 0.into()),
        ("-1", (-1).into()),
        ("1600000", 1_600_000.into()),
        ("1e30", serde_json::json!(1e30)),
        ("string", "12".into()),
        ("null", serde_json::Value::Null),
    ];
    for field in ints {
        for (label, v) in &bad_values {
            // Zero is a valid token id.
            if *label == "0" && field.ends_with("_id") {
                continue;
            }
            let name = format!("{field}-{label}");
            let v = v.clone();
            out.push((
                format!("config {field} = {label}"),
                model_with_config(root, &name, |c| c[field] = v),
                "config",
            ));
        }
    }
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let others: Vec<(&str, &str, serde_json::Value)> = vec![
        ("image_std zero", "image_std", json("[0, 0.25, 0.25]")),
        (
            "image_std negative",
            "image_std",
            json("[-0.25, 0.25, 0.25]"),
        ),
        ("image_std tiny", "image_std", json("[1e-9, 0.25, 0.25]")),
        ("image_std two values", "image_std", json("[0.25, 0.25]")),
        ("image_mean 2", "image_mean", json("[2, 0.5, 0.5]")),
        ("layer_norm_eps negative", "layer_norm_eps", json("-1e-5")),
        ("layer_norm_eps zero", "layer_norm_eps", json("0")),
        ("layer_norm_eps 10", "layer_norm_eps", json("10")),
        (
            "workspace zero",
            "workspace",
            json(r#"{"width_m": 0, "height_m": 0.6}"#),
        ),
        (
            "workspace huge",
            "workspace",
            json(r#"{"width_m": 1e9, "height_m": 0.6}"#),
        ),
        ("conv_stem zero channels", "conv_stem", json("[0, 64]")),
        (
            "conv_stem five layers",
            "conv_stem",
            json("[1, 1, 1, 1, 1]"),
        ),
        ("conv_stem huge", "conv_stem", json("[100000, 64]")),
        ("stem_context 5", "stem_context", json("5")),
        ("pointer_window 1000", "pointer_window", json("1000")),
        (
            "position_embedding bogus",
            "position_embedding",
            json(r#""bogus""#),
        ),
        (
            "cross_score_fn bogus",
            "cross_score_fn",
            json(r#""cosine""#),
        ),
        (
            "vision_layers 3 (fewer than the weights)",
            "vision_layers",
            json("3"),
        ),
        (
            "vision_layers 5 (more than the weights)",
            "vision_layers",
            json("5"),
        ),
        (
            "fusion_layers 1 (fewer than the weights)",
            "fusion_layers",
            json("1"),
        ),
        (
            "text_layers 1 (fewer than the weights)",
            "text_layers",
            json("1"),
        ),
        (
            "hidden_size 64 (not the weights')",
            "hidden_size",
            json("64"),
        ),
        ("heads 3", "num_attention_heads", json("3")),
        (
            "conv_stem empty (not the weights')",
            "conv_stem",
            json("[]"),
        ),
        (
            "stem_context 1 (not the weights')",
            "stem_context",
            json("1"),
        ),
    ];
    for (i, (label, field, v)) in others.into_iter().enumerate() {
        out.push((
            format!("config {label}"),
            model_with_config(root, &format!("other{i}"), |c| c[field] = v),
            "",
        ));
    }
    // Sine-cosine positions and convolutions run at another resolution.
    out.push((
        "config image_size 320 (the weights still fit)".into(),
        model_with_config(root, "size320", |c| c["image_size"] = json("320")),
        "",
    ));
    out.push((
        "config missing a field".into(),
        model_with_config(root, "missing-field", |c| {
            c.as_object_mut().unwrap().remove("hidden_size");
        }),
        "config",
    ));
    for (label, bytes) in [
        ("config empty", vec![]),
        ("config a list", b"[]".to_vec()),
        ("config not UTF-8", vec![0xff, 0xfe]),
        ("config deep nesting", "[".repeat(100_000).into_bytes()),
    ] {
        out.push((
            label.into(),
            model_with_file(root, label, "config.json", bytes),
            "config",
        ));
    }
    // Weights.
    let weights = std::fs::read(shipped().join("model.safetensors")).unwrap();
    let st = Safetensors::parse(&weights);
    let names = st.names();
    for (k, name) in names.iter().enumerate().step_by(names.len() / 12) {
        for (label, v) in [
            ("NaN", f32::NAN),
            ("+Inf", f32::INFINITY),
            ("-Inf", f32::NEG_INFINITY),
        ] {
            let mut s2 = Safetensors::parse(&weights);
            let (a, b) = s2.range(name);
            let at = a + ((b - a) / 4 / 2) * 4;
            s2.data[at..at + 4].copy_from_slice(&v.to_le_bytes());
            out.push((
                format!("weights {name} holds {label}"),
                model_with_file(
                    root,
                    &format!("w{k}-{label}"),
                    "model.safetensors",
                    s2.bytes(),
                ),
                "finite",
            ));
        }
    }
    // Finite but huge: the output overflows.
    let mut huge = Safetensors::parse(&weights);
    let (a, b) = huge.range("embed_tokens.weight");
    for i in (a..b).step_by(4) {
        huge.data[i..i + 4].copy_from_slice(&3e38f32.to_le_bytes());
    }
    out.push((
        "weights finite but 3e38".into(),
        model_with_file(root, "huge", "model.safetensors", huge.bytes()),
        "",
    ));
    let mut extra = Safetensors::parse(&weights);
    let end = extra.data.len();
    extra.header.insert(
        "extra.weight".into(),
        serde_json::json!({"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]}),
    );
    extra.data.extend(1f32.to_le_bytes());
    out.push((
        "weights hold an extra tensor".into(),
        model_with_file(root, "extra", "model.safetensors", extra.bytes()),
        "does not use",
    ));
    let mut retyped = Safetensors::parse(&weights);
    retyped.header["vision.norm.weight"]["dtype"] = "I32".into();
    out.push((
        "weights: a tensor retyped".into(),
        model_with_file(root, "retyped", "model.safetensors", retyped.bytes()),
        "",
    ));
    let mut reshaped = Safetensors::parse(&weights);
    reshaped.header["vision.norm.weight"]["shape"] = serde_json::json!([64, 2]);
    out.push((
        "weights: a tensor reshaped".into(),
        model_with_file(root, "reshaped", "model.safetensors", reshaped.bytes()),
        "",
    ));
    let mut renamed = Safetensors::parse(&weights);
    let v = renamed.header.remove("vision.norm.weight").unwrap();
    renamed.header.insert("vision.norm.weight2".into(), v);
    out.push((
        "weights: a tensor renamed".into(),
        model_with_file(root, "renamed", "model.safetensors", renamed.bytes()),
        "",
    ));
    for frac in [0.0, 0.001, 0.3, 0.9, 0.999] {
        let n = (weights.len() as f64 * frac) as usize;
        out.push((
            format!("weights cut at {frac}"),
            model_with_file(
                root,
                &format!("cut{frac}"),
                "model.safetensors",
                weights[..n].to_vec(),
            ),
            "model.safetensors",
        ));
    }
    let mut big_header = weights.clone();
    big_header[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    out.push((
        "weights header length 2^63".into(),
        model_with_file(root, "bighdr", "model.safetensors", big_header),
        "model.safetensors",
    ));
    let mut past = Safetensors::parse(&weights);
    past.header["vision.norm.weight"]["data_offsets"] = serde_json::json!([0, 1u64 << 40]);
    out.push((
        "weights offsets past the end".into(),
        model_with_file(root, "past", "model.safetensors", past.bytes()),
        "model.safetensors",
    ));
    // Tokenizers.
    let tok = std::fs::read_to_string(shipped().join("tokenizer.json")).unwrap();
    for (label, text) in [
        ("tokenizer garbage", "garbage".to_string()),
        ("tokenizer empty object", "{}".to_string()),
        (
            "tokenizer without <boa>",
            tok.replace("\"<boa>\"", "\"<bob>\""),
        ),
        (
            "tokenizer ids shifted",
            tok.replace("\"<x_000>\"", "\"<x_zzz>\""),
        ),
    ] {
        out.push((
            label.into(),
            model_with_file(root, label, "tokenizer.json", text.into_bytes()),
            "tokenizer",
        ));
    }
    // Ids the model has no embedding for: refused at load, not at the first
    // command that uses them.
    let mut past: serde_json::Value = serde_json::from_str(&tok).unwrap();
    past["model"]["vocab"]["red"] = 5000.into();
    let mut added: serde_json::Value = serde_json::from_str(&tok).unwrap();
    added["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 99999, "content": "zebra", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": true, "special": false
        }));
    for (label, t) in [
        ("tokenizer: a word's id past vocab_size", past),
        ("tokenizer: an added token past vocab_size", added),
    ] {
        out.push((
            label.into(),
            model_with_file(root, label, "tokenizer.json", t.to_string().into_bytes()),
            "vocab_size",
        ));
    }
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = root.join("models").join(format!("no-{file}"));
        copy_dir(&shipped(), &dir);
        std::fs::remove_file(dir.join(file)).unwrap();
        out.push((format!("checkpoint without {file}"), dir, file));
    }
    out
}

fn model_cases(fx: &Fixtures, dirs: &[(String, PathBuf, &'static str)]) -> Vec<Case> {
    let cup = s(&fx.cup);
    let mut cases = Vec::new();
    for (label, dir, needle) in dirs {
        let expect = if label.contains("still fit") {
            Expect::Ok
        } else {
            Expect::Fail(needle)
        };
        cases.push(Case::new(
            format!("model: {label}"),
            &[
                "--image",
                &cup,
                "--cmd",
                CUP,
                "--no-overlay",
                "--model-dir",
                &s(dir),
            ],
            expect,
        ));
    }
    for (what, path) in [
        ("missing", "nowhere"),
        ("a file", "f"),
        ("dev null", "/dev/null"),
    ] {
        cases.push(
            Case::new(
                format!("model-dir is {what}"),
                &["--image", &cup, "--cmd", CUP, "--model-dir", path],
                Expect::Fail(""),
            )
            .file("f", b"x".to_vec()),
        );
    }
    // A checkpoint whose config.json is a named pipe must not hang.
    cases.push(
        Case::new(
            "model config.json is a fifo",
            &["--image", &cup, "--cmd", CUP, "--model-dir", "m"],
            Expect::Fail("regular file"),
        )
        .copy("m", &shipped())
        .fifo("m/config.json"),
    );
    cases
}

/// The broken models through `explain`, `eval` and `bench` too.
fn model_everywhere(fx: &Fixtures, dirs: &[(String, PathBuf, &'static str)]) -> Vec<Case> {
    let cup = s(&fx.cup);
    let mut cases = Vec::new();
    for (label, dir, needle) in dirs.iter().filter(|(l, _, _)| {
        l.contains("NaN")
            || l.contains("Inf")
            || l.contains("fewer")
            || l.contains("image_std zero")
            || l.contains("3e38")
            || l.contains("past vocab_size")
    }) {
        let d = s(dir);
        cases.push(Case::new(
            format!("explain, model: {label}"),
            &["explain", "--image", &cup, "--cmd", CUP, "--model-dir", &d],
            Expect::Fail(needle),
        ));
        cases.push(Case::new(
            format!("eval, model: {label}"),
            &["eval", "--scenes", "1", "--json", "--model-dir", &d],
            Expect::Fail(needle),
        ));
        // A server that started would never exit: the time limit catches it.
        if label.contains("past vocab_size") {
            cases.push(Case::new(
                format!("serve, model: {label}"),
                &["serve", "--port", "0", "--model-dir", &d],
                Expect::Fail(needle),
            ));
        }
    }
    for (label, dir, needle) in dirs
        .iter()
        .filter(|(l, _, _)| !l.contains("still fit"))
        .step_by(10)
    {
        cases.push(Case::new(
            format!("bench, model: {label}"),
            &[
                "bench",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--batch",
                "1",
                "--model-dir",
                &s(dir),
            ],
            Expect::Fail(needle),
        ));
    }
    cases
}

fn explain_cases(fx: &Fixtures) -> Vec<Case> {
    let cup = s(&fx.cup);
    let mut cases = Vec::new();
    for (name, extra, needle) in [
        ("head 0", vec!["--head", "0"], ""),
        ("head 5 of 4", vec!["--head", "5"], "--head 5"),
        ("head 65", vec!["--head", "65"], ""),
        ("head -1", vec!["--head", "-1"], ""),
        ("head text", vec!["--head", "two"], ""),
        ("top 0", vec!["--top", "0"], ""),
        ("top 1001", vec!["--top", "1001"], ""),
        ("top huge", vec!["--top", "99999999999999999999"], ""),
        ("plot without faithfulness", vec!["--plot", "c.png"], ""),
        (
            "plot not png",
            vec!["--faithfulness", "--plot", "c.jpg"],
            "must end in .png",
        ),
        (
            "plot over the input",
            vec!["--faithfulness", "--plot", leak(&cup)],
            "refusing to overwrite",
        ),
        (
            "plot in a missing dir",
            vec!["--faithfulness", "--plot", "no/such/dir/c.png"],
            "",
        ),
        ("seed text", vec!["--seed", "x"], ""),
        ("seed -1", vec!["--seed", "-1"], ""),
    ] {
        let mut args = vec!["explain", "--image", cup.as_str(), "--cmd", CUP];
        args.extend(extra);
        cases.push(Case::new(
            format!("explain {name}"),
            &args,
            Expect::Fail(needle),
        ));
    }
    for (name, cmd, needle) in [
        ("empty command", " ", "empty"),
        ("special command", "<boa> <eoa>", "none of the words"),
        ("control command", "\u{1b}[2J", "control character"),
        ("long command", &*"red ".repeat(40), "at most"),
    ] {
        cases.push(Case::new(
            format!("explain {name}"),
            &["explain", "--image", &cup, "--cmd", cmd],
            Expect::Fail(needle),
        ));
    }
    for (ext, bytes) in fx.encoded.iter().take(6) {
        let name = format!("x.{ext}");
        cases.push(
            Case::new(
                format!("explain {ext} cut"),
                &["explain", "--image", &name, "--cmd", CUP],
                Expect::Fail(leak(&name)),
            )
            .file(&name, bytes[..bytes.len() / 2].to_vec()),
        );
    }
    cases.push(Case::new(
        "explain missing --cmd",
        &["explain", "--image", &cup],
        Expect::Fail(""),
    ));
    cases.push(
        Case::new(
            "explain ok",
            &[
                "explain", "--image", &cup, "--cmd", CUP, "--head", "4", "--top", "1000",
            ],
            Expect::Ok,
        )
        .check(finite_text),
    );
    cases.push(
        Case::new(
            "explain json ok",
            &["explain", "--image", &cup, "--cmd", CUP, "--json"],
            Expect::Ok,
        )
        .check(finite_text),
    );
    cases
}

/// No "NaN" or "inf" in a successful printout.
fn finite_text(out: &str) {
    let lower = out.to_lowercase();
    assert!(
        !lower.contains("nan") && !lower.contains("inf "),
        "not finite:\n{out}"
    );
}

fn eval_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, args, needle) in [
        ("scenes 0", vec!["--scenes", "0"], ""),
        ("scenes too many", vec!["--scenes", "1000001"], ""),
        ("scenes -1", vec!["--scenes", "-1"], ""),
        ("scenes text", vec!["--scenes", "many"], ""),
        ("ks without faithfulness", vec!["--ks", "0,4"], ""),
        ("family without faithfulness", vec!["--family", "pick"], ""),
        ("ks too large", vec!["--faithfulness", "--ks", "0,1025"], ""),
        ("ks negative", vec!["--faithfulness", "--ks", "-1"], ""),
        ("ks text", vec!["--faithfulness", "--ks", "a,b"], ""),
        (
            "family unknown",
            vec!["--faithfulness", "--family", "dance"],
            "",
        ),
        (
            "faithfulness unknown split",
            vec!["--faithfulness", "--split", "nope"],
            "nope",
        ),
        (
            "seed overflow",
            vec!["--seed", "18446744073709551615", "--scenes", "2"],
            "largest seed",
        ),
        (
            "seed max, one scene",
            vec!["--seed", "18446744073709551615", "--scenes", "1"],
            "largest seed",
        ),
        (
            "seed in the training range",
            vec!["--seed", "0", "--scenes", "1"],
            "training range",
        ),
        ("seed 2^64", vec!["--seed", "18446744073709551616"], ""),
        (
            "unknown split",
            vec!["--split", "nope", "--scenes", "1"],
            "unknown split",
        ),
        (
            "split seed overflow",
            vec![
                "--split",
                "style",
                "--seed",
                "18446744073709551615",
                "--scenes",
                "2",
            ],
            "largest seed",
        ),
        ("bad device", vec!["--device", "nope", "--scenes", "1"], ""),
        (
            "per-command into a missing directory",
            vec!["--scenes", "1", "--per-command", "no/such/dir/c.jsonl"],
            "cannot write",
        ),
        (
            "per-command with faithfulness",
            vec!["--faithfulness", "--per-command", "c.jsonl"],
            "",
        ),
        (
            "model-dir missing",
            vec!["--model-dir", "nope", "--scenes", "1"],
            "does not exist",
        ),
    ] {
        let mut a = vec!["eval"];
        a.extend(args);
        cases.push(Case::new(format!("eval {name}"), &a, Expect::Fail(needle)));
    }
    // --per-command over one of the model's own files, or over a pipe.
    for (name, path) in [
        ("the model's tokenizer", "m/tokenizer.json"),
        ("the model's config through ..", "m/../m/config.json"),
        ("the model's weights through a symlink", "w.link"),
    ] {
        cases.push(
            Case::new(
                format!("eval per-command over {name}"),
                &[
                    "eval",
                    "--scenes",
                    "1",
                    "--model-dir",
                    "m",
                    "--per-command",
                    path,
                ],
                Expect::Fail("refusing to overwrite"),
            )
            .copy("m", &shipped())
            .symlink("w.link", "m/model.safetensors"),
        );
    }
    cases.push(
        Case::new(
            "eval per-command over a named pipe",
            &["eval", "--scenes", "1", "--per-command", "p.jsonl"],
            Expect::Fail("not a regular file"),
        )
        .fifo("p.jsonl"),
    );
    cases.push(Case::new(
        "eval one scene",
        &["eval", "--scenes", "1", "--json"],
        Expect::Ok,
    ));
    cases.push(Case::new(
        "eval last seeds",
        &["eval", "--scenes", "1", "--seed", "18446744073709551614"],
        Expect::Ok,
    ));
    cases
}

fn scene_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, args, needle) in [
        ("size 0", vec!["--size", "0"], "--size"),
        ("size 63", vec!["--size", "63"], "--size"),
        ("size 1025", vec!["--size", "1025"], "--size"),
        ("size 2^32", vec!["--size", "4294967296"], ""),
        ("size -5", vec!["--size", "-5"], ""),
        ("count 0", vec!["--count", "0"], "--count"),
        ("count too many", vec!["--count", "100001"], "--count"),
        ("count -1", vec!["--count", "-1"], ""),
        (
            "seed overflow",
            vec!["--seed", "18446744073709551615", "--count", "2"],
            "largest seed",
        ),
        ("out not png", vec!["--out", "s.jpg"], "must end in .png"),
        ("out missing dir", vec!["--out", "no/s.png"], "cannot write"),
        ("out under a file", vec!["--out", "f/s.png"], "cannot write"),
        ("out empty", vec!["--out", ""], ""),
        ("out is a directory", vec!["--out", "d.png"], ""),
        ("dir is a file", vec!["--count", "2", "--dir", "f"], ""),
        ("out and count", vec!["--out", "a.png", "--count", "2"], ""),
        // The third scene's PNG cannot be renamed into place: the first two go too.
        (
            "count blocked",
            vec!["--count", "3", "--seed", "0", "--dir", "blocked"],
            "",
        ),
        ("out json blocked", vec!["--out", "j.png"], ""),
    ] {
        let mut a = vec!["scene"];
        a.extend(args);
        cases.push(
            Case::new(format!("scene {name}"), &a, Expect::Fail(needle))
                .file("f", b"x".to_vec())
                .file("d.png/keep", vec![])
                .file("blocked/scene_2.png/keep", vec![])
                .file("j.json/keep", vec![]),
        );
    }
    for (name, args) in [
        ("out", vec!["scene", "--out", "p.png"]),
        ("out's JSON", vec!["scene", "--out", "q.png"]),
        (
            "dir",
            vec!["scene", "--count", "2", "--seed", "0", "--dir", "d"],
        ),
    ] {
        cases.push(
            Case::new(
                format!("scene {name} over a named pipe"),
                &args,
                Expect::Fail("not a regular file"),
            )
            .fifo("p.png")
            .fifo("q.json")
            .fifo("d/scene_1.png"),
        );
    }
    cases.push(Case::new(
        "scene one",
        &["scene", "--seed", "3", "--out", "s.png"],
        Expect::Ok,
    ));
    cases.push(Case::new(
        "scene several into new dirs",
        &["scene", "--count", "3", "--dir", "a/b/c", "--size", "64"],
        Expect::Ok,
    ));
    cases.push(Case::new(
        "scene last seed",
        &[
            "scene",
            "--seed",
            "18446744073709551615",
            "--size",
            "1024",
            "--out",
            "s.png",
        ],
        Expect::Ok,
    ));
    cases
}

/// A training config changed in one place.
fn train_config(fx: &Fixtures, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.tiny_train).unwrap()).unwrap();
    edit(&mut cfg);
    serde_json::to_vec(&cfg).unwrap()
}

fn train_cases(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let bad: Vec<(&str, &str, serde_json::Value)> = vec![
        ("steps", "0", json("0")),
        ("steps", "-1", json("-1")),
        ("steps", "1e12", json("1000000000000")),
        ("scenes_per_step", "0", json("0")),
        ("scenes_per_step", "100000", json("100000")),
        ("commands_per_scene", "0", json("0")),
        ("shards", "0", json("0")),
        ("shards", "1000", json("1000")),
        ("checkpoint_every", "0", json("0")),
        ("warmup_steps", "-1", json("-1")),
        ("checkpoint_every", "1e8", json("100000000")),
        ("learning_rate", "-1", json("-1")),
        ("learning_rate", "1e9", json("1e9")),
        ("grad_clip", "0", json("0")),
        ("weight_decay", "-0.1", json("-0.1")),
        ("relational_share", "2", json("2")),
        ("next_to_boost_en", "-1", json("-1")),
        ("attention_loss_weight", "-1", json("-1")),
        ("grounded", "unknown", json("\"everything\"")),
        ("grounded", "a number", json("1")),
        ("bin_sigma", "-1", json("-1")),
        ("eval_scenes", "0", json("0")),
        ("train_seeds", "empty", json("[5, 5]")),
        ("train_seeds", "held-out", json("[0, 300000]")),
        ("seed", "-1", json("-1")),
    ];
    for (field, label, v) in bad {
        let bytes = train_config(fx, |c| c[field] = v);
        cases.push(
            Case::new(
                format!("train config {field} {label}"),
                &["train", "--quiet", "--config", "c.json", "--out", "out"],
                Expect::Fail(""),
            )
            .file("c.json", bytes),
        );
    }
    // A picture rendered smaller than the model's view, larger than the
    // renderer draws, or at a negative size.
    for (label, cap, expect) in [
        ("below the view", "64", "max_side"),
        ("above the renderer", "100000", "max_side"),
        ("negative", "-1", ""),
    ] {
        let bytes = train_config(fx, |c| {
            c["random_extras"] = json(&format!("{{\"max_side\": {cap}}}"))
        });
        cases.push(
            Case::new(
                format!("train config random_extras.max_side {label}"),
                &["train", "--quiet", "--config", "c.json", "--out", "out"],
                Expect::Fail(expect),
            )
            .file("c.json", bytes),
        );
    }
    // The patch head's readings asked for without a patch head.
    let bytes = train_config(fx, |c| {
        c["model"]["patch_labels"] = json("false");
        c["model"]["fusion_reads_labels"] = json("true");
    });
    cases.push(
        Case::new(
            "train config model.fusion_reads_labels without a patch head",
            &["train", "--quiet", "--config", "c.json", "--out", "out"],
            Expect::Fail("fusion_reads_labels"),
        )
        .file("c.json", bytes),
    );
    // A warm start from a directory that holds no model.
    let bytes = train_config(fx, |c| c["warm_start"] = json("\"no-such-model\""));
    cases.push(
        Case::new(
            "train config warm_start from a missing model",
            &["train", "--quiet", "--config", "c.json", "--out", "out"],
            Expect::Fail("warm start from no-such-model"),
        )
        .file("c.json", bytes),
    );
    let model_bad: Vec<(&str, serde_json::Value)> = vec![
        ("image_size", json("1600000")),
        ("hidden_size", json("0")),
        ("num_attention_heads", json("3")),
        ("layer_norm_eps", json("-1")),
        ("image_std", json("[0, 0, 0]")),
        ("max_text_len", json("0")),
        ("fusion_layers", json("1000")),
    ];
    for (field, v) in model_bad {
        let bytes = train_config(fx, |c| c["model"][field] = v);
        cases.push(
            Case::new(
                format!("train config model.{field}"),
                &["train", "--quiet", "--config", "c.json", "--out", "out"],
                Expect::Fail("config"),
            )
            .file("c.json", bytes),
        );
    }
    let tiny_train = s(&fx.tiny_train);
    for (name, args, needle) in [
        ("steps 0", vec!["--steps", "0"], ""),
        ("steps -1", vec!["--steps", "-1"], ""),
        ("steps too many", vec!["--steps", "10000001"], ""),
        (
            "config missing",
            vec!["--config", "none.json", "--out", "out"],
            "does not exist",
        ),
        (
            "config a directory",
            vec!["--config", ".", "--out", "out"],
            "directory",
        ),
        (
            "config garbage",
            vec!["--config", "f", "--out", "out"],
            "training config",
        ),
        (
            "config a fifo",
            vec!["--config", "fifo.json", "--out", "out"],
            "regular file",
        ),
        ("out under a file", vec!["--out", "f/out"], ""),
        (
            "resume without a run",
            vec!["--resume", "--out", "empty"],
            "--resume",
        ),
        (
            "a fresh run over a model",
            vec!["--out", "m"],
            "already holds a model",
        ),
    ] {
        let mut a = vec!["train", "--quiet"];
        if !args.contains(&"--config") {
            a.extend(["--config", tiny_train.as_str()]);
        }
        if !args.contains(&"--out") {
            a.extend(["--out", "out"]);
        }
        a.extend(args);
        cases.push(
            Case::new(format!("train {name}"), &a, Expect::Fail(needle))
                .file("f", b"x".to_vec())
                .file("empty/keep", vec![])
                .file("m/model.safetensors", vec![])
                .fifo("fifo.json"),
        );
    }
    // Resuming from a broken training state.
    let state = std::fs::read(fx.run.join("training_state.safetensors")).unwrap();
    let parsed = Safetensors::parse(&state);
    let names = parsed.names();
    let pick = |prefix: &str| {
        names
            .iter()
            .find(|n| n.starts_with(prefix))
            .unwrap()
            .clone()
    };
    let mut broken: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for (label, prefix) in [
        ("adam_m", "adam_m."),
        ("adam_v", "adam_v."),
        ("param", "param."),
    ] {
        for (vlabel, v) in [("NaN", f32::NAN), ("Inf", f32::INFINITY)] {
            let mut st = Safetensors::parse(&state);
            let (a, _) = st.range(&pick(prefix));
            st.data[a..a + 4].copy_from_slice(&v.to_le_bytes());
            broken.push((format!("{label} holds {vlabel}"), st.bytes(), "finite"));
        }
    }
    for (label, step) in [
        ("1e9", 1e9f64),
        ("-1", -1.0),
        ("1.5", 1.5),
        ("NaN", f64::NAN),
        ("past the run", 100.0),
    ] {
        let mut st = Safetensors::parse(&state);
        let (a, _) = st.range("state.step");
        st.data[a..a + 8].copy_from_slice(&step.to_le_bytes());
        broken.push((format!("step {label}"), st.bytes(), "step"));
    }
    let mut st = Safetensors::parse(&state);
    let (a, _) = st.range("state.step");
    st.data[a..a + 8].copy_from_slice(&3f64.to_le_bytes());
    broken.push(("already finished".into(), st.bytes(), "already at step"));
    let mut st = Safetensors::parse(&state);
    let key = pick("adam_v.");
    st.header[&key]["shape"] = serde_json::json!([1]);
    broken.push(("a moment reshaped".into(), st.bytes(), ""));
    let mut st = Safetensors::parse(&state);
    let v = st.header.remove(&pick("adam_v.")).unwrap();
    st.header.insert("adam_v.nothing".into(), v);
    broken.push(("a moment missing".into(), st.bytes(), "lacks"));
    broken.push(("state cut".into(), state[..state.len() / 2].to_vec(), ""));
    broken.push(("state empty".into(), vec![], ""));
    for (label, bytes, needle) in broken {
        cases.push(
            Case::new(
                format!("train --resume, {label}"),
                &["train", "--quiet", "--resume", "--out", "run"],
                Expect::Fail(needle),
            )
            .copy("run", &fx.run)
            .file("run/training_state.safetensors", bytes),
        );
    }
    cases.push(
        Case::new(
            "train --resume, tokenizer garbage",
            &["train", "--quiet", "--resume", "--out", "run"],
            Expect::Fail("tokenizer"),
        )
        .copy("run", &fx.run)
        .file("run/tokenizer.json", b"garbage".to_vec()),
    );
    // A named pipe where the log is: refused, not opened (it would block).
    cases.push(
        Case::new(
            "train --resume, the log is a named pipe",
            &["train", "--quiet", "--resume", "--out", "run"],
            Expect::Fail("regular file"),
        )
        .copy("run", &fx.run)
        .fifo("run/train_log.jsonl"),
    );
    cases.push(
        Case::new(
            "train --resume, config garbage",
            &["train", "--quiet", "--resume", "--out", "run"],
            Expect::Fail(""),
        )
        .copy("run", &fx.run)
        .file("run/train_config.json", b"{".to_vec()),
    );
    // A full disk: the checkpoint is not written, the last one stays whole.
    cases.push(
        Case::new(
            "train --resume on a full disk",
            &["train", "--quiet", "--resume", "--out", "run"],
            Expect::Fail("checkpoint"),
        )
        .copy("run", &fx.run)
        .limit(40),
    );
    cases.push(
        Case::new(
            "train fresh on a full disk",
            &[
                "train",
                "--quiet",
                "--config",
                &tiny_train,
                "--out",
                "new/run",
            ],
            Expect::Fail(""),
        )
        .limit(40),
    );
    cases.push(
        Case::new(
            "train --resume one more step",
            &[
                "train", "--quiet", "--resume", "--steps", "2", "--out", "run",
            ],
            Expect::Ok,
        )
        .copy("run", &fx.run),
    );
    cases
}

fn bench_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let many: String = (1..=17)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let huge_point = serde_json::json!({"path": "naive", "seq_len": 1_000_000_000u64, "heads": 4, "head_dim": 32, "runs": 1, "device": "cpu", "dtype": "f32"}).to_string();
    for (name, args) in [
        ("batch 0", vec!["--batch", "0"]),
        ("batch 100000", vec!["--batch", "100000"]),
        ("batch 17 values", vec!["--batch", &many]),
        ("batch empty value", vec!["--batch", ""]),
        ("batch text", vec!["--batch", "a,b"]),
        (
            "sweep 1000000",
            vec![
                "--attention-sweep",
                "--skip-inference",
                "--sweep-lens",
                "1000000",
            ],
        ),
        (
            "sweep 0",
            vec!["--attention-sweep", "--skip-inference", "--sweep-lens", "0"],
        ),
        (
            "sweep 4097",
            vec![
                "--attention-sweep",
                "--skip-inference",
                "--sweep-lens",
                "4097",
            ],
        ),
        ("runs 0", vec!["--runs", "0"]),
        ("runs 10001", vec!["--runs", "10001"]),
        ("warmup 10001", vec!["--warmup", "10001"]),
        ("train-steps 1001", vec!["--train-steps", "1001"]),
        ("cold-start 1001", vec!["--cold-start", "1001"]),
        ("runs -1", vec!["--runs", "-1"]),
        ("sweep-point garbage", vec!["--sweep-point", "garbage"]),
        ("sweep-point huge", vec!["--sweep-point", &huge_point]),
        ("device bogus", vec!["--device", "abacus"]),
        ("dtype f64", vec!["--dtype", "f64"]),
        (
            "export-reference without inference",
            vec!["--skip-inference", "--export-reference", "r"],
        ),
        (
            "export-reference into a missing directory",
            vec![
                "--runs",
                "1",
                "--warmup",
                "0",
                "--batch",
                "1",
                "--export-reference",
                "missing/r",
            ],
        ),
        (
            "export-reference under a file",
            vec![
                "--runs",
                "1",
                "--warmup",
                "0",
                "--batch",
                "1",
                "--export-reference",
                "f/r",
            ],
        ),
    ] {
        let mut a = vec!["bench"];
        a.extend(args);
        cases.push(
            Case::new(format!("bench {name}"), &a, Expect::Fail("")).file("f", b"x".to_vec()),
        );
    }
    cases
}

/// `serve` flags that must be refused before it listens (a server that
/// started would never exit: the corpus's time limit would catch it), and
/// the bounds of `bench --serve-load`.
fn serve_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, args, needle) in [
        ("port 99999", vec!["--port", "99999"], "99999"),
        ("port -1", vec!["--port", "-1"], ""),
        ("port text", vec!["--port", "http"], "http"),
        (
            "host name",
            vec!["--host", "example.com"],
            "not an IP address",
        ),
        (
            "host 999.1.1.1",
            vec!["--host", "999.1.1.1"],
            "not an IP address",
        ),
        ("host empty", vec!["--host", ""], ""),
        (
            "host with port",
            vec!["--host", "127.0.0.1:80"],
            "not an IP address",
        ),
        ("workers 0", vec!["--workers", "0"], ""),
        ("workers 65", vec!["--workers", "65"], ""),
        ("queue 1025", vec!["--queue", "1025"], ""),
        ("timeout 0", vec!["--timeout", "0"], ""),
        ("upload 0 MiB", vec!["--max-upload-mib", "0"], ""),
        ("upload 257 MiB", vec!["--max-upload-mib", "257"], ""),
        ("unknown flag", vec!["--root", "/"], "--root"),
        ("stray argument", vec!["index.html"], "index.html"),
        (
            "missing model",
            vec!["--port", "0", "--model-dir", "no-such-model"],
            "no-such-model",
        ),
    ] {
        let mut a = vec!["serve"];
        a.extend(args);
        cases.push(Case::new(format!("serve {name}"), &a, Expect::Fail(needle)));
    }
    for (name, args) in [
        ("clients 0", vec!["--serve-load", "--clients", "0"]),
        ("clients 65", vec!["--serve-load", "--clients", "65"]),
        ("seconds 0", vec!["--serve-load", "--seconds", "0"]),
        ("seconds 601", vec!["--serve-load", "--seconds", "601"]),
        ("clients without serve-load", vec!["--clients", "4"]),
    ] {
        let mut a = vec!["bench"];
        a.extend(args);
        cases.push(Case::new(format!("bench {name}"), &a, Expect::Fail("")));
    }
    cases
}

/// Standard output closed by its reader, and standard output on a full disk.
fn stream_cases(fx: &Fixtures) -> Vec<Case> {
    let cup = s(&fx.cup);
    let pairs = format!("{}\n", serde_json::json!({"image": cup, "cmd": CUP}));
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("demo json", vec!["--image", &cup, "--cmd", CUP, "--json"]),
        ("demo text", vec!["--image", &cup, "--cmd", CUP]),
        (
            "demo with sheets",
            vec![
                "--image",
                &cup,
                "--cmd",
                CUP,
                "--per-head",
                "--export",
                "a.npz",
            ],
        ),
        ("batch", vec!["--batch", "p.jsonl", "--overlay-dir", "o"]),
        ("explain", vec!["explain", "--image", &cup, "--cmd", CUP]),
        (
            "explain json",
            vec!["explain", "--image", &cup, "--cmd", CUP, "--json"],
        ),
        ("eval json", vec!["eval", "--scenes", "1", "--json"]),
        ("eval table", vec!["eval", "--scenes", "1"]),
        ("scene", vec!["scene", "--out", "s.png"]),
        ("scene many", vec!["scene", "--count", "2", "--dir", "sd"]),
        ("help", vec!["--help"]),
        ("version", vec!["--version"]),
    ];
    let mut cases = Vec::new();
    for (name, args) in &runs {
        cases.push(
            Case::new(format!("{name} into a closed pipe"), args, Expect::Ok)
                .out(Out::Closed)
                .file("p.jsonl", pairs.clone())
                .file("o/keep", vec![]),
        );
        if !matches!(*name, "help" | "version") {
            cases.push(
                Case::new(
                    format!("{name} into a full disk"),
                    args,
                    Expect::Fail("standard output"),
                )
                .out(Out::Full)
                .file("p.jsonl", pairs.clone())
                .file("o/keep", vec![]),
            );
        }
    }
    // Files that do not fit on the disk: nothing is left.
    for (name, args) in [
        (
            "overlay",
            vec!["--image", cup.as_str(), "--cmd", CUP, "--overlay", "o.png"],
        ),
        (
            "sheets",
            vec![
                "--image",
                cup.as_str(),
                "--cmd",
                CUP,
                "--no-overlay",
                "--per-head",
                "--rollout",
            ],
        ),
        (
            "export",
            vec![
                "--image",
                cup.as_str(),
                "--cmd",
                CUP,
                "--no-overlay",
                "--export",
                "a.npz",
            ],
        ),
        ("scene", vec!["scene", "--out", "s.png", "--size", "512"]),
        (
            "scenes",
            vec!["scene", "--count", "4", "--dir", "many", "--size", "256"],
        ),
        (
            "batch overlays",
            vec!["--batch", "p.jsonl", "--overlay-dir", "o"],
        ),
    ] {
        cases.push(
            Case::new(format!("{name} on a full disk"), &args, Expect::Fail(""))
                .limit(30)
                .file("p.jsonl", pairs.clone())
                .file("o/keep", vec![]),
        );
    }
    cases
}

#[test]
fn hostile_corpus() {
    let fixtures_dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let fx = fixtures(fixtures_dir.path());
    let dirs = model_dirs(&fx.root);
    let mut cases = Vec::new();
    cases.extend(image_cases(&fx));
    cases.extend(png_damage());
    cases.extend(gif_damage());
    cases.extend(bmp_damage());
    cases.extend(webp_damage());
    cases.extend(command_cases(&fx));
    cases.extend(flag_cases(&fx));
    cases.extend(batch_cases(&fx));
    cases.extend(model_cases(&fx, &dirs));
    cases.extend(model_everywhere(&fx, &dirs));
    cases.extend(explain_cases(&fx));
    cases.extend(eval_cases());
    cases.extend(scene_cases());
    cases.extend(train_cases(&fx));
    cases.extend(bench_cases());
    cases.extend(serve_cases());
    cases.extend(stream_cases(&fx));
    cases.extend(regressions());
    let before = snapshot(&fx.root);
    let (failures, seconds) = run_all(&bin(), work.path(), &cases);
    eprintln!(
        "hostile corpus: {} cases in {seconds:.1} s, {} failed",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases broke the promise:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 300, "the corpus shrank to {}", cases.len());
    assert_eq!(
        snapshot(&fx.root),
        before,
        "a case changed the shared fixtures"
    );
}

/// Inputs the fuzzers found (see docs/RELIABILITY.md), as they were found.
fn regressions() -> Vec<Case> {
    Vec::new()
}
