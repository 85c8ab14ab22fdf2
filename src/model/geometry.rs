//! Position terms for the fusion head's cross-attention (`cross_geometry`):
//! what lets a query ask for "near the bowl" or "left of the ball", and
//! carry where it looked into the next block. See [`Geometry`].

use candle::{Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::{linear, Linear};
use super::pointer::patch_centres;
use super::Config;

/// Relation-aware position terms for a cross-attention over a patch grid.
///
/// Every patch `i` has fixed coordinates `φ_i = (u_i, v_i, u_i² + v_i²)`,
/// with `u, v` in [-1, 1] across the image. Per head:
///
/// - **ask**: the query adds `g · φ_i` to patch `i`'s score, with `g = W_g q`
///   chosen by the query. `g = (1, 0, 0)` prefers the right of the image;
///   `g = c·(2u_L, 2v_L, -1)` adds `-c·|p_i - p_L|²` plus a constant, so it
///   prefers the patches nearest a landmark at `p_L`.
/// - **tell**: the query's output gains `W_t Σ_i α_i φ_i`, where it looked,
///   as coordinates. A word that looked at the bowl carries the bowl's
///   `(u, v, u² + v²)` into the next block, where the `<boa>` query can turn
///   it into the `g` above.
///
/// Both are linear, so a dot-product score alone could only approximate them
/// through the sine-cosine position codes, which is where "next to" failed.
#[derive(Debug, Clone)]
pub struct Geometry {
    ask: Linear,
    tell: Linear,
    /// (N, 3): `(u, v, u² + v²)` of each patch centre.
    phi: Tensor,
    num_heads: usize,
}

impl Geometry {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.num_attention_heads;
        let xy = patch_centres(cfg.grid(), vb.device())?; // (N, 2) in [0, 1]
        let uv = ((xy * 2.0)? - 1.0)?;
        let r2 = uv.sqr()?.sum_keepdim(1)?;
        Ok(Self {
            ask: linear(cfg.hidden_size, 3 * h, vb.pp("ask"))?,
            tell: linear(3 * h, cfg.hidden_size, vb.pp("tell"))?,
            phi: Tensor::cat(&[uv, r2], 1)?.to_dtype(vb.dtype())?,
            num_heads: h,
        })
    }

    /// The score terms `g · φ_i` for queries `q_in` (B, S, C): (B, H, S, N).
    pub fn ask(&self, q_in: &Tensor) -> Result<Tensor> {
        let (b, s, _) = q_in.dims3()?;
        let g = q_in
            .apply(&self.ask)?
            .reshape((b, s, self.num_heads, 3))?
            .transpose(1, 2)?
            .contiguous()?; // (B, H, S, 3)
        g.broadcast_matmul(&self.phi.t()?)
    }

    /// Where each query looked, `Σ_i α_i φ_i` per head, projected to the
    /// hidden size: `weights` (B, H, S, N) -> (B, S, C).
    pub fn tell(&self, weights: &Tensor) -> Result<Tensor> {
        let (b, h, s, _) = weights.dims4()?;
        let looked = weights.broadcast_matmul(&self.phi)?; // (B, H, S, 3)
        looked
            .transpose(1, 2)?
            .reshape((b, s, 3 * h))?
            .apply(&self.tell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::VarMap;

    /// A 4 × 4 grid with 2 heads, and the two projections set by hand.
    fn geometry(ask: Vec<f32>, tell: Vec<f32>) -> (Geometry, Config) {
        let mut cfg = Config::tiny();
        cfg.image_size = 64;
        cfg.patch_size = 16;
        cfg.hidden_size = 4;
        cfg.num_attention_heads = 2;
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let geo = Geometry::new(&cfg, vb).unwrap();
        let dev = Device::Cpu;
        let set = |name: &str, w: Vec<f32>, shape: (usize, usize)| {
            vars.data().lock().unwrap()[name]
                .set(&Tensor::from_vec(w, shape, &dev).unwrap())
                .unwrap();
            vars.data().lock().unwrap()[&name.replace("weight", "bias")]
                .zero_set()
                .unwrap();
        };
        set("ask.weight", ask, (6, 4));
        set("tell.weight", tell, (4, 6));
        (geo, cfg)
    }

    #[test]
    fn a_query_can_ask_for_the_patches_nearest_a_landmark() {
        // Head 0 asks g = (input_0, input_1, input_2): "near (u, v)" is
        // g = (2u, 2v, -1). Head 1 asks g = (input_3, 0, 0): "rightmost".
        let mut ask = vec![0f32; 24];
        ask[0] = 1.0; // g_0u <- x_0
        ask[4 + 1] = 1.0; // g_0v <- x_1
        ask[8 + 2] = 1.0; // g_0r <- x_2
        ask[12 + 3] = 1.0; // g_1u <- x_3
        let (geo, cfg) = geometry(ask, vec![0.0; 24]);
        let grid = cfg.grid();
        for (col, row) in [(0usize, 0usize), (2, 1), (3, 3), (1, 2)] {
            let u = 2.0 * (col as f32 + 0.5) / grid as f32 - 1.0;
            let v = 2.0 * (row as f32 + 0.5) / grid as f32 - 1.0;
            let q = Tensor::from_vec(vec![2.0 * u, 2.0 * v, -1.0, 1.0], (1, 1, 4), &Device::Cpu)
                .unwrap();
            let bias = geo.ask(&q).unwrap(); // (1, 2, 1, N)
            assert_eq!(bias.dims4().unwrap(), (1, 2, 1, grid * grid));
            let heads: Vec<Vec<f32>> = bias
                .squeeze(0)
                .unwrap()
                .squeeze(1)
                .unwrap()
                .to_vec2()
                .unwrap();
            assert_eq!(
                crate::maps::argmax(&heads[0]),
                row * grid + col,
                "near ({col}, {row})"
            );
            // Every patch of the rightmost column ties for head 1's best.
            assert_eq!(crate::maps::argmax(&heads[1]) % grid, grid - 1);
        }
    }

    #[test]
    fn a_query_hears_where_it_looked() {
        // tell maps head 0's (u, v, r) straight to outputs 0..3.
        let mut tell = vec![0f32; 24];
        for i in 0..3 {
            tell[i * 6 + i] = 1.0;
        }
        let (geo, cfg) = geometry(vec![0.0; 24], tell);
        let n = cfg.num_patches();
        // Head 0 looks half at patch 0 (u = v = -0.75), half at patch 5
        // (u = v = -0.25); head 1 looks anywhere (its output is not read).
        let mut w = vec![0f32; 2 * n];
        w[0] = 0.5;
        w[5] = 0.5;
        w[n + 3] = 1.0;
        let w = Tensor::from_vec(w, (1, 2, 1, n), &Device::Cpu).unwrap();
        let out: Vec<f32> = geo
            .tell(&w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let r = 0.5 * (2.0 * 0.75f32 * 0.75) + 0.5 * (2.0 * 0.25f32 * 0.25);
        let want = [-0.5, -0.5, r, 0.0];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }
}
