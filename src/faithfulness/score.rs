//! Summing curves up: their areas, and how a map scores against the target.

use super::Curve;
use crate::maps;

pub(super) fn add_into(sum: &mut Curve, c: &Curve) {
    for (s, x) in sum.prob.iter_mut().zip(&c.prob) {
        *s += x;
    }
    for (s, x) in sum.moved.iter_mut().zip(&c.moved) {
        *s += x;
    }
    if let (Some(s), Some(x)) = (sum.on_target.as_mut(), c.on_target.as_ref()) {
        for (s, x) in s.iter_mut().zip(x) {
            *s += x;
        }
    }
}

pub(super) fn scale(c: &mut Curve, f: f32) {
    c.prob.iter_mut().for_each(|x| *x *= f);
    c.moved.iter_mut().for_each(|x| *x *= f);
    if let Some(on) = c.on_target.as_mut() {
        on.iter_mut().for_each(|x| *x *= f);
    }
}

/// Trapezoid area under `ys` over `k / k_max`.
pub fn auc(ks: &[usize], ys: &[f32]) -> f32 {
    let top = ks.last().copied().unwrap_or(0).max(1) as f32;
    ks.windows(2)
        .zip(ys.windows(2))
        .map(|(k, y)| (k[1] - k[0]) as f32 / top * (y[0] + y[1]) / 2.0)
        .sum()
}

/// The share of a map's (non-negative) mass on the target.
pub fn mass_on(map: &[f32], coverage: &[f32]) -> f32 {
    let total: f32 = map.iter().map(|v| v.max(0.0)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    map.iter()
        .zip(coverage)
        .map(|(v, c)| v.max(0.0) * c)
        .sum::<f32>()
        / total
}

/// Whether a map's peak lies on the target (the pointing game).
pub fn points_at(map: &[f32], coverage: &[f32]) -> bool {
    coverage.get(maps::argmax(map)).is_some_and(|&c| c > 0.5)
}

/// Patches from the highest value down.
pub fn ranking(values: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order
}
