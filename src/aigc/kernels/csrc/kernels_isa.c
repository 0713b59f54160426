/* Kernels for one instruction set. This file is compiled once per ISA with -DISA=<name> and that
 * ISA's compiler flags (see aigc/kernels/build.py); `#if defined(__AVX2__)` etc. pick the code. The
 * portable build uses plain C only, so it runs on any CPU (ARM included).
 *
 * Integer formats: a block of 32 weights is unpacked once to 32 small integers plus a scale (and,
 * for formats with a minimum, an additive term), then dotted with each activation row's int8 block.
 *  - "unsigned" blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K): codes u in 0..63,
 *    w = sc*u + m  ->  dot = sc*dx*sum(u*xq) + m*s_x   (s_x = dx*sum(xq), stored with the activations)
 *  - "signed" blocks (Q8_0, Q6_K): codes q in -128..127 with one scale per half (16 elements),
 *    w = s_half*q  ->  dot = dx*(s_lo*sum_lo(q*xq) + s_hi*sum_hi(q*xq))
 */
#include <math.h>
#include <string.h>

#include "aigc_kernels.h"
#include "f16.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define TABLE CAT(kernels_, ISA)
#define STR2(x) #x
#define STR(x) STR2(x)

#define INLINE static inline __attribute__((always_inline))

/* Call an always-inline kernel with its row count R (1..4) as a constant, so the compiler keeps
 * the per-row accumulators in registers; the last argument is `out`. */
#define BY_ROWS(fn, a, b, c, d, out)                  \
    switch (R) {                                      \
    case 1: fn(a, b, c, d, 1, out); return;           \
    case 2: fn(a, b, c, d, 2, out); return;           \
    case 3: fn(a, b, c, d, 3, out); return;           \
    default: fn(a, b, c, d, 4, out); return;          \
    }

/* ---- scalar helpers ---------------------------------------------------------------------------- */

INLINE float f16_to_f32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return f16_to_f32_sw(h);
#endif
}

INLINE uint16_t f32_to_f16(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    return f32_to_f16_sw(f);
#endif
}

INLINE float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* exp(x) to ~1 ulp for the range softmax and SiLU need; branch-free (fminf/fmaxf/rintf), so the
 * compiler vectorizes loops that call it */
INLINE float exp_fast(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    float fi = rintf(x * 1.44269504088896341f);
    float r = x - fi * 0.693359375f + fi * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)fi + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return y * scale;
}

/* Q4_K / Q5_K: 6-bit scale and minimum of sub-block j (0..7) */
INLINE void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* all 8 scales and minimums of a Q4_K / Q5_K super-block at once (the 12 packed bytes as 32-bit
 * words: 6-bit fields, the top two bits of the last four stored in the first eight bytes) */
INLINE void scales_mins_k4(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3], o[4];
    memcpy(u, q, 12);
    o[0] = u[0] & 0x3f3f3f3fu;                                              /* sc 0..3 */
    o[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);       /* sc 4..7 */
    o[2] = u[1] & 0x3f3f3f3fu;                                              /* mn 0..3 */
    o[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4); /* mn 4..7 */
    memcpy(sc, o, 8);
    memcpy(mn, o + 2, 8);
}

INLINE uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

INLINE uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- dequantization (embedding rows, tests, fallbacks): plain C in every ISA ------------------- */

static void dequant_row_scalar(int type, const uint8_t *w, int64_t K, float *out) {
    switch (type) {
    case T_F32: memcpy(out, w, (size_t)K * 4); return;
    case T_F16: for (int64_t i = 0; i < K; i++) out[i] = f16_to_f32(rd16(w + 2 * i)); return;
    case T_BF16: for (int64_t i = 0; i < K; i++) out[i] = bf16_to_f32(rd16(w + 2 * i)); return;
    default: break;
    }
    if (type == T_Q4_K || type == T_Q5_K || type == T_Q6_K) {
        for (int64_t sb = 0; sb < K / QK_K; sb++, out += QK_K) {
            if (type == T_Q6_K) {
                const uint8_t *b = w + sb * 210, *ql = b, *qh = b + 128;
                const int8_t *sc = (const int8_t *)(b + 192);
                float d = f16_to_f32(rd16(b + 208));
                for (int n = 0; n < 2; n++) {
                    for (int l = 0; l < 32; l++) {
                        int is = l / 16;
                        int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        out[128 * n + l] = d * sc[is + 0] * q1;
                        out[128 * n + l + 32] = d * sc[is + 2] * q2;
                        out[128 * n + l + 64] = d * sc[is + 4] * q3;
                        out[128 * n + l + 96] = d * sc[is + 6] * q4;
                    }
                    ql += 64;
                    qh += 32;
                    sc += 8;
                }
                continue;
            }
            int q5 = type == T_Q5_K;
            const uint8_t *b = w + sb * (q5 ? 176 : 144);
            float d = f16_to_f32(rd16(b)), dmin = f16_to_f32(rd16(b + 2));
            const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (q5 ? 48 : 16);
            for (int c = 0; c < 4; c++) {
                uint8_t s1, m1, s2, m2;
                scale_min_k4(2 * c, scales, &s1, &m1);
                scale_min_k4(2 * c + 1, scales, &s2, &m2);
                for (int l = 0; l < 32; l++) {
                    int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
                    if (q5) {
                        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                    out[64 * c + l] = d * s1 * lo - dmin * m1;
                    out[64 * c + 32 + l] = d * s2 * hi - dmin * m2;
                }
            }
        }
        return;
    }
    for (int64_t ib = 0; ib < K / QK; ib++, out += QK) {
        switch (type) {
        case T_Q8_0: {
            const uint8_t *b = w + ib * 34;
            float d = f16_to_f32(rd16(b));
            for (int i = 0; i < 32; i++) out[i] = d * (int8_t)b[2 + i];
            break;
        }
        case T_Q4_0: case T_Q4_1: {
            int has_m = type == T_Q4_1;
            const uint8_t *b = w + ib * (has_m ? 20 : 18), *qs = b + (has_m ? 4 : 2);
            float d = f16_to_f32(rd16(b)), m = has_m ? f16_to_f32(rd16(b + 2)) : -8.0f * d;
            for (int i = 0; i < 16; i++) {
                out[i] = d * (qs[i] & 0xF) + m;
                out[i + 16] = d * (qs[i] >> 4) + m;
            }
            break;
        }
        case T_Q5_0: case T_Q5_1: {
            int has_m = type == T_Q5_1;
            const uint8_t *b = w + ib * (has_m ? 24 : 22), *qs = b + (has_m ? 8 : 6);
            float d = f16_to_f32(rd16(b)), m = has_m ? f16_to_f32(rd16(b + 2)) : -16.0f * d;
            uint32_t qh = rd32(b + (has_m ? 4 : 2));
            for (int i = 0; i < 16; i++) {
                out[i] = d * ((qs[i] & 0xF) | (((qh >> i) & 1) << 4)) + m;
                out[i + 16] = d * ((qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4)) + m;
            }
            break;
        }
        default: memset(out, 0, QK * sizeof(float)); break;
        }
    }
}

/* ---- activations to int8 blocks ----------------------------------------------------------------- */

/* Blocks of 32 activations to integers in [-levels, levels] with one scale each; s = d * sum(q).
 * Writes q8 or q16 (the other is NULL): one loop for the int8 and the int16 activation formats. */
static void quantize_blocks(const float *x, int64_t K, int levels, int8_t *q8, int16_t *q16, float *d, float *s) {
    for (int64_t ib = 0; ib < K / QK; ib++) {
        const float *xb = x + ib * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float dd = amax / (float)levels, id = dd > 0.0f ? (float)levels / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < QK; i++) {
            int v = (int)nearbyintf(xb[i] * id);
            v = v > levels ? levels : (v < -levels ? -levels : v);
            if (q8) q8[ib * QK + i] = (int8_t)v;
            else q16[ib * QK + i] = (int16_t)v;
            sum += v;
        }
        d[ib] = dd;
        s[ib] = dd * (float)sum;
    }
}

static void quantize_act(const float *x, int64_t K, int8_t *q, float *d, float *s) {
    quantize_blocks(x, K, 127, q, NULL, d, s);
}

/* For the K-formats: int16 with one scale per super-block of 256 (so the weights' integer sub-block
 * scales can be applied in integer arithmetic), plus the integer sum of every block of 32. */
static void quantize_act16k(const float *x, int64_t K, int16_t *q, float *d, int32_t *bsum) {
    for (int64_t sb = 0; sb < K / QK_K; sb++) {
        const float *xs = x + sb * QK_K;
        float amax = 0.0f;
        for (int i = 0; i < QK_K; i++) {
            const float a = fabsf(xs[i]);
            amax = a > amax ? a : amax; /* not fmaxf: without -ffast-math that is a libm call */
        }
        const float id = amax > 0.0f ? 32767.0f / amax : 0.0f;
        d[sb] = amax / 32767.0f;
        for (int b = 0; b < QK_K / QK; b++) {
            int32_t sum = 0;
            for (int i = 0; i < QK; i++) {
                int v = (int)nearbyintf(xs[b * QK + i] * id);
                v = v > 32767 ? 32767 : (v < -32767 ? -32767 : v);
                q[sb * QK_K + b * QK + i] = (int16_t)v;
                sum += v;
            }
            bsum[sb * (QK_K / QK) + b] = sum;
        }
    }
}

/* ---- one block, unpacked ------------------------------------------------------------------------
 * Every integer format is reduced to blocks of 32 codes: `codes` (32 bytes, unsigned 0..63 or signed
 * int8), scales for the two halves and an additive term `m` (per 32, unsigned formats only). */
typedef struct {
    uint8_t codes[32];
    float s_lo, s_hi, m;
} block_u;

/* Scalar unpack of block `ib` (index of the 32-block inside the row) */
INLINE void unpack_scalar(int type, const uint8_t *w, int64_t ib, block_u *o) {
    switch (type) {
    case T_Q8_0: {
        const uint8_t *b = w + ib * 34;
        o->s_lo = o->s_hi = f16_to_f32(rd16(b));
        o->m = 0;
        memcpy(o->codes, b + 2, 32);
        return;
    }
    case T_Q4_0: case T_Q4_1: {
        int has_m = type == T_Q4_1;
        const uint8_t *b = w + ib * (has_m ? 20 : 18), *qs = b + (has_m ? 4 : 2);
        float d = f16_to_f32(rd16(b));
        o->s_lo = o->s_hi = d;
        o->m = has_m ? f16_to_f32(rd16(b + 2)) : -8.0f * d;
        for (int i = 0; i < 16; i++) {
            o->codes[i] = qs[i] & 0xF;
            o->codes[i + 16] = qs[i] >> 4;
        }
        return;
    }
    case T_Q5_0: case T_Q5_1: {
        int has_m = type == T_Q5_1;
        const uint8_t *b = w + ib * (has_m ? 24 : 22), *qs = b + (has_m ? 8 : 6);
        float d = f16_to_f32(rd16(b));
        uint32_t qh = rd32(b + (has_m ? 4 : 2));
        o->s_lo = o->s_hi = d;
        o->m = has_m ? f16_to_f32(rd16(b + 2)) : -16.0f * d;
        for (int i = 0; i < 16; i++) {
            o->codes[i] = (uint8_t)((qs[i] & 0xF) | (((qh >> i) & 1) << 4));
            o->codes[i + 16] = (uint8_t)((qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4));
        }
        return;
    }
    case T_Q4_K: case T_Q5_K: {
        int q5 = type == T_Q5_K;
        const uint8_t *b = w + (ib / 8) * (q5 ? 176 : 144);
        int j = (int)(ib % 8), c = j / 2, hi = j & 1;
        const uint8_t *qs = b + (q5 ? 48 : 16) + 32 * c, *qh = b + 16;
        uint8_t sc, mn;
        scale_min_k4(j, b + 4, &sc, &mn);
        o->s_lo = o->s_hi = f16_to_f32(rd16(b)) * sc;
        o->m = -f16_to_f32(rd16(b + 2)) * mn;
        for (int l = 0; l < 32; l++) {
            int v = hi ? qs[l] >> 4 : qs[l] & 0xF;
            if (q5) v |= ((qh[l] >> j) & 1) << 4;
            o->codes[l] = (uint8_t)v;
        }
        return;
    }
    case T_Q6_K: {
        const uint8_t *b = w + (ib / 8) * 210;
        int j = (int)(ib % 8), n = j / 4, g = j % 4;
        const uint8_t *ql = b + 64 * n, *qh = b + 128 + 32 * n;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * n;
        float d = f16_to_f32(rd16(b + 208));
        o->s_lo = d * sc[2 * g];
        o->s_hi = d * sc[2 * g + 1];
        o->m = 0;
        for (int l = 0; l < 32; l++) {
            int lo = (g & 1) ? ql[l + 32] : ql[l];
            lo = (g & 2) ? lo >> 4 : lo & 0xF;
            int h = (qh[l] >> (2 * g)) & 3;
            o->codes[l] = (uint8_t)(int8_t)((lo | (h << 4)) - 32);
        }
        return;
    }
    default: memset(o, 0, sizeof(*o)); return;
    }
}

INLINE int is_signed_type(int type) { return type == T_Q8_0 || type == T_Q6_K; }

/* ---- SIMD unpack: 32 codes into one 256-bit register ------------------------------------------ */
#if defined(__AVX2__)

INLINE __m256i nibbles_16(const uint8_t *qs) { /* 16 bytes -> lows in bytes 0..15, highs in 16..31 */
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

INLINE __m256i bits_to_0x10(uint32_t qh) { /* byte e = 0x10 if bit e of qh is set */
    __m256i v = _mm256_set1_epi32((int)qh);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    v = _mm256_shuffle_epi8(v, shuf);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* codes of block ib in a register; scales as in unpack_scalar */
INLINE __m256i unpack_simd(int type, const uint8_t *w, int64_t ib, float *s_lo, float *s_hi, float *m) {
    switch (type) {
    case T_Q8_0: {
        const uint8_t *b = w + ib * 34;
        *s_lo = *s_hi = f16_to_f32(rd16(b));
        *m = 0;
        return _mm256_loadu_si256((const __m256i *)(b + 2));
    }
    case T_Q4_0: {
        const uint8_t *b = w + ib * 18;
        float d = f16_to_f32(rd16(b));
        *s_lo = *s_hi = d;
        *m = -8.0f * d;
        return nibbles_16(b + 2);
    }
    case T_Q4_1: {
        const uint8_t *b = w + ib * 20;
        *s_lo = *s_hi = f16_to_f32(rd16(b));
        *m = f16_to_f32(rd16(b + 2));
        return nibbles_16(b + 4);
    }
    case T_Q5_0: {
        const uint8_t *b = w + ib * 22;
        float d = f16_to_f32(rd16(b));
        *s_lo = *s_hi = d;
        *m = -16.0f * d;
        return _mm256_or_si256(nibbles_16(b + 6), bits_to_0x10(rd32(b + 2)));
    }
    case T_Q5_1: {
        const uint8_t *b = w + ib * 24;
        *s_lo = *s_hi = f16_to_f32(rd16(b));
        *m = f16_to_f32(rd16(b + 2));
        return _mm256_or_si256(nibbles_16(b + 8), bits_to_0x10(rd32(b + 4)));
    }
    case T_Q4_K: case T_Q5_K: {
        int q5 = type == T_Q5_K;
        const uint8_t *b = w + (ib / 8) * (q5 ? 176 : 144);
        int j = (int)(ib % 8), c = j / 2;
        uint8_t sc, mn;
        scale_min_k4(j, b + 4, &sc, &mn);
        *s_lo = *s_hi = f16_to_f32(rd16(b)) * sc;
        *m = -f16_to_f32(rd16(b + 2)) * mn;
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + (q5 ? 48 : 16) + 32 * c));
        if (j & 1) q = _mm256_srli_epi16(q, 4);
        q = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
        if (q5) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(b + 16));
            h = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
            q = _mm256_or_si256(q, _mm256_slli_epi16(h, 4));
        }
        return q;
    }
    case T_Q6_K: {
        const uint8_t *b = w + (ib / 8) * 210;
        int j = (int)(ib % 8), n = j / 4, g = j % 4;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * n;
        float d = f16_to_f32(rd16(b + 208));
        *s_lo = d * sc[2 * g];
        *s_hi = d * sc[2 * g + 1];
        *m = 0;
        __m256i lo = _mm256_loadu_si256((const __m256i *)(b + 64 * n + ((g & 1) ? 32 : 0)));
        if (g & 2) lo = _mm256_srli_epi16(lo, 4);
        lo = _mm256_and_si256(lo, _mm256_set1_epi8(0x0F));
        __m256i h = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
        h = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * g)), _mm256_set1_epi8(3));
        return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(h, 4)), _mm256_set1_epi8(32));
    }
    default: return _mm256_setzero_si256();
    }
}

/* 8 int32 partial sums (each of 4 consecutive products) of u8 codes x s8 activations */
INLINE __m256i dot_u8s8(__m256i u, __m256i x) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
#endif
}

INLINE __m256i dot_s8s8(__m256i q, __m256i x) { /* sign trick: |q| * (x * sign(q)) */
    return dot_u8s8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
}

INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE void dot_rows_int(int type, const uint8_t *w, int64_t K, const act_q8 *x, int R, float *out) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float mt[4] = {0, 0, 0, 0};
    const int sgn = is_signed_type(type);
    const int64_t nb = K / QK;
    for (int64_t ib = 0; ib < nb; ib++) {
        float s_lo, s_hi, m;
        __m256i codes = unpack_simd(type, w, ib, &s_lo, &s_hi, &m);
        __m256 sc = _mm256_set_m128(_mm_set1_ps(s_hi), _mm_set1_ps(s_lo));
        for (int r = 0; r < R; r++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x[r].q + ib * QK));
            __m256i p = sgn ? dot_s8s8(codes, xv) : dot_u8s8(codes, xv);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sc, _mm256_set1_ps(x[r].d[ib])), acc[r]);
            mt[r] += m * x[r].s[ib];
        }
    }
    for (int r = 0; r < R; r++) out[r] = hsum256(acc[r]) + mt[r];
}

#else /* portable */

INLINE void dot_rows_int(int type, const uint8_t *w, int64_t K, const act_q8 *x, int R, float *out) {
    float acc[4] = {0, 0, 0, 0};
    const int sgn = is_signed_type(type);
    const int64_t nb = K / QK;
    block_u blk;
    for (int64_t ib = 0; ib < nb; ib++) {
        unpack_scalar(type, w, ib, &blk);
        for (int r = 0; r < R; r++) {
            const int8_t *xq = x[r].q + ib * QK;
            int lo = 0, hi = 0;
            if (sgn) {
                for (int i = 0; i < 16; i++) lo += (int8_t)blk.codes[i] * xq[i];
                for (int i = 16; i < 32; i++) hi += (int8_t)blk.codes[i] * xq[i];
            } else {
                for (int i = 0; i < 16; i++) lo += blk.codes[i] * xq[i];
                for (int i = 16; i < 32; i++) hi += blk.codes[i] * xq[i];
            }
            acc[r] += x[r].d[ib] * (blk.s_lo * (float)lo + blk.s_hi * (float)hi) + blk.m * x[r].s[ib];
        }
    }
    for (int r = 0; r < R; r++) out[r] = acc[r];
}

#endif

/* ---- float formats: weights converted to f32 on the fly, activations stay f32 ------------------ */

#if defined(__AVX512F__)
#define FW 16
typedef __m512 vf;
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define VSET1(f) _mm512_set1_ps(f)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
INLINE vf load_w(int type, const uint8_t *w, int64_t i) {
    if (type == T_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)(w + 2 * i));
    if (type == T_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#elif defined(__AVX2__)
#define FW 8
typedef __m256 vf;
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VHSUM(v) hsum256(v)
#define VSET1(f) _mm256_set1_ps(f)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
INLINE vf load_w(int type, const uint8_t *w, int64_t i) {
    if (type == T_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
    if (type == T_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

/* exp_fast on a vector (the same steps, so the same results lane by lane) */
#if defined(__AVX512F__)
INLINE vf vexp(vf x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    vf fi = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fi), _mm512_set1_epi32(127)), 23);
#define VMUL _mm512_mul_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VCAST _mm512_castsi512_ps
#elif defined(__AVX2__)
INLINE vf vexp(vf x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    vf fi = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fi), _mm256_set1_epi32(127)), 23);
#define VMUL _mm256_mul_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VCAST _mm256_castsi256_ps
#endif
#if defined(FW)
    vf r = VADD(VSUB(x, VMUL(fi, VSET1(0.693359375f))), VMUL(fi, VSET1(2.12194440e-4f)));
    vf p = VSET1(1.9875691500e-4f);
    p = VADD(VMUL(p, r), VSET1(1.3981999507e-3f));
    p = VADD(VMUL(p, r), VSET1(8.3334519073e-3f));
    p = VADD(VMUL(p, r), VSET1(4.1665795894e-2f));
    p = VADD(VMUL(p, r), VSET1(1.6666665459e-1f));
    p = VADD(VMUL(p, r), VSET1(5.0000001201e-1f));
    vf y = VADD(VADD(VMUL(VMUL(p, r), r), r), VSET1(1.0f));
    return VMUL(y, VCAST(bits));
}
#undef VMUL
#undef VADD
#undef VSUB
#undef VCAST
#endif

INLINE float load_w1(int type, const uint8_t *w, int64_t i) {
    if (type == T_F32) return ((const float *)w)[i];
    return type == T_F16 ? f16_to_f32(rd16(w + 2 * i)) : bf16_to_f32(rd16(w + 2 * i));
}

INLINE void dot_rows_float(int type, const uint8_t *w, int64_t K, const float *const *x, int R, float *out) {
    int64_t i = 0;
    float acc_s[4] = {0, 0, 0, 0};
#if defined(FW)
    vf acc[4] = {VZERO(), VZERO(), VZERO(), VZERO()};
    for (; i + FW <= K; i += FW) {
        vf wv = load_w(type, w, i);
        for (int r = 0; r < R; r++) acc[r] = VFMA(wv, VLOAD(x[r] + i), acc[r]);
    }
    for (int r = 0; r < R; r++) acc_s[r] = VHSUM(acc[r]);
#endif
    for (; i < K; i++) {
        float wv = load_w1(type, w, i);
        for (int r = 0; r < R; r++) acc_s[r] += wv * x[r][i];
    }
    for (int r = 0; r < R; r++) out[r] = acc_s[r];
}

/* Integer weights with float activations (exact up to float rounding; used for small M, where the
 * product is bound by reading the weights). xsum[r][ib] = sum of activation block ib, for the m term. */
INLINE void dot_rows_int_fx(int type, const uint8_t *w, int64_t K, const float *const *x,
                            const float *const *xsum, int R, float *out) {
    const int64_t nb = K / QK;
    const int sgn = is_signed_type(type);
    float mt[4] = {0, 0, 0, 0}, acc_s[4] = {0, 0, 0, 0};
#if defined(__AVX512F__)
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t ib = 0; ib < nb; ib++) {
        float s_lo, s_hi, m;
        __m256i codes = unpack_simd(type, w, ib, &s_lo, &s_hi, &m);
        __m128i c0 = _mm256_castsi256_si128(codes), c1 = _mm256_extracti128_si256(codes, 1);
        __m512 f0 = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(c0) : _mm512_cvtepu8_epi32(c0));
        __m512 f1 = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(c1) : _mm512_cvtepu8_epi32(c1));
        f0 = _mm512_mul_ps(f0, _mm512_set1_ps(s_lo));
        f1 = _mm512_mul_ps(f1, _mm512_set1_ps(s_hi));
        for (int r = 0; r < R; r++) {
            const float *xb = x[r] + ib * QK;
            acc[r] = _mm512_fmadd_ps(f0, _mm512_loadu_ps(xb), acc[r]);
            acc[r] = _mm512_fmadd_ps(f1, _mm512_loadu_ps(xb + 16), acc[r]);
            mt[r] += m * xsum[r][ib];
        }
    }
    for (int r = 0; r < R; r++) acc_s[r] = _mm512_reduce_add_ps(acc[r]);
#elif defined(__AVX2__)
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t ib = 0; ib < nb; ib++) {
        float s_lo, s_hi, m;
        __m256i codes = unpack_simd(type, w, ib, &s_lo, &s_hi, &m);
        __m128i c0 = _mm256_castsi256_si128(codes), c1 = _mm256_extracti128_si256(codes, 1);
        __m256 f[4];
        if (sgn) {
            f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c0));
            f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c0, 8)));
            f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c1));
            f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c1, 8)));
        } else {
            f[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c0));
            f[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c0, 8)));
            f[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c1));
            f[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c1, 8)));
        }
        __m256 slo = _mm256_set1_ps(s_lo), shi = _mm256_set1_ps(s_hi);
        f[0] = _mm256_mul_ps(f[0], slo);
        f[1] = _mm256_mul_ps(f[1], slo);
        f[2] = _mm256_mul_ps(f[2], shi);
        f[3] = _mm256_mul_ps(f[3], shi);
        for (int r = 0; r < R; r++) {
            const float *xb = x[r] + ib * QK;
            for (int g = 0; g < 4; g++) acc[r] = _mm256_fmadd_ps(f[g], _mm256_loadu_ps(xb + 8 * g), acc[r]);
            mt[r] += m * xsum[r][ib];
        }
    }
    for (int r = 0; r < R; r++) acc_s[r] = hsum256(acc[r]);
#else
    block_u blk;
    for (int64_t ib = 0; ib < nb; ib++) {
        unpack_scalar(type, w, ib, &blk);
        float wf[32];
        for (int i = 0; i < 32; i++)
            wf[i] = (sgn ? (float)(int8_t)blk.codes[i] : (float)blk.codes[i]) * (i < 16 ? blk.s_lo : blk.s_hi);
        for (int r = 0; r < R; r++) {
            const float *xb = x[r] + ib * QK;
            float a = 0.0f;
            for (int i = 0; i < 32; i++) a += wf[i] * xb[i];
            acc_s[r] += a;
            mt[r] += blk.m * xsum[r][ib];
        }
    }
#endif
    for (int r = 0; r < R; r++) out[r] = acc_s[r] + mt[r];
}

/* ---- integer weights x int16 activations -------------------------------------------------------
 * Activations quantized to int16 per block of 32 (error <= max|x|/65534 per element: below float16
 * rounding) meet weights widened to int16 in pairwise multiply-adds (madd_epi16): about half the
 * instructions of converting the weights to float, and no visible change in results. */
#if defined(__AVX2__)
#define HAS_Q16 1
INLINE void dot_rows_int_q16(int type, const uint8_t *w, int64_t K, const act_q16 *x, int R, float *out) {
    const int64_t nb = K / QK;
    const int sgn = is_signed_type(type), halves = type == T_Q6_K;
    float mt[4] = {0, 0, 0, 0};
#if defined(__AVX512F__) && defined(__AVX512BW__)
    /* two accumulators per row (even/odd blocks): one FMA chain per row would wait on its latency */
    __m512 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#define Q16_BLOCK(codes, s_lo, s_hi, m, ib, a)                                                              \
    do {                                                                                                \
        __m512i w16 = sgn ? _mm512_cvtepi8_epi16(codes) : _mm512_cvtepu8_epi16(codes);                 \
        __m512 scv_ = halves ? _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(s_lo), _mm512_set1_ps(s_hi)) \
                             : _mm512_set1_ps(s_lo);                                                     \
        for (int r = 0; r < R; r++) {                                                                   \
            __m512i p = _mm512_madd_epi16(w16, _mm512_loadu_si512((const void *)(x[r].q + (ib) * QK)));   \
            acc[r][a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(scv_, _mm512_set1_ps(x[r].d[ib])), \
                                               acc[r][a]);                                        \
            mt[r] += (m) * x[r].s[ib];                                                                  \
        }                                                                                               \
    } while (0)
#define Q16_FINISH() for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + mt[r]
#else
    __m256 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
#define Q16_BLOCK(codes, s_lo, s_hi, m, ib, a)                                                              \
    do {                                                                                                \
        __m128i h0_ = _mm256_castsi256_si128(codes), h1_ = _mm256_extracti128_si256(codes, 1);          \
        __m256i w0 = sgn ? _mm256_cvtepi8_epi16(h0_) : _mm256_cvtepu8_epi16(h0_);                       \
        __m256i w1 = sgn ? _mm256_cvtepi8_epi16(h1_) : _mm256_cvtepu8_epi16(h1_);                       \
        for (int r = 0; r < R; r++) {                                                                   \
            const int16_t *xq = x[r].q + (ib) * QK;                                                     \
            __m256i p0 = _mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)xq));                \
            __m256i p1 = _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(xq + 16)));         \
            float dx = x[r].d[ib];                                                                      \
            if (halves) {                                                                               \
                acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps((s_lo) * dx), acc[r][0]); \
                acc[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps((s_hi) * dx), acc[r][1]); \
            } else {                                                                                    \
                acc[r][a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(p0, p1)),          \
                                                   _mm256_set1_ps((s_lo) * dx), acc[r][a]);        \
            }                                                                                           \
            mt[r] += (m) * x[r].s[ib];                                                                  \
        }                                                                                               \
    } while (0)
#define Q16_FINISH() for (int r = 0; r < R; r++) out[r] = hsum256(_mm256_add_ps(acc[r][0], acc[r][1])) + mt[r]
#endif
    if (type == T_Q4_K || type == T_Q5_K) {
        /* per super-block: the 8 scales and minimums once, then 8 sub-blocks with known positions */
        const int q5 = type == T_Q5_K;
        const int64_t bb = q5 ? 176 : 144;
        for (int64_t sb = 0; sb < nb / 8; sb++) {
            const uint8_t *b = w + sb * bb;
            const float d = f16_to_f32(rd16(b)), dmin = f16_to_f32(rd16(b + 2));
            float scs[8], mns[8];
            for (int j = 0; j < 8; j++) {
                uint8_t sc, mn;
                scale_min_k4(j, b + 4, &sc, &mn);
                scs[j] = d * sc;
                mns[j] = -dmin * mn;
            }
            const uint8_t *qs = b + (q5 ? 48 : 16);
            const __m256i mask = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
            const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(q, mask), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                if (q5) {
                    __m256i h = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c));
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 1), one), 4));
                }
                const int64_t ib = sb * 8 + 2 * c;
                Q16_BLOCK(lo, scs[2 * c], scs[2 * c], mns[2 * c], ib, 0);
                Q16_BLOCK(hi, scs[2 * c + 1], scs[2 * c + 1], mns[2 * c + 1], ib + 1, 1);
            }
        }
    } else if (type == T_Q6_K) {
        for (int64_t sb = 0; sb < nb / 8; sb++) {
            const uint8_t *b = w + sb * 210;
            const float d = f16_to_f32(rd16(b + 208));
            const int8_t *sc = (const int8_t *)(b + 192);
            const __m256i mask = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
            for (int n = 0; n < 2; n++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * n));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * n + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
                __m256i g[4];
                g[0] = _mm256_or_si256(_mm256_and_si256(l0, mask), _mm256_slli_epi16(_mm256_and_si256(h, three), 4));
                g[1] = _mm256_or_si256(_mm256_and_si256(l1, mask),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4));
                g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mask),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4));
                g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mask),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4));
                const int64_t ib = sb * 8 + 4 * n;
                __m256i c0 = _mm256_sub_epi8(g[0], off), c1 = _mm256_sub_epi8(g[1], off);
                __m256i c2 = _mm256_sub_epi8(g[2], off), c3 = _mm256_sub_epi8(g[3], off);
                const int8_t *scn = sc + 8 * n;
                Q16_BLOCK(c0, d * scn[0], d * scn[1], 0.0f, ib, 0);
                Q16_BLOCK(c1, d * scn[2], d * scn[3], 0.0f, ib + 1, 1);
                Q16_BLOCK(c2, d * scn[4], d * scn[5], 0.0f, ib + 2, 0);
                Q16_BLOCK(c3, d * scn[6], d * scn[7], 0.0f, ib + 3, 1);
            }
        }
    } else {
        int64_t ib = 0;
        for (; ib + 1 < nb; ib += 2) {
            float s_lo, s_hi, m, t_lo, t_hi, tm;
            __m256i c0 = unpack_simd(type, w, ib, &s_lo, &s_hi, &m);
            __m256i c1 = unpack_simd(type, w, ib + 1, &t_lo, &t_hi, &tm);
            Q16_BLOCK(c0, s_lo, s_hi, m, ib, 0);
            Q16_BLOCK(c1, t_lo, t_hi, tm, ib + 1, 1);
        }
        if (ib < nb) {
            float s_lo, s_hi, m;
            __m256i c0 = unpack_simd(type, w, ib, &s_lo, &s_hi, &m);
            Q16_BLOCK(c0, s_lo, s_hi, m, ib, 0);
        }
    }
    Q16_FINISH();
#undef Q16_BLOCK
#undef Q16_FINISH
}

static void dot_rows_q16(int type, const uint8_t *w, int64_t K, const act_q16 *x, int R, float *out) {
    BY_ROWS(dot_rows_int_q16, type, w, K, x, out);
}
#else
#define HAS_Q16 0
#define dot_rows_q16 NULL
#endif

/* ---- K-formats x int16 activations with one scale per super-block ------------------------------
 * The sub-block scales of Q4_K/Q5_K (6-bit) and Q6_K (int8) are integers: weights widened to int16
 * are multiplied by them (|code * scale| <= 4096), so a whole super-block of products accumulates in
 * int32 lanes (at most 16 products of <= 4096 * 32767 per lane: below 2^31) and meets the float
 * scales once per 256 weights instead of once per 32. The minimum term of Q4_K/Q5_K uses the
 * activations' integer block sums. */
#if defined(__AVX2__)
#define HAS_K16 1
INLINE void dot_rows_int_k16(int type, const uint8_t *w, int64_t K, const act_q16k *x, int R, float *out) {
    const int64_t nsb = K / QK_K;
    float mt[4] = {0, 0, 0, 0};
#if defined(__AVX512F__) && defined(__AVX512BW__)
    __m512 facc[4];
    __m512i iacc[4][2]; /* two chains per row: one would wait on vpdpwssd's latency */
    for (int r = 0; r < 4; r++) facc[r] = _mm512_setzero_ps();
#if defined(__AVX512VNNI__)
#define DPWSSD(acc, a, b) _mm512_dpwssd_epi32(acc, a, b)
#else
#define DPWSSD(acc, a, b) _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
#endif
/* scale lanes: the super-block's integer scales as int16 lanes of `stab`, picked by vpermw */
#define K16_SCALES(ptr, sgn, n)                                                                          \
    __m512i stab = (sgn) ? _mm512_cvtepi8_epi16(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(ptr)))) \
                         : _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(ptr))))
#define K16_BLOCK(codes, sgn, jlo, jhi, ib, a)                                                                 \
    do {                                                                                                \
        __m512i w16 = (sgn) ? _mm512_cvtepi8_epi16(codes) : _mm512_cvtepu8_epi16(codes);                 \
        __m512i idx_ = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(jlo)),                 \
                                          _mm256_set1_epi16(jhi), 1);                                   \
        w16 = _mm512_mullo_epi16(w16, _mm512_permutexvar_epi16(idx_, stab));                            \
        for (int r = 0; r < R; r++)                                                                     \
            iacc[r][a] = DPWSSD(iacc[r][a], w16, _mm512_loadu_si512((const void *)(x[r].q + (ib) * QK)));      \
    } while (0)
/* the same for codes already widened to int16 (Q4_K: one widening gives both nibbles' blocks) */
#define K16_BLOCK_W16(w16_in, jlo, ib, a)                                                                   \
    do {                                                                                                \
        const __m512i w16 = _mm512_mullo_epi16(w16_in, _mm512_permutexvar_epi16(_mm512_set1_epi16(jlo), stab)); \
        for (int r = 0; r < R; r++)                                                                     \
            iacc[r][a] = DPWSSD(iacc[r][a], w16, _mm512_loadu_si512((const void *)(x[r].q + (ib) * QK)));      \
    } while (0)
#define K16_START() for (int r = 0; r < R; r++) iacc[r][0] = iacc[r][1] = _mm512_setzero_si512()
#define K16_END(sb, d)                                                                                  \
    for (int r = 0; r < R; r++)                                                                         \
    facc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(iacc[r][0], iacc[r][1])), _mm512_set1_ps((d) * x[r].d[sb]), facc[r])
#define K16_FINISH() for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(facc[r]) - mt[r]
#else
    __m256 facc[4];
    __m256i iacc[4][2];
    for (int r = 0; r < 4; r++) facc[r] = _mm256_setzero_ps();
#define K16_SCALES(ptr, sgn, n)                                                                          \
    int16_t stab[16];                                                                                   \
    for (int s_ = 0; s_ < (n); s_++) stab[s_] = (sgn) ? ((const int8_t *)(ptr))[s_] : ((const uint8_t *)(ptr))[s_]
#define K16_BLOCK(codes, sgn, jlo, jhi, ib, a)                                                                 \
    do {                                                                                                \
        __m128i h0_ = _mm256_castsi256_si128(codes), h1_ = _mm256_extracti128_si256(codes, 1);          \
        __m256i w0 = _mm256_mullo_epi16((sgn) ? _mm256_cvtepi8_epi16(h0_) : _mm256_cvtepu8_epi16(h0_),   \
                                        _mm256_set1_epi16(stab[jlo]));                                  \
        __m256i w1 = _mm256_mullo_epi16((sgn) ? _mm256_cvtepi8_epi16(h1_) : _mm256_cvtepu8_epi16(h1_),   \
                                        _mm256_set1_epi16(stab[jhi]));                                  \
        for (int r = 0; r < R; r++) {                                                                   \
            const int16_t *xq = x[r].q + (ib) * QK;                                                     \
            __m256i p = _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)xq)), \
                                         _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(xq + 16)))); \
            iacc[r][a] = _mm256_add_epi32(iacc[r][a], p);                                                     \
        }                                                                                               \
    } while (0)
#define K16_START() for (int r = 0; r < R; r++) iacc[r][0] = iacc[r][1] = _mm256_setzero_si256()
#define K16_END(sb, d)                                                                                  \
    for (int r = 0; r < R; r++)                                                                         \
    facc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(iacc[r][0], iacc[r][1])), _mm256_set1_ps((d) * x[r].d[sb]), facc[r])
#define K16_FINISH() for (int r = 0; r < R; r++) out[r] = hsum256(facc[r]) - mt[r]
#endif
    const __m256i mask = _mm256_set1_epi8(0x0F);
    if (type == T_Q4_K || type == T_Q5_K) {
        const int q5 = type == T_Q5_K;
        const int64_t bb = q5 ? 176 : 144;
        const __m256i one = _mm256_set1_epi8(1);
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *b = w + sb * bb;
            const float d = f16_to_f32(rd16(b)), dmin = f16_to_f32(rd16(b + 2));
            uint8_t sc[8], mn[8];
            scales_mins_k4(b + 4, sc, mn);
            K16_SCALES(sc, 0, 8);
            const uint8_t *qs = b + (q5 ? 48 : 16);
            const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
            K16_START();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
#if defined(__AVX512F__) && defined(__AVX512BW__)
                if (!q5) { /* widen the 32 bytes once: low nibbles and high nibbles are then 2 ops */
                    const __m512i wq = _mm512_cvtepu8_epi16(q);
                    K16_BLOCK_W16(_mm512_and_si512(wq, _mm512_set1_epi16(0x0F)), 2 * c, sb * 8 + 2 * c, 0);
                    K16_BLOCK_W16(_mm512_srli_epi16(wq, 4), 2 * c + 1, sb * 8 + 2 * c + 1, 1);
                    continue;
                }
#endif
                __m256i lo = _mm256_and_si256(q, mask), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                if (q5) {
                    __m256i h = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c));
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 1), one), 4));
                }
                K16_BLOCK(lo, 0, 2 * c, 2 * c, sb * 8 + 2 * c, 0);
                K16_BLOCK(hi, 0, 2 * c + 1, 2 * c + 1, sb * 8 + 2 * c + 1, 1);
            }
            K16_END(sb, d);
            for (int r = 0; r < R; r++) {
                const int32_t *bs = x[r].bsum + sb * 8;
                int32_t m = 0;
                for (int j = 0; j < 8; j++) m += (int32_t)mn[j] * bs[j];
                mt[r] += dmin * x[r].d[sb] * (float)m;
            }
        }
    } else { /* Q6_K */
        const __m256i three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
        for (int64_t sb = 0; sb < nsb; sb++) {
            const uint8_t *b = w + sb * 210;
            const float d = f16_to_f32(rd16(b + 208));
            K16_SCALES(b + 192, 1, 16);
            K16_START();
#pragma GCC unroll 2
            for (int n = 0; n < 2; n++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * n));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * n + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n));
                __m256i g0 = _mm256_or_si256(_mm256_and_si256(l0, mask), _mm256_slli_epi16(_mm256_and_si256(h, three), 4));
                __m256i g1 = _mm256_or_si256(_mm256_and_si256(l1, mask),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4));
                __m256i g2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mask),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4));
                __m256i g3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mask),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4));
                const int64_t ib = sb * 8 + 4 * n;
                K16_BLOCK(_mm256_sub_epi8(g0, off), 1, 8 * n + 0, 8 * n + 1, ib, 0);
                K16_BLOCK(_mm256_sub_epi8(g1, off), 1, 8 * n + 2, 8 * n + 3, ib + 1, 1);
                K16_BLOCK(_mm256_sub_epi8(g2, off), 1, 8 * n + 4, 8 * n + 5, ib + 2, 0);
                K16_BLOCK(_mm256_sub_epi8(g3, off), 1, 8 * n + 6, 8 * n + 7, ib + 3, 1);
            }
            K16_END(sb, d);
        }
    }
    K16_FINISH();
#undef K16_BLOCK
#undef K16_BLOCK_W16
#undef K16_SCALES
#undef K16_START
#undef K16_END
#undef K16_FINISH
#undef DPWSSD
}

static void dot_rows_k16(int type, const uint8_t *w, int64_t K, const act_q16k *x, int R, float *out) {
    BY_ROWS(dot_rows_int_k16, type, w, K, x, out);
}
#else
#define HAS_K16 0
#define dot_rows_k16 NULL
#endif

static void quantize_act16(const float *x, int64_t K, int levels, int16_t *q, float *d, float *s) {
    quantize_blocks(x, K, levels, NULL, q, d, s);
}

static void dot_rows_fx(int type, const uint8_t *w, int64_t K, const float *const *x, const float *const *xsum,
                        int R, float *out) {
    switch (R) {
    case 1: dot_rows_int_fx(type, w, K, x, xsum, 1, out); return;
    case 2: dot_rows_int_fx(type, w, K, x, xsum, 2, out); return;
    case 3: dot_rows_int_fx(type, w, K, x, xsum, 3, out); return;
    default: dot_rows_int_fx(type, w, K, x, xsum, 4, out); return;
    }
}

static void dot_rows(int type, const uint8_t *w, int64_t K, const void *x, int R, float *out) {
    if (type == T_F32 || type == T_F16 || type == T_BF16) {
        BY_ROWS(dot_rows_float, type, w, K, (const float *const *)x, out);
    }
    BY_ROWS(dot_rows_int, type, w, K, (const act_q8 *)x, out);
}

/* ---- dequantization, vectorized where the ISA allows (prefill panels, embedding rows) ---------- */

static void dequant_row(int type, const uint8_t *w, int64_t K, float *out) {
#if defined(FW)
    if (type == T_F16 || type == T_BF16) {
        int64_t i = 0;
        for (; i + FW <= K; i += FW) VSTORE(out + i, load_w(type, w, i));
        for (; i < K; i++) out[i] = load_w1(type, w, i);
        return;
    }
    if (type == T_F32 || (type != T_Q8_0 && type != T_Q4_0 && type != T_Q4_1 && type != T_Q5_0 &&
                          type != T_Q5_1 && type != T_Q4_K && type != T_Q5_K && type != T_Q6_K)) {
        dequant_row_scalar(type, w, K, out);
        return;
    }
    const int sgn = is_signed_type(type);
    for (int64_t ib = 0; ib < K / QK; ib++, out += QK) {
        float s_lo, s_hi, m;
        __m256i codes = unpack_simd(type, w, ib, &s_lo, &s_hi, &m);
        __m128i c0 = _mm256_castsi256_si128(codes), c1 = _mm256_extracti128_si256(codes, 1);
#if defined(__AVX512F__)
        __m512 f0 = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(c0) : _mm512_cvtepu8_epi32(c0));
        __m512 f1 = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(c1) : _mm512_cvtepu8_epi32(c1));
        /* multiply, then add (no fused multiply-add): the same rounding as the scalar code and gguf */
        _mm512_storeu_ps(out, _mm512_add_ps(_mm512_mul_ps(f0, _mm512_set1_ps(s_lo)), _mm512_set1_ps(m)));
        _mm512_storeu_ps(out + 16, _mm512_add_ps(_mm512_mul_ps(f1, _mm512_set1_ps(s_hi)), _mm512_set1_ps(m)));
#else
        __m128i parts[4] = {c0, _mm_srli_si128(c0, 8), c1, _mm_srli_si128(c1, 8)};
        for (int g = 0; g < 4; g++) {
            __m256 f = _mm256_cvtepi32_ps(sgn ? _mm256_cvtepi8_epi32(parts[g]) : _mm256_cvtepu8_epi32(parts[g]));
            _mm256_storeu_ps(out + 8 * g, _mm256_add_ps(_mm256_mul_ps(f, _mm256_set1_ps(g < 2 ? s_lo : s_hi)),
                                                        _mm256_set1_ps(m)));
        }
#endif
    }
#else
    dequant_row_scalar(type, w, K, out);
#endif
}

/* ---- many activation rows: a float weight panel in a register tile ------------------------------
 * When one weight row meets many activation rows (prefill, large batches), unpacking it per group of
 * four rows (dot_rows*) costs more than the multiply-adds. Instead GEMM_NC weight rows are
 * dequantized once into a float panel laid out [K][GEMM_NC] (gemm_pack), and every GEMM_MR
 * activation rows meet it in a register tile: broadcast x[m][k], multiply-add with the panel's
 * vectors. Exact up to float rounding, and bound by multiply-adds instead of by unpacking. */
#if defined(__AVX512F__)
#define GEMM_NC 32
#define GEMM_MR 8
#elif defined(__AVX2__)
#define GEMM_NC 16
#define GEMM_MR 6
#else
#define GEMM_NC 8
#define GEMM_MR 4
#endif

/* tmp: GEMM_NC dequantized rows [GEMM_NC][K] -> panel [K][GEMM_NC] */
static void gemm_pack(const float *tmp, int64_t K, float *panel) {
    for (int64_t k0 = 0; k0 < K; k0 += 64) {
        const int64_t k1 = k0 + 64 < K ? k0 + 64 : K;
        for (int j = 0; j < GEMM_NC; j++) {
            const float *src = tmp + j * K;
            for (int64_t k = k0; k < k1; k++) panel[k * GEMM_NC + j] = src[k];
        }
    }
}

/* c[i][0:GEMM_NC] = x[i] . panel for i < mr */
INLINE void gemm_tile(const float *panel, int64_t K, const float *x, int64_t ldx, int mr, float *c) {
#if defined(FW)
#define NV (GEMM_NC / FW)
    vf acc[GEMM_MR][NV];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = VZERO();
    for (int64_t k = 0; k < K; k++) {
        const float *p = panel + k * GEMM_NC;
        vf w[NV];
        for (int v = 0; v < NV; v++) w[v] = VLOAD(p + v * FW);
        for (int i = 0; i < mr; i++) {
            vf xb = VSET1(x[i * ldx + k]);
            for (int v = 0; v < NV; v++) acc[i][v] = VFMA(w[v], xb, acc[i][v]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < NV; v++) VSTORE(c + i * GEMM_NC + v * FW, acc[i][v]);
#undef NV
#else
    float acc[GEMM_MR][GEMM_NC];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < GEMM_NC; j++) acc[i][j] = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float *p = panel + k * GEMM_NC;
        for (int i = 0; i < mr; i++) {
            const float xv = x[i * ldx + k];
            for (int j = 0; j < GEMM_NC; j++) acc[i][j] += p[j] * xv;
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < GEMM_NC; j++) c[i * GEMM_NC + j] = acc[i][j];
#endif
}

/* c[m][0:GEMM_NC] = x[m] . panel for m < M (x rows are K floats apart) */
static void gemm_panel(const float *panel, int64_t K, const float *x, int64_t M, float *c) {
    int64_t m = 0;
    for (; m + GEMM_MR <= M; m += GEMM_MR) gemm_tile(panel, K, x + m * K, K, GEMM_MR, c + m * GEMM_NC);
    const float *xr = x + m * K;
    float *cr = c + m * GEMM_NC;
    switch (M - m) { /* constant row counts: the compiler keeps the tile in registers */
    case 0: return;
    case 1: gemm_tile(panel, K, xr, K, 1, cr); return;
    case 2: gemm_tile(panel, K, xr, K, 2, cr); return;
    case 3: gemm_tile(panel, K, xr, K, 3, cr); return;
#if GEMM_MR > 4
    case 4: gemm_tile(panel, K, xr, K, 4, cr); return;
    case 5: gemm_tile(panel, K, xr, K, 5, cr); return;
#endif
#if GEMM_MR > 6
    case 6: gemm_tile(panel, K, xr, K, 6, cr); return;
    case 7: gemm_tile(panel, K, xr, K, 7, cr); return;
#endif
    default: return;
    }
}

/* ---- many rows, integer weights, VNNI: int16 panels ----------------------------------------------
 * Where the CPU has AVX-512 VNNI, `vpdpwssd` does 32 int16 multiply-adds per instruction, twice a
 * float FMA's 16. Integer-format panels are therefore requantized from their dequantized floats to
 * 14-bit integers with one scale per column and block of 32 (far finer than the 4-8 bit formats they
 * come from), and activations to 14-bit blocks of 32: 32 products fit an int32 lane. Per block the
 * int32 sums meet both scales in one multiply-add; panel layout [block][k pair][column][2]. */
#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define HAS_GEMM16 1
#define GEMM16_MR 6
#define GEMM16_LEVELS 8191 /* weights and activations: |q| <= 8191, so 32 * 8191^2 < 2^31 */

/* rows: GEMM_NC dequantized rows [GEMM_NC][K]; K % 32 == 0 */
static void gemm_pack16(const float *rows, int64_t K, int16_t *panel, float *scales) {
    int32_t pairs[GEMM_NC][QK / 2]; /* one block: per column, its 16 (even, odd) int16 pairs */
    for (int64_t b = 0; b < K / QK; b++) {
        for (int j = 0; j < GEMM_NC; j++) {
            const float *src = rows + j * K + b * QK;
            const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
            const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            const float id = amax > 0.0f ? (float)GEMM16_LEVELS / amax : 0.0f;
            scales[b * GEMM_NC + j] = amax / (float)GEMM16_LEVELS;
            const __m512 idv = _mm512_set1_ps(id);
            const __m256i q0 = _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v0, idv)));
            const __m256i q1 = _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v1, idv)));
            _mm256_storeu_si256((__m256i *)&pairs[j][0], q0);
            _mm256_storeu_si256((__m256i *)&pairs[j][8], q1);
        }
        int32_t *pb = (int32_t *)(panel + b * QK * GEMM_NC);
        for (int kp = 0; kp < QK / 2; kp++)
            for (int j = 0; j < GEMM_NC; j++) pb[kp * GEMM_NC + j] = pairs[j][kp];
    }
}

INLINE void gemm16_tile(const int16_t *panel, const float *scales, int64_t K, const act_q16 *x, int mr, float *c) {
    __m512 facc[GEMM16_MR][2];
    for (int i = 0; i < mr; i++) facc[i][0] = facc[i][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < K / QK; b++) {
        __m512i iacc[GEMM16_MR][2];
        for (int i = 0; i < mr; i++) iacc[i][0] = iacc[i][1] = _mm512_setzero_si512();
        const int16_t *pb = panel + b * QK * GEMM_NC;
        for (int kp = 0; kp < QK / 2; kp++) {
            const __m512i w0 = _mm512_loadu_si512((const void *)(pb + kp * GEMM_NC * 2));
            const __m512i w1 = _mm512_loadu_si512((const void *)(pb + kp * GEMM_NC * 2 + 32));
            for (int i = 0; i < mr; i++) {
                int32_t pair;
                memcpy(&pair, x[i].q + b * QK + 2 * kp, 4);
                const __m512i xb = _mm512_set1_epi32(pair);
                iacc[i][0] = _mm512_dpwssd_epi32(iacc[i][0], w0, xb);
                iacc[i][1] = _mm512_dpwssd_epi32(iacc[i][1], w1, xb);
            }
        }
        const __m512 s0 = _mm512_loadu_ps(scales + b * GEMM_NC), s1 = _mm512_loadu_ps(scales + b * GEMM_NC + 16);
        for (int i = 0; i < mr; i++) {
            const __m512 dx = _mm512_set1_ps(x[i].d[b]);
            facc[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i][0]), _mm512_mul_ps(s0, dx), facc[i][0]);
            facc[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i][1]), _mm512_mul_ps(s1, dx), facc[i][1]);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_storeu_ps(c + i * GEMM_NC, facc[i][0]);
        _mm512_storeu_ps(c + i * GEMM_NC + 16, facc[i][1]);
    }
}

/* c[m][0:GEMM_NC] = x[m] . panel for m < M */
static void gemm_panel16(const int16_t *panel, const float *scales, int64_t K, const act_q16 *x, int64_t M, float *c) {
    int64_t m = 0;
    for (; m + GEMM16_MR <= M; m += GEMM16_MR) gemm16_tile(panel, scales, K, x + m, GEMM16_MR, c + m * GEMM_NC);
    float *cr = c + m * GEMM_NC;
    switch (M - m) {
    case 1: gemm16_tile(panel, scales, K, x + m, 1, cr); return;
    case 2: gemm16_tile(panel, scales, K, x + m, 2, cr); return;
    case 3: gemm16_tile(panel, scales, K, x + m, 3, cr); return;
    case 4: gemm16_tile(panel, scales, K, x + m, 4, cr); return;
    case 5: gemm16_tile(panel, scales, K, x + m, 5, cr); return;
    default: return;
    }
}
#else
#define HAS_GEMM16 0
#define GEMM16_LEVELS 0
#define gemm_pack16 NULL
#define gemm_panel16 NULL
#endif

/* ---- the other decode-step ops ------------------------------------------------------------------ */

static void rmsnorm(const float *x, const float *w, int64_t n, float eps, float *out) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

static void silu_mul(const float *g, const float *u, int64_t n, float *out) {
    int64_t i = 0;
#if defined(FW)
    for (; i + FW <= n; i += FW) {
        vf gv = VLOAD(g + i);
        vf e = vexp(VFMA(gv, VSET1(-1.0f), VZERO())); /* exp(-g) */
#if defined(__AVX512F__)
        VSTORE(out + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(VSET1(1.0f), e)), VLOAD(u + i)));
#else
        VSTORE(out + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(VSET1(1.0f), e)), VLOAD(u + i)));
#endif
    }
#endif
    for (; i < n; i++) out[i] = g[i] / (1.0f + exp_fast(-g[i])) * u[i];
}

/* gelu_tanh(g) * u, with gelu_tanh(x) = x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3)) */
static void gelu_mul(const float *g, const float *u, int64_t n, float *out) {
    const float k = 1.5957691216057308f; /* 2 * sqrt(2 / pi) */
    int64_t i = 0;
#if defined(FW)
    for (; i + FW <= n; i += FW) {
        vf gv = VLOAD(g + i);
        vf inner = VFMA(VFMA(gv, gv, VZERO()), VSET1(0.044715f * k), VSET1(k)); /* k + 0.044715 k g^2 */
#if defined(__AVX512F__)
        vf e = vexp(_mm512_mul_ps(_mm512_mul_ps(gv, inner), VSET1(-1.0f)));
        VSTORE(out + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(VSET1(1.0f), e)), VLOAD(u + i)));
#else
        vf e = vexp(_mm256_mul_ps(_mm256_mul_ps(gv, inner), VSET1(-1.0f)));
        VSTORE(out + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(VSET1(1.0f), e)), VLOAD(u + i)));
#endif
    }
#endif
    for (; i < n; i++) {
        float x = g[i];
        out[i] = x / (1.0f + exp_fast(-x * (k + 0.044715f * k * x * x))) * u[i];
    }
}

static void store_kv(const float *src, void *dst, int kv_f16, int n) {
    if (!kv_f16) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    uint16_t *d = (uint16_t *)dst;
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) d[i] = f32_to_f16(src[i]);
}

/* dot of q (f32, hd) with one cached key row (f16 or f32) */
INLINE float dot_kv(const float *q, const void *k, int kv_f16, int hd) {
    int i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= hd; i += 16) {
        __m512 kv = kv_f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)k + i)))
                           : _mm512_loadu_ps((const float *)k + i);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), kv, acc);
    }
    s = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__)
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= hd; i += 8) {
        __m256 kv = kv_f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)k + i)))
                           : _mm256_loadu_ps((const float *)k + i);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv, acc);
    }
    s = hsum256(acc);
#endif
    for (; i < hd; i++) s += q[i] * (kv_f16 ? f16_to_f32(((const uint16_t *)k)[i]) : ((const float *)k)[i]);
    return s;
}

/* softmax of scores[0:len] in place (unnormalized exp); returns the sum */
INLINE float softmax_exp(float *scores, int64_t len) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < len; j++) mx = scores[j] > mx ? scores[j] : mx;
    int64_t j = 0;
    float sum = 0.0f;
#if defined(FW)
    vf vs = VZERO();
    for (; j + FW <= len; j += FW) {
        vf e = vexp(VFMA(VLOAD(scores + j), VSET1(1.0f), VSET1(-mx)));
        VSTORE(scores + j, e);
        vs = VFMA(e, VSET1(1.0f), vs);
    }
    sum = VHSUM(vs);
#endif
    for (; j < len; j++) {
        float e = exp_fast(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    return sum;
}

/* NQ query heads (consecutive, hd apart) over `len` cached positions of the kv head they share:
 * out[h] = softmax(q[h].K^T * scale) V. Each key and value row is read (and widened from f16) once
 * for all NQ heads; the value sums stay in registers, one vector of head dims at a time. */
INLINE void attention_nq(const float *q, int NQ, const void *k, const void *v, int kv_f16, int64_t pos_stride,
                         int64_t len, int hd, float scale, float softcap, float *scores, float *out) {
    const size_t es = kv_f16 ? 2 : 4;
    for (int64_t j = 0; j < len; j++) {
        const void *kr = (const uint8_t *)k + (size_t)j * pos_stride * es;
        for (int h = 0; h < NQ; h++) scores[h * len + j] = dot_kv(q + h * hd, kr, kv_f16, hd) * scale;
    }
    if (softcap > 0.0f)
        for (int64_t j = 0; j < NQ * len; j++) scores[j] = softcap * tanhf(scores[j] / softcap);
    float inv[8];
    for (int h = 0; h < NQ; h++) inv[h] = 1.0f / softmax_exp(scores + h * len, len);
    int i = 0;
#if defined(FW)
    for (; i + FW <= hd; i += FW) {
        vf acc[8];
        for (int h = 0; h < NQ; h++) acc[h] = VZERO();
        for (int64_t j = 0; j < len; j++) {
            const uint8_t *vr = (const uint8_t *)v + ((size_t)j * pos_stride + i) * es;
#if defined(__AVX512F__)
            vf vv = kv_f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)vr)) : _mm512_loadu_ps((const float *)vr);
#else
            vf vv = kv_f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)vr)) : _mm256_loadu_ps((const float *)vr);
#endif
            for (int h = 0; h < NQ; h++) acc[h] = VFMA(VSET1(scores[h * len + j]), vv, acc[h]);
        }
        for (int h = 0; h < NQ; h++) {
#if defined(__AVX512F__)
            VSTORE(out + h * hd + i, _mm512_mul_ps(acc[h], VSET1(inv[h])));
#else
            VSTORE(out + h * hd + i, _mm256_mul_ps(acc[h], VSET1(inv[h])));
#endif
        }
    }
#endif
    for (; i < hd; i++) {
        for (int h = 0; h < NQ; h++) {
            float a = 0.0f;
            for (int64_t j = 0; j < len; j++) {
                const uint8_t *vr = (const uint8_t *)v + ((size_t)j * pos_stride + i) * es;
                a += scores[h * len + j] * (kv_f16 ? f16_to_f32(rd16(vr)) : *(const float *)vr);
            }
            out[h * hd + i] = a * inv[h];
        }
    }
}

/* Greedy sampling's reductions in one pass: the index of the largest of x[0:n] and log(sum(exp(x))). */
static int64_t argmax_lse(const float *x, int64_t n, float *lse) {
    float mx = -INFINITY;
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
    mx = _mm512_reduce_max_ps(vm);
#elif defined(__AVX2__)
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (int l = 0; l < 8; l++) mx = lanes[l] > mx ? lanes[l] : mx;
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    int64_t best = 0; /* the first index holding the maximum, as torch.argmax */
    while (best < n - 1 && x[best] != mx) best++;
    i = 0;
    float sum = 0.0f;
#if defined(FW)
    vf vs = VZERO();
    for (; i + FW <= n; i += FW) vs = VFMA(vexp(VFMA(VLOAD(x + i), VSET1(1.0f), VSET1(-mx))), VSET1(1.0f), vs);
    sum = VHSUM(vs);
#endif
    for (; i < n; i++) sum += exp_fast(x[i] - mx);
    *lse = mx + logf(sum);
    return best;
}

/* nq query heads sharing one kv head; scores: nq * len floats of scratch */
static void attention(const float *q, int nq, const void *k, const void *v, int kv_f16, int64_t pos_stride,
                      int64_t len, int hd, float scale, float softcap, float *scores, float *out) {
    for (int h0 = 0; h0 < nq; h0 += 8) {
        const float *qh = q + h0 * hd;
        float *oh = out + h0 * hd;
        switch (nq - h0) { /* constant head counts: the value sums stay in registers */
        case 1: attention_nq(qh, 1, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        case 2: attention_nq(qh, 2, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        case 3: attention_nq(qh, 3, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        case 4: attention_nq(qh, 4, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        case 5: attention_nq(qh, 5, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        case 6: attention_nq(qh, 6, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        case 7: attention_nq(qh, 7, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        default: attention_nq(qh, 8, k, v, kv_f16, pos_stride, len, hd, scale, softcap, scores, oh); break;
        }
    }
}

const isa_kernels TABLE = {
    STR(ISA), dot_rows, dot_rows_fx, HAS_Q16 ? dot_rows_q16 : NULL, quantize_act16, quantize_act, dequant_row, rmsnorm, attention, silu_mul, store_kv,
    GEMM_NC, gemm_pack, gemm_panel, HAS_K16 ? dot_rows_k16 : NULL, quantize_act16k,
    HAS_GEMM16 ? gemm_pack16 : NULL, HAS_GEMM16 ? gemm_panel16 : NULL, GEMM16_LEVELS, argmax_lse, gelu_mul,
};
