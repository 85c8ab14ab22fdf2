//! Embeds models/pens-small-prior in the binary when it is there (see src/checkpoint.rs).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_embedded_model)");
    println!("cargo::rerun-if-changed=models/pens-small-prior");
    let dir = std::path::Path::new("models/pens-small-prior");
    if ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        println!("cargo::rustc-cfg=has_embedded_model");
    }
}
