// One row times a linear layer's weight, as decoding computes it: y = W x + b.
//
// W is the (out, in) matrix nn.Linear keeps (float32), or a half-size copy of it (float16
// or bfloat16); x and b are float32. Each output is the dot product of one row of W with
// x, summed in float32. A decoding step reads every weight once to do two flops per
// number, so its speed is how fast W streams from memory: this reads W front to back,
// one row after the other, in one pass (PyTorch's products for one row read 1.2-1.5x
// slower here, and convert float16 weights far slower than memory delivers them). The
// compiler vectorises the loops for the CPU it runs on (-march=native); CPU threads take
// contiguous blocks of rows (at::parallel_for).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace {

inline float to_float(float w) { return w; }
inline float to_float(at::Half w) { return static_cast<float>(w); }
inline float to_float(uint16_t bf16) {              // bfloat16: the top half of a float32
  uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float w;
  std::memcpy(&w, &bits, sizeof w);
  return w;
}

template <typename Weight>
void rows_times_x(const Weight* w, const float* x, const float* bias, float* y, int64_t in, int64_t first,
                  int64_t last) {
  for (int64_t r = first; r < last; r++) {
    const Weight* row = w + r * in;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < in; i++) sum += to_float(row[i]) * x[i];
    y[r] = bias ? sum + bias[r] : sum;
  }
}

#if defined(__F16C__)
// float16 rows: the compiler does not vectorise the conversion, the CPU does it 8 at a time (F16C);
// four sums in flight, so the additions' latency does not hold the loads back
inline __m256 halves(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <>
void rows_times_x<at::Half>(const at::Half* w, const float* x, const float* bias, float* y, int64_t in,
                            int64_t first, int64_t last) {
  for (int64_t r = first; r < last; r++) {
    const auto* row = reinterpret_cast<const uint16_t*>(w + r * in);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= in; i += 32) {
      s0 = _mm256_fmadd_ps(halves(row + i), _mm256_loadu_ps(x + i), s0);
      s1 = _mm256_fmadd_ps(halves(row + i + 8), _mm256_loadu_ps(x + i + 8), s1);
      s2 = _mm256_fmadd_ps(halves(row + i + 16), _mm256_loadu_ps(x + i + 16), s2);
      s3 = _mm256_fmadd_ps(halves(row + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= in; i += 8) s0 = _mm256_fmadd_ps(halves(row + i), _mm256_loadu_ps(x + i), s0);
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    float sum = 0.f;
    for (float lane : lanes) sum += lane;
    for (; i < in; i++) sum += static_cast<float>(w[r * in + i]) * x[i];
    y[r] = bias ? sum + bias[r] : sum;
  }
}
#endif

template <typename Weight>
void rowdot_into(const at::Tensor& weight, const at::Tensor& x, const float* bias, at::Tensor& y) {
  const int64_t out = weight.size(0), in = weight.size(1);
  const auto* w = reinterpret_cast<const Weight*>(weight.data_ptr());
  const float* xs = x.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(16, (64 << 10) / (in * static_cast<int64_t>(sizeof(Weight))));
  at::parallel_for(0, out, grain, [&](int64_t first, int64_t last) {   // >= 64 KB of weight per task
    rows_times_x(w, xs, bias, ys, in, first, last);
  });
}

at::Tensor rowdot(const at::Tensor& weight, const at::Tensor& x, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(weight.dim() == 2 && weight.is_contiguous() && weight.device().is_cpu(), "rowdot: a contiguous CPU matrix");
  TORCH_CHECK(x.numel() == weight.size(1) && x.is_contiguous() && x.scalar_type() == at::kFloat,
              "rowdot: x is one contiguous float32 row of the matrix's width");
  const float* b = nullptr;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == weight.size(0) && bias->is_contiguous() && bias->scalar_type() == at::kFloat,
                "rowdot: a float32 bias per output");
    b = bias->data_ptr<float>();
  }
  at::Tensor y = at::empty({1, weight.size(0)}, x.options());
  switch (weight.scalar_type()) {
    case at::kFloat: rowdot_into<float>(weight, x, b, y); break;
    case at::kHalf: rowdot_into<at::Half>(weight, x, b, y); break;
    case at::kBFloat16: rowdot_into<uint16_t>(weight, x, b, y); break;
    default: TORCH_CHECK(false, "rowdot: float32, float16 or bfloat16 weights");
  }
  return y;
}

}  // namespace

TORCH_LIBRARY(glassgpt, m) { m.def("rowdot(Tensor weight, Tensor x, Tensor? bias) -> Tensor"); }
TORCH_LIBRARY_IMPL(glassgpt, CPU, m) { m.impl("rowdot", &rowdot); }
