//! The attention sweep as a plain-text table (also valid Markdown).

use super::Sweep;

fn mib(b: u64) -> String {
    if b == 0 {
        "0".into()
    } else if b < 1 << 20 {
        format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// The sweep as a plain-text table (also valid Markdown).
pub fn table(s: &Sweep) -> String {
    let mut out = format!(
        "attention sweep: batch 1, {} heads × {} dims, {}, {}\n\
         tiled: the CPU kernel with {}×{} tiles (the candle-ops version off the CPU); tiled_ops: candle ops, {}×{} tiles\n\
         time: median ms; memory: analytic largest intermediate / measured VmHWM rise\n\n\
         | T | image | path | median ms | p90 ms | analytic | measured |\n|---|---|---|---|---|---|---|\n",
        s.heads,
        s.head_dim,
        s.dtype,
        s.device,
        s.kernel_block_q,
        s.kernel_block_k,
        s.block_q,
        s.block_k
    );
    for r in &s.rows {
        let img = r
            .image_size
            .map(|i| format!("{i} px"))
            .unwrap_or_else(|| "-".into());
        for p in &r.points {
            let (med, p90) = match p.ms {
                Some(m) => (format!("{:.2}", m.median), format!("{:.2}", m.p90)),
                None => ("-".into(), "-".into()),
            };
            let measured = match (p.measured_bytes, &p.note) {
                (Some(b), _) => mib(b),
                (None, Some(n)) => n.clone(),
                (None, None) => "-".into(),
            };
            out += &format!(
                "| {} | {img} | {} | {med} | {p90} | {} | {measured} |\n",
                r.seq_len,
                p.path,
                mib(p.analytic_bytes)
            );
        }
    }
    let pct = |x: Option<f64>| {
        x.map(|r| format!("1/{:.0}", 1.0 / r.max(1e-12)))
            .unwrap_or_else(|| "n/a".into())
    };
    out += &format!(
        "\ntiled / naive peak attention memory at the longest length: analytic {}, measured {} (target ≤ 1/8: {})\n",
        pct(s.tiled_over_naive_analytic),
        pct(s.tiled_over_naive_measured),
        match s.memory_target_met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        }
    );
    out
}
