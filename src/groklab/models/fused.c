/* Fused CPU kernels of groklab.models.fused, compiled on first use by the system C compiler
 * and loaded with ctypes. Plain C99, no headers but stdint.h: every array is contiguous, its
 * shape passed beside it. Each kernel is generated for float and double (suffix f32 / f64).
 *
 * wsum:  z[b, h, :] = sum_k p[h, k, b] * table[rows[b, k], h, :]      (attention's weighted sum
 *        over values gathered from a table; Nanda's one-layer model) and its gradient.
 * pair:  h[i, :] = table[a[i], :] + table[b[i], :]                    (a one-hot pair's first
 *        layer; Prieto's MLP) and its gradient, accumulated example by example like index_add_.
 * scores: s[b, h, i, j] = q[b, i, h, :] . k[b, j, h, :]               (attention's scores over a
 *        few key positions; Power's two-layer model) and its gradient.
 * values: z[b, i, h, :] = sum_j p[b, h, i, j] * v[b, j, h, :]         (attention's weighted sum of
 *        the values over a few key positions) and its gradient.
 */
#include <stdint.h>

#define LANES 8 /* partial sums of a dot product: vectorisable without reassociating floats */

#define KERNELS(T, SUFFIX)                                                                      \
static T dot_##SUFFIX(const T *restrict x, const T *restrict y, int64_t n) {                    \
    T lane[LANES] = {0};                                                                        \
    int64_t d = 0;                                                                              \
    for (; d + LANES <= n; d += LANES)                                                          \
        for (int l = 0; l < LANES; l++) lane[l] += x[d + l] * y[d + l];                         \
    for (int w = LANES / 2; w > 0; w /= 2) /* the lanes summed pairwise: a vector's halves */   \
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];                                     \
    T acc = lane[0];                                                                            \
    for (; d < n; d++) acc += x[d] * y[d];                                                      \
    return acc;                                                                                 \
}                                                                                               \
                                                                                                \
/* out = sum_j w[j * stride] * rows[j * step], j < n (n >= 1): the first term assigned */       \
static void wsum_rows_##SUFFIX(const T *restrict w, int64_t stride, const T *restrict rows,     \
                               int64_t step, int64_t n, T *restrict out, int64_t dh) {          \
    for (int64_t d = 0; d < dh; d++) out[d] = w[0] * rows[d];                                   \
    for (int64_t j = 1; j < n; j++) {                                                           \
        T wj = w[j * stride];                                                                   \
        const T *row = rows + j * step;                                                         \
        for (int64_t d = 0; d < dh; d++) out[d] += wj * row[d];                                 \
    }                                                                                           \
}                                                                                               \
                                                                                                \
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
                gp[(h * S + k) * B + b] = dot_##SUFFIX(g, row, dh);                             \
                if (want_table) {                                                               \
                    T pk = p[(h * S + k) * B + b], *gt = gtable + (r * H + h) * dh;             \
                    for (int64_t d = 0; d < dh; d++) gt[d] += pk * g[d];                        \
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
}                                                                                               \
                                                                                                \
/* q (B, Sq, H, dh), k (B, S, H, dh) -> s (B, H, Sq, S) */                                      \
void scores_forward_##SUFFIX(const T *restrict q, const T *restrict k, T *restrict s,           \
                             int64_t B, int64_t Sq, int64_t S, int64_t H, int64_t dh) {         \
    for (int64_t b = 0; b < B; b++)                                                             \
        for (int64_t h = 0; h < H; h++)                                                         \
            for (int64_t i = 0; i < Sq; i++)                                                    \
                for (int64_t j = 0; j < S; j++)                                                 \
                    s[((b * H + h) * Sq + i) * S + j] = dot_##SUFFIX(                           \
                        q + ((b * Sq + i) * H + h) * dh, k + ((b * S + j) * H + h) * dh, dh);   \
}                                                                                               \
                                                                                                \
/* p (B, H, Sq, S), v (B, S, H, dh) -> z (B, Sq, H, dh): z[i] = sum_j p[i, j] v[j] */           \
void values_forward_##SUFFIX(const T *restrict p, const T *restrict v, T *restrict z,           \
                             int64_t B, int64_t Sq, int64_t S, int64_t H, int64_t dh) {         \
    for (int64_t b = 0; b < B; b++)                                                             \
        for (int64_t h = 0; h < H; h++)                                                         \
            for (int64_t i = 0; i < Sq; i++)                                                    \
                wsum_rows_##SUFFIX(p + ((b * H + h) * Sq + i) * S, 1, v + (b * S * H + h) * dh, \
                                   H * dh, S, z + ((b * Sq + i) * H + h) * dh, dh);             \
}                                                                                               \
                                                                                                \
/* the transposed sum: w (B, H, Sq, S), x (B, Sq, H, dh) -> out (B, S, H, dh),                  \
 * out[j] = sum_i w[i, j] x[i] */                                                               \
static void values_t_##SUFFIX(const T *restrict w, const T *restrict x, T *restrict out,        \
                              int64_t B, int64_t Sq, int64_t S, int64_t H, int64_t dh) {        \
    for (int64_t b = 0; b < B; b++)                                                             \
        for (int64_t h = 0; h < H; h++)                                                         \
            for (int64_t j = 0; j < S; j++)                                                     \
                wsum_rows_##SUFFIX(w + (b * H + h) * Sq * S + j, S, x + (b * Sq * H + h) * dh,  \
                                   H * dh, Sq, out + ((b * S + j) * H + h) * dh, dh);           \
}                                                                                               \
                                                                                                \
/* s = q.k: gq[i] = sum_j g[i, j] k[j] (a values pass), gk[j] = sum_i g[i, j] q[i] */           \
void scores_backward_##SUFFIX(const T *restrict g, const T *restrict q, const T *restrict k,    \
                              T *restrict gq, T *restrict gk,                                   \
                              int64_t B, int64_t Sq, int64_t S, int64_t H, int64_t dh) {        \
    values_forward_##SUFFIX(g, k, gq, B, Sq, S, H, dh);                                         \
    values_t_##SUFFIX(g, q, gk, B, Sq, S, H, dh);                                               \
}                                                                                               \
                                                                                                \
/* z = p v: gp[i, j] = gz[i] . v[j] (a scores pass), gv[j] = sum_i p[i, j] gz[i] */             \
void values_backward_##SUFFIX(const T *restrict gz, const T *restrict p, const T *restrict v,   \
                              T *restrict gp, T *restrict gv,                                   \
                              int64_t B, int64_t Sq, int64_t S, int64_t H, int64_t dh) {        \
    scores_forward_##SUFFIX(gz, v, gp, B, Sq, S, H, dh);                                        \
    values_t_##SUFFIX(p, gz, gv, B, Sq, S, H, dh);                                              \
}

KERNELS(float, f32)
KERNELS(double, f64)
