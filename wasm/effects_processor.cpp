// Three of the server's effects, computed in the browser from the colour cutout it stores.
//
// Input: the cutout as straight RGBA, 8 bits a channel (the PNG the server writes for
// `color`: the 8-bit foreground, black where the alpha is 0; the alpha is the job's mask).
// Output: the effect as straight RGBA, colour zeroed where the alpha is 0, as the server
// stores it. The steps are workers/effects/ (common.py, contrast.py, filters.py, stylise.py)
// operation for operation in the same float32 arithmetic, so the pixels are the server's:
//
//   luma      (cutout · Rec. 709 weights), summed left to right
//   CLAHE     8 tiles on the long side, clip limit 2.5, prior 0.02, whole-number histograms
//             and tone maps as contrast.py makes them, then torch's trilinear grid_sample
//   lerp, S-curve   one rounding per operation, as the server writes them
//   popart    guided filter (running sums in double, as torch's CPU cumsum), the subject's
//             quantiles on a 1024-bin histogram, five inks
//   dithering Pillow's Floyd–Steinberg, integer arithmetic, white above 128
//
// Plain C++17, no dependencies; build.sh compiles it with Emscripten. Compile with
// -ffp-contract=off: a fused multiply-add would round differently from the server.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

using Plane = std::vector<float>;

constexpr float kLuma[3] = {0.2126f, 0.7152f, 0.0722f};
constexpr float kPopPalette[5][3] = {
    {0.07f, 0.04f, 0.16f}, {0.16f, 0.26f, 0.86f}, {0.94f, 0.13f, 0.53f},
    {1.00f, 0.56f, 0.10f}, {1.00f, 0.92f, 0.24f},
};

// Python's round(): halves to even (the default rounding mode of nearbyint).
double py_round(double x) { return std::nearbyint(x); }

// torch's float → uint8 of an effect's colour: clamp to [0, 1], × 255, round half to even.
uint8_t to_uint8(float v) {
  float c = std::min(std::max(v, 0.0f), 1.0f);
  return static_cast<uint8_t>(std::nearbyint(c * 255.0f));
}

struct Inputs {
  int width, height;
  std::vector<uint8_t> alpha;  // the mask, 0..255
  Plane luma;
};

// common.py: EffectInputs.luma = luminance(cutout), cutout = 8-bit foreground, 0 where a = 0.
Inputs read_cutout(const uint8_t* rgba, int width, int height) {
  Inputs in{width, height, std::vector<uint8_t>(size_t(width) * height),
            Plane(size_t(width) * height)};
  for (size_t i = 0; i < in.luma.size(); ++i) {
    const uint8_t* p = rgba + 4 * i;
    in.alpha[i] = p[3];
    float sum = 0.0f;
    for (int c = 0; c < 3; ++c) {
      float channel = p[3] ? static_cast<float>(p[c]) / 255.0f : 0.0f;
      sum = sum + channel * kLuma[c];
    }
    in.luma[i] = sum;
  }
  return in;
}

// ---- CLAHE (contrast.py) ----

constexpr int kBins = 256;

// Pixel centres in grid_sample's coordinates, where −1 and 1 are the outer tile centres.
Plane tile_axis(int size, int tiles) {
  Plane axis(size, 0.0f);
  if (tiles == 1) return axis;
  const float scale = static_cast<float>(2.0 / (tiles - 1));
  for (int i = 0; i < size; ++i) {
    float centre = (static_cast<float>(i) + 0.5f) * static_cast<float>(tiles) /
                       static_cast<float>(size) -
                   0.5f;
    axis[i] = centre * scale - 1.0f;
  }
  return axis;
}

// torch's grid_sampler_compute_source_index: align_corners, border padding.
float source_index(float coord, int size) {
  float index = ((coord + 1.0f) / 2.0f) * static_cast<float>(size - 1);
  return std::min(static_cast<float>(size - 1), std::max(index, 0.0f));
}

Plane clahe(const Inputs& in, int tiles_long = 8, double clip_limit = 2.5, double prior = 0.02) {
  const int h = in.height, w = in.width;
  int ty, tx;
  if (h >= w) {
    ty = tiles_long;
    tx = std::max(1, static_cast<int>(py_round(static_cast<double>(tiles_long * w) / h)));
  } else {
    ty = std::max(1, static_cast<int>(py_round(static_cast<double>(tiles_long * h) / w)));
    tx = tiles_long;
  }
  const double per_tile = static_cast<double>(int64_t(h) * w) / (ty * tx);
  const int stride = std::max(1, static_cast<int>(std::pow(per_tile / 4000.0, 0.5)));

  // Histograms of the sampled pixels, each counted by its alpha level (whole numbers).
  std::vector<double> hist(size_t(ty) * tx * kBins, 0.0);
  for (int y = 0; y < h; y += stride) {
    const int row = int(int64_t(y) * ty / h);
    for (int x = 0; x < w; x += stride) {
      const int col = int(int64_t(x) * tx / w);
      float scaled = std::nearbyint(in.luma[size_t(y) * w + x] * 255.0f);
      int bin = std::min(std::max(static_cast<int>(scaled), 0), kBins - 1);
      hist[(size_t(row) * tx + col) * kBins + bin] += in.alpha[size_t(y) * w + x];
    }
  }

  // Tone maps, exactly as _tone_maps makes them (all whole numbers until the division).
  const double tile_pixels = per_tile / (double(stride) * stride);
  double prior_mass = py_round(prior * tile_pixels * 255 / kBins);
  if (prior > 0) prior_mass = std::max(1.0, prior_mass);
  std::vector<float> maps(hist.size());  // [tile row][tile col][bin]
  for (size_t t = 0; t < size_t(ty) * tx; ++t) {
    double* bins = &hist[t * kBins];
    double total = 0;
    for (int b = 0; b < kBins; ++b) total += (bins[b] += prior_mass);
    total = std::max(total, 1.0);
    const double limit = std::floor(clip_limit * total / kBins);
    double kept = 0;
    for (int b = 0; b < kBins; ++b) kept += (bins[b] = std::min(bins[b], limit));
    const double excess = total - kept;
    double cumsum = 0;
    for (int b = 0; b < kBins; ++b) {
      cumsum += bins[b];
      double below = 2 * cumsum - bins[b] + double(2 * b + 1) * excess / kBins;
      maps[t * kBins + b] = static_cast<float>(below / (2 * total));
    }
  }

  // Trilinear grid_sample over (grey level, tile row, tile column), as torch's CPU kernel
  // computes it: corner weights as products of three differences, summed in its order.
  const Plane xs = tile_axis(w, tx), ys = tile_axis(h, ty);
  auto at = [&](int64_t z, int64_t y, int64_t x) -> float {
    if (z < 0 || z >= kBins || y < 0 || y >= ty || x < 0 || x >= tx) return NAN;
    return maps[(size_t(y) * tx + x) * kBins + z];
  };
  Plane out(in.luma.size());
  for (int py = 0; py < h; ++py) {
    const float iy = source_index(ys[py], ty);
    for (int px = 0; px < w; ++px) {
      const float ix = source_index(xs[px], tx);
      const float iz = source_index(in.luma[size_t(py) * w + px] * 2.0f - 1.0f, kBins);
      const int64_t x0 = static_cast<int64_t>(std::floor(ix)), x1 = x0 + 1;
      const int64_t y0 = static_cast<int64_t>(std::floor(iy)), y1 = y0 + 1;
      const int64_t z0 = static_cast<int64_t>(std::floor(iz)), z1 = z0 + 1;
      const float fx0 = float(x0), fx1 = float(x1), fy0 = float(y0), fy1 = float(y1);
      const float fz0 = float(z0), fz1 = float(z1);
      const float weights[8] = {
          (fx1 - ix) * (fy1 - iy) * (fz1 - iz),  // tnw
          (ix - fx0) * (fy1 - iy) * (fz1 - iz),  // tne
          (fx1 - ix) * (iy - fy0) * (fz1 - iz),  // tsw
          (ix - fx0) * (iy - fy0) * (fz1 - iz),  // tse
          (fx1 - ix) * (fy1 - iy) * (iz - fz0),  // bnw
          (ix - fx0) * (fy1 - iy) * (iz - fz0),  // bne
          (fx1 - ix) * (iy - fy0) * (iz - fz0),  // bsw
          (ix - fx0) * (iy - fy0) * (iz - fz0),  // bse
      };
      const int64_t corners[8][3] = {{z0, y0, x0}, {z0, y0, x1}, {z0, y1, x0}, {z0, y1, x1},
                                     {z1, y0, x0}, {z1, y0, x1}, {z1, y1, x0}, {z1, y1, x1}};
      float sum = 0.0f;
      for (int k = 0; k < 8; ++k) {
        float v = at(corners[k][0], corners[k][1], corners[k][2]);
        if (!std::isnan(v)) sum += v * weights[k];  // out-of-range corners are skipped
      }
      out[size_t(py) * w + px] = sum;
    }
  }
  return out;
}

// common.py: luma + (clahe − luma) · 0.7, then s_curve: x + (x·x·(3 − 2x) − x) · s.
Plane local_contrast(const Inputs& in) {
  Plane equalised = clahe(in);
  for (size_t i = 0; i < equalised.size(); ++i)
    equalised[i] = in.luma[i] + (equalised[i] - in.luma[i]) * 0.7f;
  return equalised;
}

float s_curve(float x, float strength) {
  float smooth = (x * x) * (3.0f - 2.0f * x);
  return x + (smooth - x) * strength;
}

// ---- popart (filters.py, common.py, stylise.py) ----

// _box_mean_along: windows clipped to the line, divided by their true size; the running sum
// is torch's CPU cumsum of float32 (accumulated in double, stored as float).
void box_mean_along(float* line, int n, int stride, int radius, std::vector<float>& csum) {
  radius = std::min(radius, n - 1);
  csum.assign(size_t(n) + 1, 0.0f);  // csum[j + 1] = float(sum of the first j + 1)
  double acc = 0;
  for (int j = 0; j < n; ++j) {
    acc += line[size_t(j) * stride];
    csum[j + 1] = static_cast<float>(acc);
  }
  for (int i = 0; i < n; ++i) {
    const int hi = std::min(i + radius, n - 1) + 1, lo = std::max(i - radius, 0);
    const float total = csum[hi] - csum[lo];
    line[size_t(i) * stride] = total / static_cast<float>(hi - lo);
  }
}

void box_blur(Plane& plane, int width, int height, int radius) {
  if (radius < 1) return;
  std::vector<float> csum;
  for (int x = 0; x < width; ++x) box_mean_along(&plane[x], height, width, radius, csum);
  for (int y = 0; y < height; ++y) box_mean_along(&plane[size_t(y) * width], width, 1, radius, csum);
}

// filters.py cell_mean: each factor × factor cell's mean, summed row by row in the cell
// (zeros past the edge), divided by the pixels the cell really has.
Plane cell_mean(const Plane& x, int width, int height, int factor, int& out_w, int& out_h) {
  out_w = (width + factor - 1) / factor;
  out_h = (height + factor - 1) / factor;
  Plane out(size_t(out_w) * out_h);
  for (int cy = 0; cy < out_h; ++cy) {
    for (int cx = 0; cx < out_w; ++cx) {
      float total = 0.0f;
      bool first = true;
      for (int dy = 0; dy < factor; ++dy) {
        for (int dx = 0; dx < factor; ++dx) {
          const int y = cy * factor + dy, x_ = cx * factor + dx;
          const float v = (y < height && x_ < width) ? x[size_t(y) * width + x_] : 0.0f;
          total = first ? v : total + v;
          first = false;
        }
      }
      const int rows = std::min(factor, height - cy * factor), cols = std::min(factor, width - cx * factor);
      out[size_t(cy) * out_w + cx] = total / static_cast<float>(rows * cols);
    }
  }
  return out;
}

// filters.py _linear_taps: half-pixel centres, weights found in double, used as float.
struct Taps {
  std::vector<int> first, second;
  std::vector<float> w_first, w_second;
};

Taps linear_taps(int source, int size) {
  Taps taps;
  const double scale = double(source) / double(size);
  for (int i = 0; i < size; ++i) {
    const double position = std::max((double(i) + 0.5) * scale - 0.5, 0.0);
    const double first = std::floor(position), fraction = position - first;
    taps.first.push_back(int(first));
    taps.second.push_back(std::min(int(first) + 1, source - 1));
    taps.w_first.push_back(static_cast<float>(1.0 - fraction));
    taps.w_second.push_back(static_cast<float>(fraction));
  }
  return taps;
}

// filters.py bilinear_up: rows, then columns, one rounding per operation.
Plane bilinear_up(const Plane& x, int width, int height, int out_w, int out_h) {
  const Taps ty = linear_taps(height, out_h), tx = linear_taps(width, out_w);
  Plane rows(size_t(out_h) * width);
  for (int y = 0; y < out_h; ++y) {
    const float* top = &x[size_t(ty.first[y]) * width];
    const float* bottom = &x[size_t(ty.second[y]) * width];
    for (int i = 0; i < width; ++i)
      rows[size_t(y) * width + i] = top[i] * ty.w_first[y] + bottom[i] * ty.w_second[y];
  }
  Plane out(size_t(out_h) * out_w);
  for (int y = 0; y < out_h; ++y) {
    const float* row = &rows[size_t(y) * width];
    for (int i = 0; i < out_w; ++i)
      out[size_t(y) * out_w + i] = row[tx.first[i]] * tx.w_first[i] + row[tx.second[i]] * tx.w_second[i];
  }
  return out;
}

// filters.py guided_smooth: coefficients found on the image shrunk by `factor`, applied at
// full size.
Plane guided_smooth(const Plane& x, int width, int height, int radius, float eps, int factor) {
  int sw = width, sh = height;
  Plane mean = factor > 1 ? cell_mean(x, width, height, factor, sw, sh) : x;
  const int r = std::max(1, static_cast<int>(py_round(double(radius) / factor)));
  Plane mean_sq(mean.size());
  for (size_t i = 0; i < mean.size(); ++i) mean_sq[i] = mean[i] * mean[i];
  box_blur(mean, sw, sh, r);
  box_blur(mean_sq, sw, sh, r);
  Plane a(mean.size()), b(mean.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    float var = std::max(mean_sq[i] - mean[i] * mean[i], 0.0f);
    a[i] = var / (var + eps);
    b[i] = mean[i] - a[i] * mean[i];
  }
  box_blur(a, sw, sh, r);
  box_blur(b, sw, sh, r);
  if (factor > 1) {
    a = bilinear_up(a, sw, sh, width, height);
    b = bilinear_up(b, sw, sh, width, height);
  }
  Plane out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = b[i] + a[i] * x[i];
  return out;
}

// weighted_quantiles: band edges at the subject's quantiles of a 1024-bin histogram.
std::vector<float> pop_thresholds(const Plane& tone, const std::vector<uint8_t>& alpha) {
  constexpr int bins = 1024;
  constexpr float qs[4] = {0.2f, 0.4f, 0.6f, 0.8f};  // torch.linspace(0, 1, 6)[1:-1]
  std::vector<double> cdf(bins, 0.0);
  for (size_t i = 0; i < tone.size(); ++i) {
    int bin = static_cast<int>(std::nearbyint(tone[i] * float(bins - 1)));
    cdf[std::min(std::max(bin, 0), bins - 1)] += alpha[i];
  }
  for (int b = 1; b < bins; ++b) cdf[b] += cdf[b - 1];
  const double total = std::max(cdf[bins - 1], 1.0);
  std::vector<float> thresholds;
  for (float q : qs) {
    const double target = double(q) * total;
    int found = int(std::lower_bound(cdf.begin(), cdf.end(), target) - cdf.begin());
    thresholds.push_back((static_cast<float>(std::min(found, bins - 1)) + 0.5f) / bins);
  }
  return thresholds;
}

// ---- dithering (dither.py: Pillow's tobilevel) ----

void floyd_steinberg(const std::vector<uint8_t>& grey, int width, int height,
                     std::vector<uint8_t>& ink) {
  std::vector<int> errors(size_t(width) + 1, 0);
  for (int y = 0; y < height; ++y) {
    const uint8_t* in = &grey[size_t(y) * width];
    uint8_t* out = &ink[size_t(y) * width];
    int l = 0, l0 = 0, l1 = 0;
    int x = 0;
    for (; x < width; ++x) {
      l = std::min(std::max(in[x] + (l + errors[x + 1]) / 16, 0), 255);  // C division
      out[x] = l > 128 ? 255 : 0;
      const int e = l - out[x];
      errors[x] = 3 * e + l0;
      l0 = 5 * e + l1;
      l1 = e;
      l = 7 * e;
    }
    errors[x] = l0;
  }
}

void write_grey(const std::vector<uint8_t>& grey, const Inputs& in, uint8_t* rgba) {
  for (size_t i = 0; i < grey.size(); ++i) {
    const uint8_t v = in.alpha[i] ? grey[i] : 0;
    rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = v;
    rgba[4 * i + 3] = in.alpha[i];
  }
}

}  // namespace

extern "C" {

// Buffers for the wrapper: the cutout goes in one, the effect comes out in another.
__attribute__((used)) uint8_t* cutout_alloc(int bytes) {
  return static_cast<uint8_t*>(std::malloc(size_t(bytes)));
}
__attribute__((used)) void cutout_free(uint8_t* buffer) { std::free(buffer); }

// Each effect: `rgba` is the cutout (width × height × 4), `out` receives the effect.
__attribute__((used)) void cutout_enhancedblackwhite(const uint8_t* rgba, int width, int height,
                                                     uint8_t* out) {
  Inputs in = read_cutout(rgba, width, height);
  Plane tone = local_contrast(in);
  std::vector<uint8_t> grey(tone.size());
  for (size_t i = 0; i < tone.size(); ++i) grey[i] = to_uint8(s_curve(tone[i], 0.35f));
  write_grey(grey, in, out);
}

__attribute__((used)) void cutout_dithering(const uint8_t* rgba, int width, int height,
                                            uint8_t* out) {
  Inputs in = read_cutout(rgba, width, height);
  Plane tone = local_contrast(in);
  // dithering_grey: paper white outside the subject, then (tone · 255) rounded.
  std::vector<uint8_t> grey(tone.size()), ink(tone.size());
  for (size_t i = 0; i < tone.size(); ++i) {
    const float t = in.alpha[i] > 0 ? s_curve(tone[i], 0.2f) : 1.0f;
    grey[i] = static_cast<uint8_t>(std::min(std::max(std::nearbyint(t * 255.0f), 0.0f), 255.0f));
  }
  floyd_steinberg(grey, width, height, ink);
  write_grey(ink, in, out);
}

// Returns 0 (the wrapper treats anything else as a failure).
__attribute__((used)) int cutout_popart(const uint8_t* rgba, int width, int height,
                                        uint8_t* out) {
  const int long_edge = std::max(width, height);
  Inputs in = read_cutout(rgba, width, height);
  const int radius = std::max(1, static_cast<int>(py_round(long_edge / 128.0)));
  const int factor = std::max(1, long_edge / 512);
  Plane tone = guided_smooth(in.luma, width, height, radius, 0.006f, factor);
  const std::vector<float> thresholds = pop_thresholds(tone, in.alpha);
  uint8_t inks[5][3];
  for (int k = 0; k < 5; ++k)
    for (int c = 0; c < 3; ++c) inks[k][c] = to_uint8(kPopPalette[k][c]);
  for (size_t i = 0; i < tone.size(); ++i) {
    // searchsorted(thresholds, tone), left side: how many thresholds lie below the tone.
    int band = 0;
    while (band < 4 && thresholds[band] < tone[i]) ++band;
    for (int c = 0; c < 3; ++c) out[4 * i + c] = in.alpha[i] ? inks[band][c] : 0;
    out[4 * i + 3] = in.alpha[i];
  }
  return 0;
}

}  // extern "C"
