//! `--device auto|cpu|cuda[:N]|metal` and `--dtype f32|f16|bf16`.
//!
//! GPU back ends exist only when compiled in with the `cuda` or `metal` cargo
//! feature. `auto` takes a compiled-in GPU when one is present and falls back
//! to the CPU otherwise; naming a back end that was not compiled in is an
//! error that says how to rebuild.
//!
//! [`pin_thread_count`] fixes candle's CPU thread count once, at start-up.

use anyhow::{bail, Result};
use candle::{DType, Device};

/// candle 0.11 on Linux counts the physical cores by reading /proc/cpuinfo
/// again at every matrix product unless `RAYON_NUM_THREADS` is set (about a
/// quarter of batch-1 inference time here). This sets it to the count candle
/// would use, once. Call it first thing in `main`, before any thread starts
/// (setting the environment races with threads reading it).
pub fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Parses a device name and opens it.
pub fn select(name: &str) -> Result<Device> {
    let name = name.trim().to_lowercase();
    match name.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(auto()),
        "metal" => metal(),
        n if n == "cuda" || n.starts_with("cuda:") => {
            let ordinal = match n.strip_prefix("cuda:") {
                None => 0,
                Some(i) => i
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad CUDA device {n:?}: use cuda or cuda:N"))?,
            };
            cuda(ordinal)
        }
        other => bail!("unknown device {other:?}: use auto, cpu, cuda, cuda:N or metal"),
    }
}

fn auto() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("cannot open CUDA device {ordinal}: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device> {
    bail!("this vla-demo was built without CUDA support; rebuild with `cargo build --release --features cuda`, or use --device cpu")
}

#[cfg(feature = "metal")]
fn metal() -> Result<Device> {
    Device::new_metal(0).map_err(|e| anyhow::anyhow!("cannot open the Metal device: {e}"))
}

#[cfg(not(feature = "metal"))]
fn metal() -> Result<Device> {
    bail!("this vla-demo was built without Metal support; rebuild with `cargo build --release --features metal`, or use --device cpu")
}

/// Parses a dtype and checks the device can compute in it.
pub fn dtype(name: &str, device: &Device) -> Result<DType> {
    let dt = match name.trim().to_lowercase().as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => bail!("unknown dtype {other:?}: use f32, f16 or bf16"),
    };
    if device.is_cpu() && dt != DType::F32 {
        bail!(
            "dtype {name} needs a GPU: candle's CPU matmul supports f32 only here; use --dtype f32"
        );
    }
    if dt == DType::BF16 && !device.supports_bf16() {
        bail!("this device does not support bf16; use --dtype f32 or f16");
    }
    Ok(dt)
}

/// A short description for printouts: "cpu (2 threads)", "cuda:0", ...
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", candle::utils::get_num_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_always_work() {
        assert!(select("cpu").unwrap().is_cpu());
        #[cfg(not(any(feature = "cuda", feature = "metal")))]
        assert!(select("auto").unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_not_compiled_in_is_a_clear_error() {
        let e = select("cuda:0").unwrap_err().to_string();
        assert!(e.contains("built without CUDA"), "{e}");
    }

    #[test]
    fn bad_names_are_errors() {
        assert!(select("tpu").is_err());
        assert!(select("cuda:x").is_err());
        assert!(dtype("f64", &Device::Cpu).is_err());
        assert!(dtype("bf16", &Device::Cpu).is_err());
    }
}
