/* Fused CPU kernels of groklab.models.fused, compiled on first use by the system C compiler
 * and loaded with ctypes. Plain C99, no headers but stdint.h: every array is contiguous, its
 * shape passed beside it. Each kernel is generated for float and double (suffix f32 / f64).
 *
 * wsum:  z[b, h, :] = sum_k p[h, k, b] * table[rows[b, k], h, :]      (attention's weighted sum
 *        over values gathered from a table; Nanda's one-layer model) and its gradient.
 * pair:  h[i, :] = table[a[i], :] + table[b[i], :]                    (a one-hot pair's first
 *        layer; Prieto's MLP) and its gradient, accumulated example by example like index_add_.
 */
#include <stdint.h>

#define LANES 8 /* partial sums of a dot product: vectorisable without reassociating floats */

#define KERNELS(T, SUFFIX)                                                                      \
void wsum_forward_##SUFFIX(const T *restrict p, const T *restrict table,                        \
                           const int64_t *restrict rows, T *restrict z,                         \
                           int64_t H, int64_t S, int64_t B, int64_t dh) {                       \
    for (int64_t b = 0; b < B; b++)                                                             \
        for (int64_t h = 0; h < H; h++) {                                                       \
            T *out = z + (b * H + h) * dh;                                                      \
            const T *row = table + (rows[b * S] * H + h) * dh;                                  \
            T pk = p[(h * S) * B + b];                                                          \
            for (int64_t d = 0; d < dh; d++) out[d] = pk * row[d];                              \
            for (int64_t k = 1; k < S; k++) {                                                   \
                row = table + (rows[b * S + k] * H + h) * dh;                                   \
                pk = p[(h * S + k) * B + b];                                                    \
                for (int64_t d = 0; d < dh; d++) out[d] += pk * row[d];                         \
            }                                                                                   \
        }                                                                                       \
}                                                                                               \
                                                                                                \
void wsum_backward_##SUFFIX(const T *restrict gz, const T *restrict p, const T *restrict table, \
                            const int64_t *restrict rows, T *restrict gp, T *restrict gtable,   \
                            int64_t want_table,                                                 \
                            int64_t H, int64_t S, int64_t B, int64_t dh) {                      \
    for (int64_t b = 0; b < B; b++)                                                             \
        for (int64_t k = 0; k < S; k++) {                                                       \
            int64_t r = rows[b * S + k];                                                        \
            for (int64_t h = 0; h < H; h++) {                                                   \
                const T *g = gz + (b * H + h) * dh, *row = table + (r * H + h) * dh;            \
                T lane[LANES] = {0}, acc = 0;                                                   \
                int64_t d = 0;                                                                  \
                for (; d + LANES <= dh; d += LANES)                                             \
                    for (int l = 0; l < LANES; l++) lane[l] += g[d + l] * row[d + l];           \
                for (int l = 0; l < LANES; l++) acc += lane[l];                                 \
                for (; d < dh; d++) acc += g[d] * row[d];                                       \
                gp[(h * S + k) * B + b] = acc;                                                  \
                if (want_table) {                                                               \
                    T pk = p[(h * S + k) * B + b], *gt = gtable + (r * H + h) * dh;             \
                    for (d = 0; d < dh; d++) gt[d] += pk * g[d];                                \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
}                                                                                               \
                                                                                                \
void pair_forward_##SUFFIX(const T *restrict table, const int64_t *restrict a,                  \
                           const int64_t *restrict b, T *restrict h, int64_t n, int64_t w) {    \
    for (int64_t i = 0; i < n; i++) {                                                           \
        const T *ra = table + a[i] * w, *rb = table + b[i] * w;                                 \
        T *out = h + i * w;                                                                     \
        for (int64_t c = 0; c < w; c++) out[c] = ra[c] + rb[c];                                 \
    }                                                                                           \
}                                                                                               \
                                                                                                \
void pair_backward_##SUFFIX(const T *restrict g, const int64_t *restrict a,                     \
                            const int64_t *restrict b, T *restrict gtable,                      \
                            int64_t n, int64_t w) {                                             \
    for (int64_t i = 0; i < n; i++) {                                                           \
        T *gt = gtable + a[i] * w;                                                              \
        for (int64_t c = 0; c < w; c++) gt[c] += g[i * w + c];                                  \
    }                                                                                           \
    for (int64_t i = 0; i < n; i++) {                                                           \
        T *gt = gtable + b[i] * w;                                                              \
        for (int64_t c = 0; c < w; c++) gt[c] += g[i * w + c];                                  \
    }                                                                                           \
}

KERNELS(float, f32)
KERNELS(double, f64)
