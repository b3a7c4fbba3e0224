//! The AVX2 Q4_1 kernel of the patched candle-core (third_party/candle-core/PATCHES.md) gives,
//! bit for bit, what upstream's scalar `BlockQ4_1::vec_dot_unopt` gives: one dot product, four
//! at once, and the whole quantized matmul the model runs. Seeded inputs; no model needed.

use candle_core::quantized::k_quants::{BlockQ4_1, BlockQ8_1, GgmlType};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

/// xorshift64*: a fixed seed gives the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-scale, scale).
    fn f32(&mut self, scale: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }

    /// `len` values whose magnitude changes from block to block (as real weights' do), with
    /// some blocks all one value, some offset so Q4_1's minimum is far from 0.
    fn values(&mut self, len: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(len);
        for block in 0..len / 32 {
            let scale = [1e-3, 0.05, 1.0, 30.0][block % 4];
            let offset = if block % 3 == 0 { self.f32(2.0) } else { 0.0 };
            let constant = block % 7 == 5;
            let c = self.f32(scale);
            for _ in 0..32 {
                v.push(offset + if constant { c } else { self.f32(scale) });
            }
        }
        v
    }
}

fn quantize<T: GgmlType>(xs: &[f32]) -> Vec<T> {
    let mut blocks = vec![T::zeros(); xs.len() / T::BLCK_SIZE];
    T::from_float(xs, &mut blocks);
    blocks
}

#[test]
fn one_and_four_dot_products_equal_the_scalar_kernel() {
    let mut rng = Rng(0x5EED_0001);
    for k in [32, 64, 576, 1536] {
        for _ in 0..50 {
            let y: Vec<BlockQ8_1> = quantize(&rng.values(k));
            let rows: Vec<Vec<BlockQ4_1>> = (0..4).map(|_| quantize(&rng.values(k))).collect();
            let expected: Vec<f32> = rows
                .iter()
                .map(|x| BlockQ4_1::vec_dot_unopt(k, x, &y))
                .collect();
            for (x, e) in rows.iter().zip(&expected) {
                assert_eq!(BlockQ4_1::vec_dot(k, x, &y).to_bits(), e.to_bits(), "k={k}");
            }
            let four = BlockQ4_1::vec_dot_x4(k, [&rows[0], &rows[1], &rows[2], &rows[3]], &y);
            for (got, e) in four.iter().zip(&expected) {
                assert_eq!(
                    got.to_bits(),
                    e.to_bits(),
                    "k={k}: {four:?} vs {expected:?}"
                );
            }
        }
    }
}

#[test]
fn extreme_codes_do_not_saturate() {
    // Nibbles 15 (all but the block's minimum, 0) against activations all -127 or all 127:
    // the largest pair sums `maddubs` can meet.
    let k = 64;
    let block: Vec<f32> = (0..32).map(|i| if i == 0 { 0.0 } else { 15.0 }).collect();
    let x: Vec<BlockQ4_1> = quantize(&block.repeat(k / 32));
    for sign in [1.0f32, -1.0] {
        let y: Vec<BlockQ8_1> = quantize(&vec![sign * 3.0; k]);
        let e = BlockQ4_1::vec_dot_unopt(k, &x, &y);
        assert_eq!(BlockQ4_1::vec_dot(k, &x, &y).to_bits(), e.to_bits());
        let four = BlockQ4_1::vec_dot_x4(k, [&x, &x, &x, &x], &y);
        assert!(
            four.iter().all(|f| f.to_bits() == e.to_bits()),
            "{four:?} vs {e}"
        );
    }
}

/// The matmul the model runs: activations (m×k, quantized to Q8_1 inside) times Q4_1 weights
/// (n×k), with n not a multiple of 4 so the tiles' leftover rows are covered too.
#[test]
fn quantized_matmul_equals_the_scalar_kernel() {
    let mut rng = Rng(0x5EED_0002);
    let (m, n, k) = (5, 37, 256);
    let w = rng.values(n * k);
    let a = rng.values(m * k);
    let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&wt, GgmlDType::Q4_1).unwrap();
    let mm = QMatMul::from_qtensor(q).unwrap();
    let at = Tensor::from_vec(a.clone(), (m, k), &Device::Cpu).unwrap();
    let got: Vec<Vec<f32>> = mm.forward(&at).unwrap().to_vec2().unwrap();
    for (i, got_row) in got.iter().enumerate() {
        let y: Vec<BlockQ8_1> = quantize(&a[i * k..(i + 1) * k]);
        for (j, g) in got_row.iter().enumerate() {
            let x: Vec<BlockQ4_1> = quantize(&w[j * k..(j + 1) * k]);
            let e = BlockQ4_1::vec_dot_unopt(k, &x, &y);
            assert_eq!(g.to_bits(), e.to_bits(), "row {i}, column {j}: {g} vs {e}");
        }
    }
}
