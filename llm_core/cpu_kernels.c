/* Fused float32 CPU kernels for the GPT, training and inference (llm_core/cpu_kernels.py compiles and calls them).
 *
 * On a small model a CPU step is bound by kernel count: torch runs RMSNorm as about seven kernels forward and
 * backward, and QK-norm plus rotary embeddings as about twenty. Each function here is one pass over its rows,
 * split across `threads` OpenMP threads. The library links libgomp.so.1 by its soname, so inside a process that
 * has loaded torch it shares torch's OpenMP runtime and thread pool rather than starting a second one.
 *
 * Layouts (contiguous, row-major; qkv_rotary_backward reads dq, dk, dv by stride):
 *   rms_norm_*:       x, res, sum, y, g, gs, gx (rows, d); res, sum, gs optional (NULL); w, gw (d) or NULL;
 *                     rstd (rows)
 *   qkv_rotary_*:     qkv, out, dqkv (B, T, 3, H, D), the c_attn output; gain, dgain (2, D) for queries and
 *                     keys; cos, sin (T, D), the rotary tables of model.py, cos = [c, c] and sin = [-s, s];
 *                     rstd (B, T, 2, H)
 */
#include <math.h>
#include <string.h>

#define MAX_HEAD_DIM 1024

static float inv_rms(const float *x, long d, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (long j = 0; j < d; j++) ss += x[j] * x[j];
    return 1.0f / sqrtf(ss / (float)d + eps);
}

/* y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), per row. With `res`, the row normalised is x + res, written
 * to `sum` first: the residual stream's add fused into the norm that follows it. */
void rms_norm_forward(const float *x, const float *res, const float *w, float *sum, float *y, float *rstd, long rows,
                      long d, float eps, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < rows; i++) {
        const float *xi = x + i * d;
        float *yi = y + i * d;
        if (res) {
            const float *ri = res + i * d;
            float *si = sum + i * d;
#pragma omp simd
            for (long j = 0; j < d; j++) si[j] = xi[j] + ri[j];
            xi = si;
        }
        float r = inv_rms(xi, d, eps);
        rstd[i] = r;
        if (w) {
#pragma omp simd
            for (long j = 0; j < d; j++) yi[j] = xi[j] * r * w[j];
        } else {
#pragma omp simd
            for (long j = 0; j < d; j++) yi[j] = xi[j] * r;
        }
    }
}

/* one row of the backward: gx = rstd * (g*w - xhat * mean(g*w * xhat)) (+ gs) with xhat = x * rstd; gw += g * xhat */
static void rms_norm_backward_row(const float *gi, const float *gsi, const float *xi, const float *w, float r,
                                  float *gxi, float *gw, long d) {
    float dot = 0.0f;
    if (w) {
#pragma omp simd reduction(+ : dot)
        for (long j = 0; j < d; j++) dot += gi[j] * w[j] * xi[j];
    } else {
#pragma omp simd reduction(+ : dot)
        for (long j = 0; j < d; j++) dot += gi[j] * xi[j];
    }
    float c = dot * r * r / (float)d;
    if (w) {
#pragma omp simd
        for (long j = 0; j < d; j++) gxi[j] = r * (gi[j] * w[j] - xi[j] * c);
    } else {
#pragma omp simd
        for (long j = 0; j < d; j++) gxi[j] = r * (gi[j] - xi[j] * c);
    }
    if (gsi) {
#pragma omp simd
        for (long j = 0; j < d; j++) gxi[j] += gsi[j];
    }
    if (gw) {
#pragma omp simd
        for (long j = 0; j < d; j++) gw[j] += gi[j] * xi[j] * r;
    }
}

/* gx (rows, d); gw (d) or NULL. x is the row that was normalised (the sum, for a fused add); gs, the gradient that
 * reached that sum directly (the residual stream's), or NULL, is added to gx. */
void rms_norm_backward(const float *g, const float *gs, const float *x, const float *w, const float *rstd, float *gx,
                       float *gw, long rows, long d, int threads) {
    if (gw) {
        memset(gw, 0, (size_t)d * sizeof(float));
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : gw[:d])
        for (long i = 0; i < rows; i++)
            rms_norm_backward_row(g + i * d, gs ? gs + i * d : NULL, x + i * d, w, rstd[i], gx + i * d, gw, d);
    } else {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long i = 0; i < rows; i++)
            rms_norm_backward_row(g + i * d, gs ? gs + i * d : NULL, x + i * d, w, rstd[i], gx + i * d, NULL, d);
    }
}

/* out = [q, k, v] in qkv's own layout (B, T, 3, H, D): q, k = rotary(rms_norm(head) * gain), v copied.
 * rotary(z)[j] = z[j] * cos[t, j] + z[(j + D/2) % D] * sin[t, j] */
void qkv_rotary_forward(const float *qkv, const float *gain, const float *cos, const float *sin, float *out,
                        float *rstd, long B, long T, long H, long D, float eps, int threads) {
    const long C = H * D, half = D / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long bt = 0; bt < B * T; bt++) {
        float z[MAX_HEAD_DIM];
        const long t = bt % T;
        const float *row = qkv + bt * 3 * C, *ct = cos + t * D, *st = sin + t * D;
        float *orow = out + bt * 3 * C;
        for (long sh = 0; sh < 2 * H; sh++) {  /* the query heads, then the key heads */
            const float *x = row + sh * D, *g = gain + (sh / H) * D;
            float *o = orow + sh * D;
            float r = inv_rms(x, D, eps);
            rstd[bt * 2 * H + sh] = r;
#pragma omp simd
            for (long j = 0; j < D; j++) z[j] = x[j] * r * g[j];
#pragma omp simd
            for (long j = 0; j < half; j++) {
                o[j] = z[j] * ct[j] + z[j + half] * st[j];
                o[j + half] = z[j + half] * ct[j + half] + z[j] * st[j + half];
            }
        }
        memcpy(orow + 2 * C, row + 2 * C, (size_t)C * sizeof(float));
    }
}

/* The gradient of qkv_rotary_forward. dq, dk, dv are (B, H, T, D) with any strides but a unit one for D:
 * `strides` holds (b, h, t) of each, as autograd hands them over (attention's backward returns them transposed).
 * dqkv (B, T, 3, H, D); dgain (2, D). */
void qkv_rotary_backward(const float *dq, const float *dk, const float *dv, const long *strides, const float *qkv,
                         const float *gain, const float *cos, const float *sin, const float *rstd, float *dqkv,
                         float *dgain, long B, long T, long H, long D, int threads) {
    const long C = H * D, half = D / 2;
    const float *grads[3] = {dq, dk, dv};
    memset(dgain, 0, (size_t)(2 * D) * sizeof(float));
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : dgain[:2 * D])
    for (long bt = 0; bt < B * T; bt++) {
        float dz[MAX_HEAD_DIM];
        const long b = bt / T, t = bt % T;
        const float *row = qkv + bt * 3 * C, *ct = cos + t * D, *st = sin + t * D;
        float *drow = dqkv + bt * 3 * C;
        for (long sh = 0; sh < 3 * H; sh++) {  /* query heads, key heads, value heads */
            const long s = sh / H, h = sh % H;
            const long *stride = strides + 3 * s;
            const float *d = grads[s] + b * stride[0] + h * stride[1] + t * stride[2];
            float *dx = drow + sh * D;
            if (s == 2) {
                memcpy(dx, d, (size_t)D * sizeof(float));
                continue;
            }
            const float *x = row + sh * D, *g = gain + s * D;
            float *dg = dgain + s * D;
            float r = rstd[bt * 2 * H + sh], dot = 0.0f;
#pragma omp simd
            for (long j = 0; j < half; j++) {  /* the rotation's transpose: z[j] reaches o[j] and o[j +- D/2] */
                dz[j] = d[j] * ct[j] + d[j + half] * st[j + half];
                dz[j + half] = d[j + half] * ct[j + half] + d[j] * st[j];
            }
#pragma omp simd reduction(+ : dot)
            for (long j = 0; j < D; j++) {
                float xhat = x[j] * r;
                dg[j] += dz[j] * xhat;
                dz[j] *= g[j];
                dot += dz[j] * xhat;
            }
            float c = dot * r * r / (float)D;
#pragma omp simd
            for (long j = 0; j < D; j++) dx[j] = r * dz[j] - x[j] * c;
        }
    }
}

/* e^x for x in [-87, 88] to a few ulp, 0 below (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, e^r by a polynomial,
 * 2^n put into the exponent bits); written so that `omp simd` loops vectorize it, which libm's expf is not here */
static inline float exp_approx(float x) {
    const float xc = x < -87.0f ? -87.0f : x;
    const float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 */
    const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int i; } scale = {.i = ((int)n + 127) << 23};
    return x < -87.0f ? 0.0f : p * scale.f;
}

/* Phi(v), the standard normal CDF, from erfc(|v| / sqrt 2) by Abramowitz & Stegun 7.1.26 (absolute error
 * < 1.5e-7); and gauss = e^(-v^2 / 2) */
static inline float normal_cdf(float v, float *gauss) {
    const float a = fabsf(v) * 0.70710678f, t = 1.0f / (1.0f + 0.3275911f * a);
    const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f
                       + t * 1.061405429f))));
    *gauss = exp_approx(-a * a);
    const float half_erfc = 0.5f * poly * *gauss;
    return v >= 0.0f ? 1.0f - half_erfc : half_erfc;
}

/* y = gelu(x) = x * Phi(x), the exact (erf) GELU; with dy, also gelu'(x) = Phi(x) + x * phi(x) for the backward */
void gelu_forward(const float *x, float *y, float *dy, long n, int threads) {
    if (dy) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
        for (long i = 0; i < n; i++) {
            float gauss, cdf = normal_cdf(x[i], &gauss);
            y[i] = x[i] * cdf;
            dy[i] = cdf + x[i] * gauss * 0.39894228f; /* 1 / sqrt(2 pi) */
        }
    } else {
#pragma omp parallel for simd num_threads(threads) schedule(static)
        for (long i = 0; i < n; i++) {
            float gauss;
            y[i] = x[i] * normal_cdf(x[i], &gauss);
        }
    }
}

/* Cross-entropy of logit rows (rows, V), in place: a row with a target (0 <= target < V) gets
 * loss = logsumexp(row) - row[target] and becomes softmax(row) - onehot(target), the loss's gradient; a row
 * without one (target < 0) gets loss 0 and a zero row. One read for the max, one pass writing e^(z - max), one
 * scaling: torch's log_softmax, exp, gather, index and masked_fill take about three times the passes. */
void cross_entropy_rows(float *logits, const long *targets, float *loss, long rows, long V, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < rows; i++) {
        float *z = logits + i * V;
        const long t = targets[i];
        if (t < 0) {
            memset(z, 0, (size_t)V * sizeof(float));
            loss[i] = 0.0f;
            continue;
        }
        float m = z[0], s = 0.0f;
#pragma omp simd reduction(max : m)
        for (long j = 0; j < V; j++) m = z[j] > m ? z[j] : m;
        const float target_logit = z[t];
#pragma omp simd reduction(+ : s)
        for (long j = 0; j < V; j++) {
            z[j] = exp_approx(z[j] - m);
            s += z[j];
        }
        loss[i] = logf(s) + m - target_logit;
        const float inv = 1.0f / s;
#pragma omp simd
        for (long j = 0; j < V; j++) z[j] *= inv;
        z[t] -= 1.0f;
    }
}
