/* Fused float32 CPU kernels for the GPT, training and inference (llm_core/cpu_kernels.py compiles and calls them).
 *
 * On a small model a CPU step is bound by kernel count: torch runs RMSNorm as about seven kernels forward and
 * backward, and QK-norm plus rotary embeddings as about twenty. Each function here is one pass over its rows,
 * split across `threads` OpenMP threads. The library links libgomp.so.1 by its soname, so inside a process that
 * has loaded torch it shares torch's OpenMP runtime and thread pool rather than starting a second one.
 *
 * Layouts (contiguous, row-major; qkv_rotary_backward reads dq, dk, dv by stride):
 *   rms_norm_*:       x, y, gx (rows, d); w, gw (d) or NULL; rstd (rows)
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

/* y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), per row */
void rms_norm_forward(const float *x, const float *w, float *y, float *rstd, long rows, long d, float eps,
                      int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < rows; i++) {
        const float *xi = x + i * d;
        float *yi = y + i * d;
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

/* one row of the backward: gx = rstd * (g*w - xhat * mean(g*w * xhat)) with xhat = x * rstd; gw += g * xhat */
static void rms_norm_backward_row(const float *gi, const float *xi, const float *w, float r, float *gxi, float *gw,
                                  long d) {
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
    if (gw) {
#pragma omp simd
        for (long j = 0; j < d; j++) gw[j] += gi[j] * xi[j] * r;
    }
}

/* gx (rows, d); gw (d) or NULL */
void rms_norm_backward(const float *g, const float *x, const float *w, const float *rstd, float *gx, float *gw,
                       long rows, long d, int threads) {
    if (gw) {
        memset(gw, 0, (size_t)d * sizeof(float));
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : gw[:d])
        for (long i = 0; i < rows; i++) rms_norm_backward_row(g + i * d, x + i * d, w, rstd[i], gx + i * d, gw, d);
    } else {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long i = 0; i < rows; i++) rms_norm_backward_row(g + i * d, x + i * d, w, rstd[i], gx + i * d, NULL, d);
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
