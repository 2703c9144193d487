// Single-query attention over an fp16 KV cache, for CPU decoding (AVX-512 + F16C).
//
// One decoding step reads every cached key and value once: on CPU that is bound by memory,
// and PyTorch's batched matmul of a single query against fp16 or bf16 data runs slower
// than fp32. This kernel reads the fp16 cache (half the bytes of fp32), widens to fp32 in
// registers and computes in fp32. Each (row, head) is computed on its own, in a fixed order:
// a row's result never depends on the other rows of its batch.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cmath>
#include <vector>

namespace {

// e^x for x <= 0 (softmax after subtracting the max): Cephes' polynomial, 2^n * p(r).
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1u); }

inline __m512 load_f16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

}  // namespace

// q [B, H, D] fp32; k_t [B, H, D, S] fp16 (keys transposed); v [B, H, S, D] fp16;
// mask [B, S] fp32 additive or empty; the first `length` slots are attended.
// Returns softmax(q k^T * scale + mask) v, [B, H, D] fp32.
torch::Tensor attend(torch::Tensor q, torch::Tensor k_t, torch::Tensor v, torch::Tensor mask,
                     int64_t length, double scale) {
  TORCH_CHECK(q.is_contiguous() && k_t.is_contiguous() && v.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(q.scalar_type() == at::kFloat && k_t.scalar_type() == at::kHalf &&
              v.scalar_type() == at::kHalf, "q fp32, k_t and v fp16");
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), S = k_t.size(3);
  TORCH_CHECK(k_t.size(2) == D && v.size(2) == S && v.size(3) == D && length >= 1 && length <= S,
              "shapes: q [B,H,D], k_t [B,H,D,S], v [B,H,S,D], 1 <= length <= S");
  TORCH_CHECK(mask.numel() == 0 || (mask.scalar_type() == at::kFloat && mask.is_contiguous() &&
              mask.size(0) == B && mask.size(1) == S), "mask [B, S] fp32 or empty");
  auto out = torch::empty({B, H, D}, q.options());
  const float* qp = q.data_ptr<float>();
  const auto* kp = reinterpret_cast<const uint16_t*>(k_t.data_ptr<at::Half>());
  const auto* vp = reinterpret_cast<const uint16_t*>(v.data_ptr<at::Half>());
  const float* mp = mask.numel() ? mask.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const int64_t T = length;
  const int64_t chunks = (T + 15) / 16;
  const float fscale = static_cast<float>(scale);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(chunks * 16);
    std::vector<float> acc(((D + 15) / 16) * 16);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H;
      const float* qq = qp + bh * D;
      const uint16_t* kk = kp + bh * D * S;
      const uint16_t* vv = vp + bh * S * D;
      // Scores: each head dimension's run of keys is contiguous; sums stay in L1.
      std::fill(s.begin(), s.end(), 0.f);
      const int64_t full = T / 16 * 16;
      const __mmask16 last = tail_mask(T - full);
      for (int64_t d = 0; d < D; ++d) {
        const __m512 qd = _mm512_set1_ps(qq[d]);
        const uint16_t* row = kk + d * S;
        float* sp = s.data();
        for (int64_t t = 0; t < full; t += 16) {
          const __m512 kv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + t)));
          _mm512_storeu_ps(sp + t, _mm512_fmadd_ps(qd, kv, _mm512_loadu_ps(sp + t)));
        }
        if (full < T) {
          _mm512_storeu_ps(sp + full, _mm512_fmadd_ps(qd, load_f16(row + full, last),
                                                      _mm512_loadu_ps(sp + full)));
        }
      }
      // Softmax (in place), padding lanes at -inf.
      __m512 vmax = _mm512_set1_ps(-INFINITY);
      for (int64_t c = 0; c < chunks; ++c) {
        const __mmask16 m = tail_mask(T - c * 16);
        __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s.data() + c * 16), _mm512_set1_ps(fscale));
        if (mp) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, mp + b * S + c * 16));
        x = _mm512_mask_blend_ps(m, _mm512_set1_ps(-INFINITY), x);
        _mm512_storeu_ps(s.data() + c * 16, x);
        vmax = _mm512_max_ps(vmax, x);
      }
      const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
      __m512 vsum = _mm512_setzero_ps();
      for (int64_t c = 0; c < chunks; ++c) {
        const __mmask16 m = tail_mask(T - c * 16);
        const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_loadu_ps(s.data() + c * 16), mx)));
        _mm512_storeu_ps(s.data() + c * 16, e);
        vsum = _mm512_add_ps(vsum, e);
      }
      const float inv = 1.f / _mm512_reduce_add_ps(vsum);
      // Output: sum over slots of p * v. Head size 64 (every MusicGen size): four
      // independent register accumulators; other sizes: 16-lane chunks through L1.
      float* o = op + bh * D;
      if (D == 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < T; ++t) {
          const __m512 p = _mm512_set1_ps(s[t]);
          const uint16_t* row = vv + t * 64;
          a0 = _mm512_fmadd_ps(p, load_f16(row, 0xFFFF), a0);
          a1 = _mm512_fmadd_ps(p, load_f16(row + 16, 0xFFFF), a1);
          a2 = _mm512_fmadd_ps(p, load_f16(row + 32, 0xFFFF), a2);
          a3 = _mm512_fmadd_ps(p, load_f16(row + 48, 0xFFFF), a3);
        }
        const __m512 vinv = _mm512_set1_ps(inv);
        _mm512_storeu_ps(o, _mm512_mul_ps(a0, vinv));
        _mm512_storeu_ps(o + 16, _mm512_mul_ps(a1, vinv));
        _mm512_storeu_ps(o + 32, _mm512_mul_ps(a2, vinv));
        _mm512_storeu_ps(o + 48, _mm512_mul_ps(a3, vinv));
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = 0; t < T; ++t) {
        const __m512 p = _mm512_set1_ps(s[t]);
        const uint16_t* row = vv + t * D;
        for (int64_t d = 0; d < D; d += 16) {
          const __mmask16 m = tail_mask(D - d);
          _mm512_storeu_ps(acc.data() + d, _mm512_fmadd_ps(p, load_f16(row + d, m), _mm512_loadu_ps(acc.data() + d)));
        }
      }
      for (int64_t d = 0; d < D; ++d) o[d] = acc[d] * inv;
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attend", &attend, "single-query attention over an fp16 KV cache");
}
